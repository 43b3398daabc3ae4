// Package serve holds the generic parts of the repoctl daemon's servers:
// the read-only file handler for the served tree (NewFileHandler), an
// HTTP server with limits against slow and idle clients that a reload can
// replace under its listener (Server, Limits), and the control socket's
// transport (ListenSocket, NewSocketServer, SendFiles): a unix socket
// whose connections carry the peer's kernel credentials (PeerFrom) and
// open descriptors passed with SCM_RIGHTS (TakeFiles).
//
// It is not the control API: which request calls which Repo method, the
// wire types and the errors that cross the socket stay in package repo,
// and nothing here knows of packages, channels or the store. It does not
// decide who may do what either; it only reports who the peer is. That
// is why this package must never import repo.
package serve
