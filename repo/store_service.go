package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/repoctl/repoctl/internal/nevra"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/repoctl/repoctl/repo/dropwatch"
	kv "github.com/repoctl/repoctl/repo/store"
)

// List returns the packages matching o, without their rendered metadata.
func (r *Repo) List(ctx context.Context, o ListOptions) ([]PackageRecord, error) {
	// A typo'd filter is an error, not an empty list.
	if o.Repo != "" {
		if _, err := r.cfg.checkRepo(o.Repo); err != nil {
			return nil, err
		}
	}
	f, err := r.newListFilter(o)
	if err != nil {
		return nil, err
	}
	out := []PackageRecord{}
	archSeen := false
	err = r.view(func(tx kv.Tx) error {
		return eachPackageLight(tx, o.Repo, func(p *PackageRecord) error {
			archSeen = archSeen || p.Arch == f.arch
			if !f.match(p) {
				return nil
			}
			p.Entry = nil
			out = append(out, *p)
			return nil
		})
	})
	if err == nil && f.arch != "" && !f.archKnown && !archSeen {
		return nil, r.unknownArch(f.arch)
	}
	return out, err
}

// view reads the store without waiting for a running batch: bbolt gives
// it a consistent snapshot.
func (r *Repo) view(fn func(tx kv.Tx) error) error {
	if r.isClosed.Load() {
		return ErrClosed
	}
	err := r.st.db.View(fn)
	if errors.Is(err, kv.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Status summarises the root: key, counts, in-flight items and directories.
func (r *Repo) Status(ctx context.Context) (*Status, error) {
	key := r.Key() // a key rotation may swap it meanwhile
	st := &Status{Root: r.cfg.Root, Config: r.cfg.File, KeyID: key.KeyID(), Fingerprint: key.Fingerprint(), HTTP: r.cfg.HTTP.PublicURL, Listen: r.cfg.servedAddr, Repos: []RepoStatus{}}
	perDir := map[string]int{}
	err := r.view(func(tx kv.Tx) error {
		if err := eachPackageLight(tx, "", func(p *PackageRecord) error {
			st.Packages++
			for _, pl := range p.Placements {
				perDir[pl.Dir]++
			}
			return nil
		}); err != nil {
			return err
		}
		if k, v := tx.Bucket(bucketEvents).Cursor().Last(); k != nil {
			var e Event
			if err := json.Unmarshal(v, &e); err == nil {
				st.Events = e.Seq
				st.LastEvent = &e.Time
			}
		}
		st.InFlight = tx.Bucket(bucketJournal).Stats().KeyN
		st.Dirty = tx.Bucket(bucketDirty).Stats().KeyN
		return nil
	})
	if err != nil {
		return nil, err
	}
	for dir, n := range perDir {
		parts := strings.Split(dir, "/")
		if len(parts) < 4 {
			continue
		}
		st.Repos = append(st.Repos, RepoStatus{Repo: parts[0], Channel: parts[1],
			Release: strings.Join(parts[2:len(parts)-1], "/"), Arch: parts[len(parts)-1], Dir: dir, Packages: n})
	}
	sort.Slice(st.Repos, func(i, j int) bool { return st.Repos[i].Dir < st.Repos[j].Dir })
	st.Incoming, st.Skipped, st.Rejected = r.waitingFiles()
	st.Target = r.cfg.Paths.Repo
	if tm := r.tree.mirror; tm != nil {
		st.Target = tm.tgt.String()
	}
	st.HA = r.haStatus(ctx)
	return st, nil
}

// waitingFiles counts what waits outside the store: files in the drop-in
// directories, entries there that are never ingested, and rejected files.
// Status and the metrics both use it, so that they cannot disagree.
func (r *Repo) waitingFiles() (incoming, skipped, rejected int) {
	drops := r.dropIns()
	dirs := dropInSet(drops)
	for _, d := range drops {
		in, sk := dropwatch.Count(filepath.Clean(d.Dir), dirs)
		incoming, skipped = incoming+in, skipped+sk
	}
	// A rejected entry may be a symlink or FIFO that was moved aside.
	rejected = countEntries(r.cfg.Paths.Rejected, func(e fs.DirEntry) bool {
		return !e.IsDir() && !strings.HasSuffix(e.Name(), ".reason") && !strings.HasPrefix(e.Name(), ".")
	})
	return incoming, skipped, rejected
}

// countEntries counts the entries of dir that keep selects.
func countEntries(dir string, keep func(fs.DirEntry) bool) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if keep(e) {
			n++
		}
	}
	return n
}

func countFiles(dir string, keep func(string) bool) int {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if e.Type().IsRegular() && keep(e.Name()) {
			n++
		}
	}
	return n
}

// History returns the event log, oldest first, filtered by o.
func (r *Repo) History(ctx context.Context, o HistoryOptions) ([]Event, error) {
	if o.NEVRA != "" {
		if err := checkSpec(o.NEVRA); err != nil {
			return nil, err
		}
	}
	out := []Event{}
	err := r.view(func(tx kv.Tx) error {
		if o.Verify {
			if err := verifyEvents(tx); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if (o.NEVRA != "" && !eventNames(&e, o.NEVRA)) || (o.Action != "" && e.Action != o.Action && !strings.HasPrefix(e.Action, o.Action+".")) {
				return nil
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if o.Limit > 0 && len(out) > o.Limit {
		out = out[len(out)-o.Limit:]
	}
	return out, nil
}

// Bounds of a RolloutEvent's free text: enough for a command line and the
// tail of its output, too little to flood the log.
const (
	maxRolloutText   = 4096
	maxRolloutDetail = 16 << 10
)

var (
	// Compiled on first use: their bounded repetitions make large programs,
	// which every repoctl command (createrepo too) would otherwise build at start.
	rolloutKindRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9._-]{0,31}$`) })
	rolloutIDRE   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`) })
)

// Check validates e's fields.
func (e *RolloutEvent) Check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: rollout event: %s", ErrBadRequest, fmt.Sprintf(format, a...))
	}
	switch {
	case !rolloutKindRE().MatchString(e.Kind):
		return bad("kind %q", e.Kind)
	case !rolloutIDRE().MatchString(e.Rollout):
		return bad("rollout id %q", e.Rollout)
	case e.NEVRA != "" && nevra.Spec(e.NEVRA) != nil:
		return bad("%v", nevra.Spec(e.NEVRA))
	case len(e.Phase) > maxRolloutText || len(e.Host) > maxRolloutText || len(e.Command) > maxRolloutText || len(e.Who) > 256:
		return bad("a field is longer than %d bytes", maxRolloutText)
	case len(e.Detail) > maxRolloutDetail:
		return bad("detail is longer than %d bytes", maxRolloutDetail)
	}
	return nil
}

// RecordRollout appends e as event "upgrade.KIND" (Seq, Prev and Hash are
// assigned; Time defaults to now) with the caller's identity.
func (r *Repo) RecordRollout(ctx context.Context, e RolloutEvent) error {
	if err := e.Check(); err != nil {
		return err
	}
	d := map[string]string{"rollout": e.Rollout}
	for k, v := range map[string]string{"phase": e.Phase, "host": e.Host, "command": e.Command, "detail": e.Detail} {
		if v != "" {
			d[k] = v
		}
	}
	if e.ExitStatus != 0 {
		d["exit_status"] = strconv.Itoa(e.ExitStatus)
	}
	ev := r.actor(ctx, e.Who).stamp(Event{Time: e.Time, Action: "upgrade." + e.Kind, NEVRA: e.NEVRA, Details: d})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if err := r.st.db.Update(func(tx kv.Tx) error { return appendEvent(tx, &ev) }); err != nil {
		return err
	}
	r.countRollout(e)
	return nil
}

// CheckStore runs the store's consistency check (bbolt's page check); tests and `status` use it.
func (r *Repo) CheckStore() error {
	return r.view(func(tx kv.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
}

var _ = filepath.Join
