package repo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/repoctl/repoctl/internal/rootowner"
	"github.com/repoctl/repoctl/metadata"
)

// Service is what the CLI talks to: the local *Repo when no daemon runs, or
// the daemon over its socket. Every argument and result is plain data that
// round-trips through encoding/json, so the daemon can serve it unchanged.
type Service interface {
	// Add runs the ingest pipeline on paths. The caller's files are never
	// modified: they are copied into ROOT/spool first.
	Add(ctx context.Context, paths []string, o AddOptions) ([]AddResult, error)
	List(ctx context.Context, o ListOptions) ([]PackageRecord, error)
	Status(ctx context.Context) (*Status, error)
	// History returns the event log, oldest first. With o.Verify it first
	// checks the hash chain and fails with ErrTampered if it is broken.
	History(ctx context.Context, o HistoryOptions) ([]Event, error)
	Remove(ctx context.Context, nevra string, o RemoveOptions) (*RemoveResult, error)
	// Show is one package: its whole store record, each placement with
	// its URL and whether the served repodata lists it, and its events.
	Show(ctx context.Context, nevra string, o ShowOptions) (*ShowResult, error)
	// Promote places the exact signed package of one channel into another
	// (staging → prod by default) and republishes the target.
	Promote(ctx context.Context, r PromoteRequest) (*PromoteResult, error)
	// Restore undoes a Promote (rollback of a rollout).
	Restore(ctx context.Context, r *PromoteResult) error
	// RecordRollout appends a rollout step to the hash-chained event log
	// as action "upgrade.KIND", naming the caller. It is the only event a
	// client can cause directly; every other event is recorded by the
	// operation that made it.
	RecordRollout(ctx context.Context, e RolloutEvent) error
	// RepoFile describes the dnf/yum .repo file for the hosts of one dist
	// (or one release) in one channel; Render writes it.
	RepoFile(ctx context.Context, o RepoFileOptions) (*RepoFileResult, error)
	// Fsck checks the served tree against the store and, with o.Repair,
	// repairs what it can. What it found is in the report (see
	// FsckReport.Err); the error is for a check that could not run.
	Fsck(ctx context.Context, o FsckOptions) (*FsckReport, error)
	// Republish rebuilds repodata from the store, signed, under a new
	// revision, for the given repository directories or all.
	Republish(ctx context.Context, o RepublishOptions) (*RepublishResult, error)
	// RotateKey makes (or imports) a new signing key, serves both public
	// keys, re-signs every package and repomd.xml.asc and publishes; with
	// Resume it finishes an interrupted rotation.
	RotateKey(ctx context.Context, r KeyRotateRequest) (*KeyRotation, error)
	// RetireKey drops an old public key from RPM-GPG-KEY-repoctl once no
	// served file needs it (ErrKeyInUse while one does).
	RetireKey(ctx context.Context, r KeyRetireRequest) (*KeyRetireResult, error)
	// KeyStatus lists the served keys and an unfinished rotation; it
	// never waits for a running rotation, so a client can poll progress.
	KeyStatus(ctx context.Context) (*KeyStatus, error)
	// RejectedList lists ROOT/rejected, each entry with its .reason;
	// RejectedShow is one entry with the whole .reason.
	RejectedList(ctx context.Context) ([]RejectedEntry, error)
	RejectedShow(ctx context.Context, name string) (*RejectedEntry, error)
	// RejectedRetry runs entries of ROOT/rejected through the pipeline
	// again (one fixed in place gets published); RejectedPurge removes
	// entries. Each records one event per entry.
	RejectedRetry(ctx context.Context, r RejectedRetryRequest) ([]AddResult, error)
	RejectedPurge(ctx context.Context, r RejectedPurgeRequest) (*RejectedPurgeResult, error)
	// ChannelLog, ChannelShow and ChannelDiff read a channel's numbered
	// versions (channel.go); ChannelRollback makes a new version equal
	// to an older one and publishes it.
	ChannelLog(ctx context.Context, o ChannelLogOptions) ([]ChannelVersion, error)
	ChannelShow(ctx context.Context, o ChannelShowOptions) (*ChannelSnapshot, error)
	ChannelDiff(ctx context.Context, o ChannelDiffOptions) (*ChannelDiff, error)
	ChannelRollback(ctx context.Context, r ChannelRollbackRequest) (*ChannelChange, error)
	// Prune applies [retention] (or r.Keep) to one channel or all and
	// publishes what it takes out; with r.DryRun it only says what.
	Prune(ctx context.Context, r PruneRequest) (*PruneResult, error)
	// CompsSet stores a comps file for a repository and republishes its
	// directories with the group and group_gz records; CompsRemove drops
	// it and republishes; each records an event. CompsShow returns it
	// with its XML. Without one, CompsShow and CompsRemove fail with
	// ErrNoComps.
	CompsSet(ctx context.Context, r CompsSetRequest) (*CompsResult, error)
	CompsShow(ctx context.Context, r CompsShowRequest) (*CompsInfo, error)
	CompsRemove(ctx context.Context, r CompsRemoveRequest) (*CompsResult, error)
	// AdvisoryAdd stores one advisory (TOML or JSON) and republishes the
	// directories serving its packages; AdvisoryImport does the same for
	// every advisory of an updateinfo.xml. Invalid input fails with
	// ErrInvalidAdvisory and changes nothing.
	AdvisoryAdd(ctx context.Context, r AdvisoryRequest) (*AdvisoryResult, error)
	AdvisoryImport(ctx context.Context, r AdvisoryRequest) (*AdvisoryResult, error)
	AdvisoryList(ctx context.Context, o AdvisoryOptions) ([]Advisory, error)
	AdvisoryShow(ctx context.Context, id string, o AdvisoryOptions) (*Advisory, error)
	// AdvisoryRemove deletes an advisory and republishes the directories
	// that listed it.
	AdvisoryRemove(ctx context.Context, id string, o AdvisoryOptions) (*AdvisoryResult, error)
}

// Sentinel errors. Compare with errors.Is; the daemon client maps error
// strings back onto these.
var (
	ErrRejected       = errors.New("repo: package rejected")
	ErrDuplicateNEVRA = errors.New("repo: same NEVRA already present with different content")
	ErrNotFound       = errors.New("repo: package not found")
	ErrLocked         = errors.New("repo: another repoctl process holds the repository")
	ErrTampered       = errors.New("repo: event log hash chain is broken")
	ErrUnroutable     = errors.New("repo: cannot route package to a release")
	ErrBadConfig      = errors.New("repo: invalid configuration")
	ErrAmbiguous      = errors.New("repo: package name matches more than one package")
	ErrClosed         = errors.New("repo: repository is closed")
	// ErrTransient is a fault of the machine, not of the input (disk full,
	// quota, EIO, out of descriptors or memory): nothing was rejected and
	// the same call may succeed later.
	ErrTransient = errors.New("repo: transient fault, nothing rejected; retry")
	// ErrInvalidName is a package name or NEVRA argument that no valid
	// package can have (a "/", "..", whitespace, a control character).
	ErrInvalidName = errors.New("repo: invalid package name")
	// ErrBadOption is an option naming a repository, channel, dist or
	// release that does not exist or cannot be one (a usage error, exit 2).
	ErrBadOption = errors.New("repo: unknown or invalid option")
	// ErrFsck is a served tree that does not match the store: FsckReport.Err
	// wraps it while a finding is not repaired (exit 3).
	ErrFsck = errors.New("repo: the served tree does not match the store")
	// ErrRotationUnfinished is a signing-key rotation that is running or
	// was interrupted: `repoctl key rotate --resume` finishes it.
	ErrRotationUnfinished = errors.New("repo: a signing-key rotation is unfinished")
	// ErrKeyInUse is a key that cannot be retired: the active key, or one
	// that a served package or repomd.xml.asc still needs.
	ErrKeyInUse = errors.New("repo: the key is still needed")
	// ErrUnknownKey is a key id that names no served key.
	ErrUnknownKey = errors.New("repo: no such served key")
	// ErrConfigFile is a config file that cannot be used (an unknown key,
	// a wrong type, a bad value): every *ConfigError matches it, and
	// ErrBadConfig too. The CLI exits 2 on it.
	ErrConfigFile = errors.New("repo: invalid config file")
	// ErrNotOwner is work on ROOT without a daemon by a user other than
	// ROOT's owner, which would leave files the owner cannot write.
	ErrNotOwner = rootowner.ErrNotOwner
	// ErrNoComps is a repository without a comps file, for comps show
	// and comps remove (exit 2, like naming any other thing that is not
	// there).
	ErrNoComps = errors.New("repo: the repository has no comps file")
	// ErrInvalidAdvisory is an advisory that cannot be stored: a file that
	// does not parse or has unknown keys, a bad id, type, date or text.
	// ErrAdvisoryPackage and ErrAdvisoryConflict match it too.
	ErrInvalidAdvisory = errors.New("repo: invalid advisory")
	// ErrAdvisoryPackage is an advisory naming a package that is not in
	// the store for its repository.
	ErrAdvisoryPackage = fmt.Errorf("%w: unknown package", ErrInvalidAdvisory)
	// ErrAdvisoryConflict is an advisory id that is stored (or repeated in
	// one import) with different content.
	ErrAdvisoryConflict = fmt.Errorf("%w: the id exists with different content", ErrInvalidAdvisory)
	// ErrAdvisoryNotFound is an advisory id the repository does not have.
	ErrAdvisoryNotFound = errors.New("repo: no such advisory")
)

// Sentinels lists every sentinel so that a socket client can map a remote
// error message back onto the matching value.
// metadata's comps sentinels are among them: a comps file is validated in
// the daemon.
var Sentinels = append([]error{ErrRejected, ErrDuplicateNEVRA, ErrNotFound, ErrLocked,
	ErrTampered, ErrUnroutable, ErrBadConfig, ErrAmbiguous, ErrClosed, ErrTransient, ErrEscape, ErrInvalidName, ErrBadOption, ErrFsck,
	ErrRotationUnfinished, ErrKeyInUse, ErrUnknownKey, ErrConfigFile, ErrNotOwner, ErrFilesGone, ErrNoVersion, ErrNoComps,
	ErrInvalidAdvisory, ErrAdvisoryPackage, ErrAdvisoryConflict, ErrAdvisoryNotFound, ErrNotLeader}, metadata.CompsSentinels...)

// Actions recorded in AddResult.Action.
const (
	ActionAdded     = "added"
	ActionUnchanged = "unchanged"
	ActionRejected  = "rejected"
	ActionWouldAdd  = "would-add" // AddOptions.DryRun: would be added as RepoPaths
	// ActionDeferred is a drop-in that failed while it was still being
	// written (it changed since the watcher saw it, or was written within
	// the settle interval and not renamed into place): it was moved back
	// to its drop-in directory and is taken again once it settles. Never
	// a rejection, and not recorded as an event.
	ActionDeferred = "deferred"
)

// AddOptions steer one Add or Ingest call.
type AddOptions struct {
	// Repo is the repository name; empty means the config's default_repo.
	Repo string `json:"repo,omitempty"`
	// Channel is where new packages land; empty means the config's
	// default_channel ("staging").
	Channel string `json:"channel,omitempty"`
	// Release, e.g. "el/9" (or "el9"), overrides routing: every file goes
	// into that release whatever its dist tag says. Empty routes by dist
	// tag, [[route]] rules and [routing].
	Release string `json:"release,omitempty"`
	// Who is recorded in events; empty means the OS user name.
	Who string `json:"who,omitempty"`
	// Move hands the files over to the pipeline (drop-in directories):
	// they are renamed into the spool, and a rejected file is moved to
	// ROOT/rejected/ instead of copied. Add over the socket never sets it.
	Move bool `json:"move,omitempty"`
	// DryRun validates, routes and checks for duplicates, then stops:
	// nothing is signed, placed, published, moved or recorded.
	DryRun bool `json:"dry_run,omitempty"`

	// drop is what the watcher saw of a batch of drop-ins (dropBatchFrom);
	// retry maps the ROOT/rejected files RejectedRetry runs again to the
	// source their .reason names. Neither crosses the socket.
	drop  *dropBatch
	retry map[string]string
}

// AddResult is the outcome for one input file.
type AddResult struct {
	Path      string   `json:"path"`
	NEVRA     string   `json:"nevra,omitempty"`
	RepoPaths []string `json:"repo_paths,omitempty"` // files placed, relative to ROOT/repo
	KeyID     string   `json:"key_id,omitempty"`
	SHA256    string   `json:"sha256,omitempty"` // of the signed file as served
	Action    string   `json:"action"`           // ActionAdded, ActionUnchanged, ActionRejected, ActionWouldAdd or ActionDeferred
	Reason    string   `json:"reason,omitempty"` // why it was rejected
	// Rejected is where the rejected bytes were kept (ROOT/rejected/NAME):
	// drop-ins (Move) and RejectedRetry only. A caller of Add keeps the
	// file and gets the Reason; nothing is copied into ROOT/rejected.
	Rejected string `json:"rejected,omitempty"`
}

// Err is nil unless the file was rejected; then it wraps ErrDuplicateNEVRA,
// ErrUnroutable or ErrRejected according to the reason code.
func (r AddResult) Err() error {
	if r.Action != ActionRejected {
		return nil
	}
	code, _, _ := strings.Cut(r.Reason, ":")
	switch code {
	case "duplicate-nevra":
		return fmt.Errorf("%w: %s: %s", ErrDuplicateNEVRA, r.Path, r.Reason)
	case "unroutable":
		return fmt.Errorf("%w: %s: %s", ErrUnroutable, r.Path, r.Reason)
	}
	return fmt.Errorf("%w: %s: %s", ErrRejected, r.Path, r.Reason)
}

// ListOptions filter List. Empty fields match everything; the filters
// that are set must all match (AND).
type ListOptions struct {
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel,omitempty"`
	// Name is one more pattern for Names; older clients send a single
	// name here.
	Name string `json:"name,omitempty"`
	// Names are patterns on the package name with path.Match syntax
	// ("app-*", "lib?", "[a-c]*"); a package matches when any does. A
	// pattern without a metacharacter is an exact name.
	Names []string `json:"names,omitempty"`
	// Arch is the package's arch as in its NEVRA: "x86_64", "noarch",
	// "src" (not the directory a noarch package is also served in).
	Arch string `json:"arch,omitempty"`
	// Release is a release directory, "el/9" (or "el9") or "common": a
	// package matches when it is placed there (in Channel, if set).
	Release string `json:"release,omitempty"`
}

// Placement is one copy of a package in one channel's repository directory.
type Placement struct {
	Channel string `json:"channel"`
	Release string `json:"release"` // e.g. "el/9"
	Arch    string `json:"arch"`    // directory arch: x86_64, aarch64, SRPMS
	Dir     string `json:"dir"`     // repository dir relative to ROOT/repo
	File    string `json:"file"`    // package file relative to ROOT/repo
}

// PackageRecord is what the store keeps per package and repository.
type PackageRecord struct {
	Repo     string `json:"repo"`
	NEVRA    string `json:"nevra"`
	Name     string `json:"name"`
	Epoch    string `json:"epoch"`
	Version  string `json:"version"`
	Release  string `json:"release"`
	Arch     string `json:"arch"`
	FileName string `json:"file_name"` // N-V-R.A.rpm as placed

	OrigSHA256 string `json:"orig_sha256"` // the bytes we were given (unsigned)
	OrigSize   int64  `json:"orig_size"`
	// ContentSHA256 covers the main header and payload only: two files
	// with equal content are the same build, however they were signed.
	ContentSHA256 string `json:"content_sha256"`
	SHA256        string `json:"sha256"` // the signed bytes we serve
	Size          int64  `json:"size"`
	KeyID         string `json:"key_id"`

	Dist       string      `json:"dist"` // routed release, e.g. "el/9"
	Placements []Placement `json:"placements"`
	// Held are placements a rollback, restore or prune took out of a
	// channel's repodata while a kept channel version still names the
	// package: the file stays (unlisted) so that a rollback can list it
	// again. They go, after the grace period, once no kept version of
	// that channel names the package (chanver.go, held.go).
	Held    []Placement `json:"held,omitempty"`
	Added   time.Time   `json:"added"`
	AddedBy string      `json:"added_by"`

	// Entry is the rendered repodata of the signed file (href = FileName);
	// publishing reuses it instead of re-reading the header.
	Entry *metadata.Entry `json:"entry,omitempty"`
}

// Channels lists the channels the package is placed in, in config order of
// first appearance.
func (p *PackageRecord) Channels() []string {
	var out []string
	seen := map[string]bool{}
	for _, pl := range p.Placements {
		if !seen[pl.Channel] {
			seen[pl.Channel] = true
			out = append(out, pl.Channel)
		}
	}
	return out
}

// InChannel reports whether the package is placed in channel c.
func (p *PackageRecord) InChannel(c string) bool {
	for _, pl := range p.Placements {
		if pl.Channel == c {
			return true
		}
	}
	return false
}

// Status summarises a repository root.
type Status struct {
	Root        string     `json:"root"`
	Config      string     `json:"config,omitempty"` // config file read; "" = embedded defaults
	Daemon      bool       `json:"daemon"`           // set by the socket client
	KeyID       string     `json:"key_id"`
	Fingerprint string     `json:"fingerprint"`
	HTTP        string     `json:"http"`             // base URL hosts use
	Listen      string     `json:"listen,omitempty"` // address the daemon's HTTP server bound
	Packages    int        `json:"packages"`
	Events      uint64     `json:"events"`
	LastEvent   *time.Time `json:"last_event,omitempty"`
	InFlight    int        `json:"in_flight"` // ingest journal items not finished
	Dirty       int        `json:"dirty"`     // directories whose repodata awaits a publish
	// Incoming counts the files waiting in the drop-in dirs and their
	// subdirectories down to DropInDepth levels.
	Incoming int `json:"incoming"`
	// Skipped counts what is never ingested: directories nested deeper
	// than DropInDepth below a drop-in dir (each counts once, whatever it
	// holds). Names the watcher ignores (.part, dotfiles) are not counted;
	// symlinks, FIFOs, devices and sockets are moved to rejected/ with
	// their reason.
	Skipped  int          `json:"skipped"`
	Rejected int          `json:"rejected"` // files in ROOT/rejected
	Repos    []RepoStatus `json:"repos"`
	// Target is where the tree is published: ROOT/repo, or the S3
	// bucket (s3://bucket/prefix at endpoint).
	Target string `json:"target"`
	// HA is this daemon's part in an HA pair; absent outside one.
	HA *HAStatus `json:"ha,omitempty"`
}

// RepoStatus is one published repository directory.
type RepoStatus struct {
	Repo     string `json:"repo"`
	Channel  string `json:"channel"`
	Release  string `json:"release"`
	Arch     string `json:"arch"`
	Dir      string `json:"dir"` // relative to ROOT/repo
	Packages int    `json:"packages"`
}

// HistoryOptions filter History.
type HistoryOptions struct {
	Limit  int    `json:"limit,omitempty"` // newest N events; 0 = all
	NEVRA  string `json:"nevra,omitempty"`
	Action string `json:"action,omitempty"`
	Verify bool   `json:"verify,omitempty"`
}

// Event is one entry in the append-only, hash-chained event log. Hash is
// sha256(Prev || canonical JSON of the event with Hash empty), hex.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Who     string            `json:"who"`
	Action  string            `json:"action"` // add, sign, publish, remove, promote, restore, reject, unchanged, upgrade.*
	Repo    string            `json:"repo,omitempty"`
	Channel string            `json:"channel,omitempty"`
	NEVRA   string            `json:"nevra,omitempty"`
	Path    string            `json:"path,omitempty"`
	Details map[string]string `json:"details,omitempty"`
	// Caller is the kernel's word on who asked (SO_PEERCRED of the socket
	// client, or the CLI process); absent in events older repoctl wrote.
	Caller *Caller `json:"caller,omitempty"`
	Prev   string  `json:"prev"`
	Hash   string  `json:"hash"`
}

// RolloutEvent is one step of a rollout that the CLI runs against the app
// hosts. Its fields are checked (RolloutEvent.Check) before anything is
// recorded; Who is never taken from it.
type RolloutEvent struct {
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`    // e.g. "started", "step.done": [a-z][a-z0-9._-]*
	Rollout    string    `json:"rollout"` // rollout id: [A-Za-z0-9._-]+
	NEVRA      string    `json:"nevra,omitempty"`
	Phase      string    `json:"phase,omitempty"`
	Host       string    `json:"host,omitempty"`
	Command    string    `json:"command,omitempty"`
	Detail     string    `json:"detail,omitempty"`
	ExitStatus int       `json:"exit_status,omitempty"`
	// Who is the CLI's user name: a note beside the kernel's identity.
	Who string `json:"who,omitempty"`
}

// RemoveOptions steer Remove.
type RemoveOptions struct {
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel,omitempty"` // empty: every channel
	Who     string `json:"who,omitempty"`
	DryRun  bool   `json:"dry_run,omitempty"`
}

// RemoveResult tells what Remove unpublished.
type RemoveResult struct {
	NEVRA   string   `json:"nevra"`
	Repo    string   `json:"repo"`
	Files   []string `json:"files"` // relative to ROOT/repo
	Dirs    []string `json:"dirs"`  // republished, relative to ROOT/repo
	DryRun  bool     `json:"dry_run,omitempty"`
	Removed bool     `json:"removed"` // the record is gone from every channel
}

// PromoteRequest names a package or a build and the channels to move it
// between.
type PromoteRequest struct {
	// Package is a NEVRA (name-[epoch:]version-release.arch: that package
	// alone), N-V-R (every arch of that build, its source package
	// included), or a bare name meaning the newest such build in From.
	Package string `json:"package"`
	Repo    string `json:"repo,omitempty"` // default: default_repo
	From    string `json:"from,omitempty"` // default: first channel ("staging")
	To      string `json:"to,omitempty"`   // default: last channel ("prod")
	// Arches narrows a build to these package arches ("x86_64", "noarch",
	// "src" for the source package); empty means every arch.
	Arches []string `json:"arches,omitempty"`
	Who    string   `json:"who,omitempty"`
	DryRun bool     `json:"dry_run,omitempty"`
}

// PromoteResult is both the outcome of a promote and the recipe to undo it.
// Packages lists every package of the promoted build; the single fields
// (NEVRA … Arch, File, Previous, AlreadyPresent) describe its first binary
// package (or its only package), as a result of an older repoctl did, so
// a rollout recorded by one still restores.
type PromoteResult struct {
	NEVRA   string `json:"nevra"`
	Name    string `json:"name"`
	Epoch   string `json:"epoch"`
	Version string `json:"version"`
	Release string `json:"release"`
	Arch    string `json:"arch"`
	Repo    string `json:"repo"`
	From    string `json:"from"`
	To      string `json:"to"`
	// File is one placed copy in the target channel, relative to ROOT/repo.
	File  string   `json:"file"`
	Files []string `json:"files"` // every placed copy of every package in the target channel
	Dirs  []string `json:"dirs"`  // target repository dirs republished, relative to ROOT/repo
	// URLs are the HTTP base URLs of Dirs (config http address).
	URLs []string `json:"urls"`
	// Previous is the newest NEVRA of the same name and arch that was in
	// the target channel before; "" if none. It stays published, so a
	// rollback is `dnf downgrade` to it.
	Previous string `json:"previous"`
	// AlreadyPresent means the package was in the target channel before;
	// Restore then leaves it there.
	AlreadyPresent bool `json:"already_present"`
	DryRun         bool `json:"dry_run,omitempty"`
	// Packages is every package of the build, binary arches first (by
	// name, noarch last), then the source package; absent in results of
	// an older repoctl, which promoted one package.
	Packages []PromotedPackage `json:"packages,omitempty"`
}

// RepoFileOptions choose the hosts a .repo file is for.
type RepoFileOptions struct {
	Repo    string `json:"repo,omitempty"`    // one repository; default every one
	Channel string `json:"channel,omitempty"` // default the last channel (prod)
	// Dist is the dist family of the hosts ("el", "fc"); needed only when
	// the repositories hold more than one.
	Dist string `json:"dist,omitempty"`
	// Release pins one release ("el/9" or "el9") instead of $releasever.
	Release string `json:"release,omitempty"`
	// BaseURL overrides the public URL (http.public_url, else the address
	// the daemon serves).
	BaseURL string `json:"base_url,omitempty"`
}
