// Package repo is repoctl's repository manager: configuration, the bbolt
// store, the ingest pipeline (validate → sign → place → publish → record),
// promotion between channels, the drop-in daemon and its control socket.
//
// It is not an RPM parser (package metadata), not a signer (package sign)
// and knows nothing about app hosts (package upgrade).
//
// # Layout under ROOT (--root, env REPOCTL_ROOT)
//
//	ROOT/repoctl.toml        optional config (see testdata/repoctl.example.toml)
//	ROOT/repoctl.db          bbolt store: packages, event log, ingest journal
//	ROOT/repoctl.lock        flock held by whoever has the store open
//	ROOT/keys/               generated signing key (0600) and its public key
//	ROOT/incoming/           drop-in directory watched by the daemon
//	ROOT/spool/              private working copies while a file is ingested
//	ROOT/rejected/NAME       a rejected file, with NAME.reason beside it
//	ROOT/repo/               the served tree (HTTP root, or Apache/nginx docroot)
//	ROOT/repo/RPM-GPG-KEY-repoctl                     public key (gpgkey=)
//	ROOT/repo/<name>/<channel>/<dist>/<ver>/<arch>/   one yum repository
//
// A repository directory is the runbook's fi-repo/el/5/{SRPMS,x86_64} with
// the channel as an extra level after the repository name, for example
// repo/fi-repo/prod/el/9/x86_64/ and repo/fi-repo/staging/el/9/SRPMS/.
// Each such directory holds its packages and its own repodata/ (with
// repomd.xml.asc). The served URL of a directory is the HTTP base URL plus
// its path below ROOT/repo, e.g.
// http://127.0.0.1:8080/main/staging/el/9/x86_64/, and the key is at
// http://127.0.0.1:8080/RPM-GPG-KEY-repoctl.
//
// # Routing
//
// A package's release (the dist tag of its Release: ".el9" → el/9,
// ".el9_3" → el/9, ".fc40" → fc/40) picks the release directory; config
// [[route]] rules are tried first, and [routing] default catches packages
// with no dist tag. A package that matches nothing is rejected. Binary
// packages go into their arch's directory, which must be listed for the
// release (default x86_64 and aarch64); noarch goes into every listed arch;
// source packages go into SRPMS.
//
// # Same NEVRA
//
// A package is identified by repository + NEVRA. Re-adding the same build
// is a no-op ("unchanged"): the same input bytes, the signed bytes we
// serve, or the same main header and payload with other signatures (so a
// copy someone else signed, or one a crash left signed, is recognised).
// A different build under the same NEVRA is rejected (duplicate-nevra). A
// package is never silently replaced.
//
// # Rejections
//
// A rejected input is kept as ROOT/rejected/NAME (NAME.1, NAME.2 … on
// collisions) with NAME.reason beside it, written first. The first line of
// a .reason file is "CODE: message", CODE one of invalid (not a readable
// RPM header), invalid-header (a name, epoch, version, release or arch that
// fails internal/nevra's rules: a "/", "..", whitespace, a control
// character), sign-failed (the signer refused it, e.g. a payload digest
// mismatch), unroutable, duplicate-nevra, file-conflict (another NEVRA
// differing only in epoch has the same file name), unreadable (a drop-in
// that is a symlink, FIFO, device or socket is moved here as it is; an
// `add` input that cannot be opened is never kept); "file:", "repo:",
// "channel:", "time:" and, for requests, "by:" lines follow, every value
// escaped (internal/safetext) so a name cannot forge a line. A fault of
// the machine (disk full, EIO, EMFILE) is never a rejection: the batch
// fails with ErrTransient and is retried.
//
// # Who
//
// The control socket takes files as open descriptors (SCM_RIGHTS), so the
// daemon reads only what the client could, and names every event of a
// request after the kernel's SO_PEERCRED of the peer (Event.Caller). Every
// file operation in the served tree goes through one os.Root (confine.go),
// and placements are checked element by element.
//
// # Store
//
// ROOT/repoctl.db has the buckets packages (repo NUL NEVRA → PackageRecord
// JSON, including the rendered metadata.Entry of the signed file), events
// (8-byte big-endian sequence → Event JSON; Hash = sha256 hex of Prev and
// the event's JSON with Hash empty; meta "events.head" holds the last
// "SEQ HASH" so dropping the newest events shows too), journal (in-flight
// ingests), dirty (directories awaiting a publish), blocks and blockrefs
// (metadata's compressed repodata blocks, reused by the next publish, kept
// while some directory uses them). `repoctl history --verify` recomputes
// the chain. Someone who can rewrite the whole file can forge a consistent
// chain; the log makes casual or partial edits evident, it is not a
// signature.
//
// # Concurrency and crashes
//
// One process at a time has the store open (flock on ROOT/repoctl.lock); the
// CLI talks to the daemon's socket when it runs, and otherwise opens the
// store itself, waiting for the lock with a message. Within a process,
// ingest batches are serialized and publish once per affected directory.
// Every file in flight is journaled in the store (received → validated →
// signed → placed → published → recorded); Resume rolls a file forward
// once it is signed and back (to incoming/, or dropped for `add`) before.
// Promote, Restore and Remove record their change and mark the affected
// directories dirty in one transaction before publishing; Resume
// republishes dirty directories. Readers (List, Status, History, RepoFile)
// never wait for a running batch.
//
// # Promotion
//
// Promote hard-links the exact signed file of the source channel into the
// target channel's directories and republishes them. Older versions stay
// in the target channel (PromoteResult.Previous names the newest one), so
// dnf update picks the new one and a rollback is `dnf downgrade` to
// Previous; Restore takes the promoted package out of the target again
// (unless it was there before) and is idempotent.
package repo
