package repo

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// Store backends ([store] backend).
const (
	// StoreBbolt keeps the store in one file, [paths] db (the default).
	StoreBbolt = "bbolt"
	// StoreEtcd keeps it in etcd under [store] prefix, so that several
	// daemons can share it (store_open.go).
	StoreEtcd = "etcd"
)

// StoreConfig is [store]: where the records live. With no [store]
// section nothing changes: bbolt in [paths] db.
type StoreConfig struct {
	Backend   string   `toml:"backend"`   // "bbolt" (default) or "etcd"
	Endpoints []string `toml:"endpoints"` // etcd client URLs; required with etcd
	// Prefix is prepended to every etcd key, so that several installations
	// share one etcd; default "/repoctl/". Must start and end with "/".
	Prefix string `toml:"prefix"`
	// DialTimeout bounds connecting to etcd, a Go duration; default "5s".
	DialTimeout string `toml:"dial_timeout"`
	// CAFile verifies the etcd server; CertFile and KeyFile (both or
	// neither) are repoctl's client certificate. Relative to ROOT.
	CAFile   string `toml:"ca_file"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// MaxTxnOps and MaxRequestBytes are the server's --max-txn-ops and
	// --max-request-bytes (defaults: etcd's, 128 and 1572864). A
	// transaction beyond them fails instead of being sent; see README.
	MaxTxnOps       int `toml:"max_txn_ops"`
	MaxRequestBytes int `toml:"max_request_bytes"`
	// Node names this daemon among those sharing the prefix (the HA pair,
	// ha.go): what the others report as the leader; default the host
	// name. Printable, at most 128 bytes.
	Node string `toml:"node"`
	// LeaseTTL is the leader's etcd session lease, a Go duration of whole
	// seconds: how long a dead leader holds the pair before a standby
	// takes over; default "10s".
	LeaseTTL string `toml:"lease_ttl"`
}

// maxNodeName caps [store] node: it is in every status and refusal.
const maxNodeName = 128

// maxStorePrefix caps [store] prefix: it is in every key.
const maxStorePrefix = 256

// storeDefaults fills and checks [store].
func (c *Config) storeDefaults() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	s := &c.Store
	if s.Backend == "" {
		s.Backend = StoreBbolt
	}
	if len(s.Endpoints) == 0 {
		s.Endpoints = nil // `endpoints = []` is no endpoints
	}
	if s.DialTimeout == "" {
		s.DialTimeout = "5s"
	}
	if d, err := time.ParseDuration(s.DialTimeout); err != nil || d <= 0 {
		return bad("store.dial_timeout %q is not a positive duration such as \"5s\"", s.DialTimeout)
	}
	switch s.Backend {
	case StoreBbolt:
		if len(s.Endpoints) > 0 || s.Prefix != "" || s.CAFile != "" || s.CertFile != "" || s.KeyFile != "" || s.Node != "" || s.LeaseTTL != "" {
			return bad("store.backend %q: endpoints, prefix, node, lease_ttl and TLS files are only used with backend = %q", s.Backend, StoreEtcd)
		}
		return nil
	case StoreEtcd:
	default:
		return bad("store.backend %q: %q (default) or %q", s.Backend, StoreBbolt, StoreEtcd)
	}
	if len(s.Endpoints) == 0 {
		return bad("store.endpoints: required with backend = %q", StoreEtcd)
	}
	for _, e := range s.Endpoints {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			shown := e
			if err == nil && u.User != nil {
				shown = u.Redacted() // a password must not reach a log
			}
			return bad("store.endpoints %q: an http:// or https:// URL of an etcd client port without credentials, such as \"http://127.0.0.1:2379\"", shown)
		}
	}
	if s.Prefix == "" {
		s.Prefix = "/repoctl/"
	}
	if len(s.Prefix) > maxStorePrefix || !strings.HasPrefix(s.Prefix, "/") || !strings.HasSuffix(s.Prefix, "/") ||
		strings.ContainsFunc(s.Prefix, func(r rune) bool { return r < 0x20 || r == 0x7f }) || len(s.Prefix) < 2 {
		return bad("store.prefix %q: starts and ends with \"/\", printable, at most %d bytes, not \"/\" alone (such as \"/repoctl/\")", s.Prefix, maxStorePrefix)
	}
	if (s.CertFile == "") != (s.KeyFile == "") {
		return bad("store.cert_file %q and store.key_file %q go together", s.CertFile, s.KeyFile)
	}
	for _, p := range []*string{&s.CAFile, &s.CertFile, &s.KeyFile} {
		if *p != "" {
			*p = c.abs(*p)
		}
	}
	if s.Node == "" {
		s.Node, _ = os.Hostname()
	}
	if len(s.Node) > maxNodeName || s.Node == "" || strings.ContainsFunc(s.Node, func(r rune) bool { return r <= 0x20 || r == 0x7f }) {
		return bad("store.node %q: printable, no spaces, 1 to %d bytes", s.Node, maxNodeName)
	}
	if s.LeaseTTL == "" {
		s.LeaseTTL = "10s"
	}
	if d, err := time.ParseDuration(s.LeaseTTL); err != nil || d < time.Second || d > time.Hour || d%time.Second != 0 {
		return bad("store.lease_ttl %q: whole seconds from \"1s\" to \"1h\", such as \"10s\"", s.LeaseTTL)
	}
	if s.MaxTxnOps < 0 || s.MaxRequestBytes < 0 {
		return bad("store.max_txn_ops %d, store.max_request_bytes %d: not negative", s.MaxTxnOps, s.MaxRequestBytes)
	}
	return nil
}
