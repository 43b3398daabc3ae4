// Package repo is repoctl's repository manager: configuration, the store
// (bbolt or etcd, through package repo/store), the ingest pipeline (validate → sign → place → publish → record),
// promotion between channels, advisories (updateinfo), the drop-in daemon
// (its watcher is package repo/dropwatch; its HTTP server, file handler
// and control socket transport are package repo/serve) and the control
// API, and the HA pair of daemons on one etcd store (ha.go: roles from
// package repo/leader, fenced writes, takeover). Publish targets are
// package repo/target; inputs are opened and copied by package
// repo/input.
//
// It is not an RPM parser (package metadata), not a signer (package sign)
// and knows nothing about app hosts (package upgrade).
//
// # Layout under ROOT (--root, env REPOCTL_ROOT)
//
//	ROOT/repoctl.toml        optional config (see testdata/repoctl.example.toml)
//	ROOT/repoctl.db          bbolt store: packages, advisories, event log, ingest journal
//	                         (with [store] backend = "etcd" the same buckets live in etcd: store_open.go)
//	ROOT/repoctl.lock        flock held by whoever has the store open
//	ROOT/publish-s3.db       with [publish] target = "s3": what the bucket holds (publish_target.go;
//	                         with the etcd store it is in the store instead, shared by an HA pair)
//	ROOT/keys/               generated signing key (0600) and its public key
//	ROOT/keys/old/KEYID.asc  a key a rotation replaced (0600), with KEYID.pub.asc
//	ROOT/incoming/           drop-in directory watched by the daemon, 4 levels deep
//	ROOT/spool/              private working copies while a file is ingested
//	ROOT/spool/.publish-state/  each directory's saved publish state (pubstate_persist.go)
//	ROOT/rejected/NAME       a rejected file, with NAME.reason beside it
//	ROOT/repo/               the served tree (HTTP root, or Apache/nginx docroot)
//	ROOT/repo/RPM-GPG-KEY-repoctl                     public keys (gpgkey=): the keyring
//	ROOT/repo/.repoctl-tree                           marker: standalone createrepo refuses the tree
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
// # Config, modes and owner
//
// LoadConfig reads the file ConfigPath finds (the caller's, which the CLI
// takes from --config or REPOCTL_CONFIG, else ROOT/repoctl.toml, else
// SystemConfigFile) and refuses what it does not know: every unknown key
// (the [upgrade] tables package upgrade reads included), wrong type, bad
// duration or value is a *ConfigError with the file, line and key
// (ErrConfigFile, exit 2). CheckConfig and ShowConfig touch nothing. A
// daemon given WithReload re-reads the file and applies liveConfigKeys,
// logging every other changed key as needing a restart.
//
// The served tree gets explicit modes whatever the umask ([publish]
// file_mode and dir_mode, 0644 and 0755: tree_modes.go), the daemon sets
// them on the whole tree at start, and the store, keys, spool and
// rejected/ stay private. Work on ROOT without the daemon (Open, rollout
// state) runs only as ROOT's owner (ErrNotOwner): another user, root
// included, would leave files behind the owner cannot write.
//
// # Routing
//
// A package's release (the dist tag of its Release: ".el9" → el/9,
// ".el9_3" → el/9, ".fc40" → fc/40) picks the release directory; config
// [[route]] rules are tried first. A package with no dist tag goes where
// [routing] noarch (noarch packages) or [routing] default (the others) say;
// both default to CommonRelease, "common", the release every .repo file
// includes; "off" rejects. An explicit release (AddOptions.Release, `add
// --release`, a [[dropin]] release) overrides all of it. Binary packages
// go into their arch's directory, which must be listed for the release
// (default x86_64 and aarch64; for common, every arch of any release);
// noarch goes into every listed arch; source packages go into SRPMS.
//
// # Hosts
//
// RepoFile writes the .repo file of one channel and dist family with
// baseurls REPO/CHANNEL/DIST/$releasever/$basearch/ (route_repofile.go
// says why not $releasever_major). Every known release (configured, or
// placed in once) has signed repodata in every repository, channel and
// arch, empty if need be (fillReleases, at Resume and after each batch),
// so no baseurl of the file can 404. The daemon's HTTP server answers
// DIST/9.4/ from DIST/9/ for hosts with a minor releasever.
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
// # Drop-ins
//
// The daemon runs a dropwatch.Watcher (package repo/dropwatch) on each
// drop-in directory and its subdirectories down to DropInDepth (4) levels,
// adding directories as they appear; a file of a subdirectory is ingested
// with its drop-in directory's repository, channel and release
// (ingestBatch, dropInOf). A file is complete when its writer closed it
// after writing or renamed it into place (inotify IN_CLOSE_WRITE and
// IN_MOVED_TO, through dropwatch's closewrite.go since fsnotify keeps
// close-write unexported), when its mtime is older than the settle
// interval, or when it stayed unchanged for that long
// (dropwatch.DefaultSettle, 3s, [daemon] settle), and never while a
// process has it open for writing (dropwatch.OpenForWriting, a read lease:
// for files the daemon's user owns, or with CAP_LEASE). The watcher passes
// what it saw of each file (size, mtime, renamed or not) in the batch's
// context (dropwatch.BatchFrom, dropBatchFrom); before rejecting a
// drop-in the pipeline looks again (stillWritten), and one that changed
// since, or that was written within the settle interval and not renamed
// in, goes back to its directory (ActionDeferred) rather than rejected/.
// Status counts the waiting files as Incoming and directories deeper than
// DropInDepth as Skipped.
//
// # Rejections
//
// A rejected drop-in is kept as ROOT/rejected/NAME (NAME.1, NAME.2 … on
// collisions; a NAME ending in .reason gets a "_") with NAME.reason
// beside it, written first. An input of Add or AddFiles is never kept: the
// caller has the file and gets AddResult.Reason, and the reject event is
// recorded all the same. The first line of a .reason file is "CODE:
// message", CODE one of invalid (not a readable RPM header),
// invalid-header (a name, epoch, version, release or arch that fails
// internal/nevra's rules: a "/", "..", whitespace, a control character),
// sign-failed (the signer refused it, e.g. a payload digest mismatch),
// unroutable, duplicate-nevra, file-conflict (another NEVRA differing only
// in epoch has the same file name), unreadable (a drop-in that is a
// symlink, FIFO, device or socket is moved here as it is), stray (an .rpm
// that Fsck with Repair took out of the served tree; no "repo:" or
// "channel:" lines); "file:", "repo:", "channel:", "release:" (an explicit
// release only), "time:" and, for requests, "by:" lines follow, every
// value escaped (internal/safetext) so a name cannot forge a line. A fault
// of the machine (disk full, EIO, EMFILE) is never a rejection: the batch
// fails with ErrTransient and is retried.
//
// RejectedList and RejectedShow read ROOT/rejected (rejected.go; a
// .reason is read without following a symlink, at most 64 KiB).
// RejectedRetry runs entries through Ingest again as Move items with the
// repository, channel and release of their .reason: one that goes in
// leaves with its .reason, one rejected again keeps its name and its
// .reason's "file:" (ingestItem.keepAt, origin). RejectedPurge removes
// entries under r.mu, the file before its .reason. Both record one event
// per entry (rejected.retry, rejected.purge).
//
// # Who
//
// The control socket takes files as open descriptors (SCM_RIGHTS), so the
// daemon reads only what the client could, and names every event of a
// request after the kernel's SO_PEERCRED of the peer (Event.Caller). The
// socket's transport is package repo/serve; socket.go maps its requests
// to methods. Every input, passed or named, is opened and copied through
// package repo/input: regular files only, never blocking on a FIFO. Every
// file operation in the served tree goes through one os.Root (confine.go),
// and placements are checked element by element.
//
// # Store
//
// ROOT/repoctl.db (schema 3; or etcd under [store] prefix, same buckets) has the buckets packages (repo NUL NEVRA →
// PackageRecord JSON without its Entry's XML, and without the Entry
// fields the record already says: only its mtime), fragments (the same
// key → the rendered primary, filelists and other XML of the signed
// file, one zstd frame behind their three lengths: store_codec.go), events
// (8-byte big-endian sequence → Event JSON; Hash = sha256 hex of Prev and
// the event's JSON with Hash empty; meta "events.head" holds the last
// "SEQ HASH" so dropping the newest events shows too), journal (in-flight
// ingests), dirty (directories awaiting a publish), blocks and blockrefs
// (metadata's compressed repodata blocks, reused by the next publish, kept
// while some directory uses them), and in meta "keyring" (the public keys
// served, active first) and, while one is unfinished, "key.rotation".
// `repoctl history --verify` recomputes
// the chain. Someone who can rewrite the whole file can forge a consistent
// chain; the log makes casual or partial edits evident, it is not a
// signature.
//
// A store an older repoctl left (schema 1 or 2: the whole Entry inside the
// record, base64 XML) is migrated on open by a compacting copy into
// repoctl.db.migrate, synced and renamed over repoctl.db
// (store_migrate.go): the old file is only read, so a crash at any point
// leaves the old store or the new one, and a leftover copy is redone.
// The scans that need records only (the index at Open) then never touch
// the fragments' pages, and those they touched are taken out of the
// daemon's RSS (store_mem.go).
//
// ROOT/spool/.publish-state/HASH.state is a directory's
// metadata.PublishState as the process that closed the store left it;
// the next process's first publish of that directory restores it once
// the published repomd.xml's checksums match, and removes the file
// (pubstate_persist.go).
//
// # Concurrency and crashes
//
// One process at a time has the store open (flock on ROOT/repoctl.lock); the
// CLI talks to the daemon's socket when it runs, and otherwise opens the
// store itself, waiting for the lock with a message. Within a process,
// ingest batches are serialized and publish once per affected directory.
// Every file in flight is journaled in the store (received → validated →
// signed → placed → published → recorded); Resume rolls a file forward
// once it is signed and back (to incoming/, rejected/ for a retry, or
// dropped for `add`) before.
// Promote, Restore and Remove record their change and mark the affected
// directories dirty in one transaction before publishing; Resume
// republishes dirty directories. Readers (List, Status, History, RepoFile)
// never wait for a running batch.
//
// # Promotion
//
// Promote hard-links the exact signed files of the source channel into the
// target channel's directories and republishes them. N-V-R (or a bare
// name: its newest EVR) is the whole build, every arch and the SRPM,
// narrowed by PromoteRequest.Arches; an exact NEVRA is that package alone.
// A build is one change: one event listing every NEVRA (details "nevras",
// "sha256s", "previous_nevras"), one transaction with the dirty marks, one
// publish per directory. Older versions stay in the target channel
// (PromotedPackage.Previous names the newest of each arch), so dnf update
// picks the new one and a rollback is `dnf downgrade` to Previous; Restore
// takes the promoted build out of the target again (each package unless it
// was there before), as one change too, and is idempotent. It also takes
// the single-package PromoteResult an older repoctl stored in a rollout.
//
// # Checking the tree
//
// Fsck compares the served tree with the store (package files by size and
// sha256 and signature, repodata by Publish's dry run with the options of
// a real publish plus metadata.ReadRepodataState, repomd.xml.asc by
// sign.VerifyDetached) and reports FsckFindings; FsckReport.Err is
// ErrFsck while one is left. It scans without r.mu, then re-checks what it
// found under r.mu, so a batch running meanwhile is never a finding, and
// repairs there. Republish (and Fsck's repair) publishes under a new
// revision, so repomd.xml.asc is rewritten even when the content is the
// same: it is also how every directory gets a signature by the current key.
//
// # Key rotation
//
// RotateKey (keyrotate.go) installs a new key, serving it beside the old one
// in RPM-GPG-KEY-repoctl, then re-signs every package record once (in place
// through sign's journal, or rewritten and re-linked into every placement),
// records and publishes rotateBatch packages per step under r.mu, and last
// re-signs every repomd.xml.asc not made by the new key. Each step can be
// repeated; the rotation record in the store says where it is. The daemon
// resumes an unfinished rotation in the background after it starts;
// without one `key rotate --resume` does. Open notices a changed [signing]
// key (the keyring's active key is not the loaded one) and starts a
// rotation to it. RetireKey drops an old key from the keyring once no
// record, placed file (its signature header) or repomd.xml.asc needs it.
//
// # Metrics and health
//
// A Repo reports what it measures to the Metrics of WithMetrics (default:
// nothing): ingest outcomes (counted as added where the store records a
// package, so a batch Resume finishes counts too), each publish of a
// directory (the tree's one publish call observes it), each signing batch
// and each recorded rollout step, with labels from fixed sets or the
// config's names only. The daemon owns a Prometheus registry
// (PrometheusMetrics, build info, Go and process collectors, and a
// collector that reads packages per channel from the in-memory index and
// the waiting files as Status counts them) and serves it as /metrics with
// /healthz and /readyz (health.go) ahead of the tree. Readiness reads the
// journal and dirty directories only while the change lock is free, since
// a running batch journals its own files, and adds every directory whose
// last publish failed. The daemon's main loop pings systemd's watchdog
// (daemon_notify.go) while the store answers.
package repo
