package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/internal/nevra"
	"github.com/repoctl/repoctl/metadata"
)

// Event actions of fsck and republish.
const (
	EventRepublish  = "republish"
	EventFsckRepair = "fsck.repair"
)

// RepublishOptions steer Republish.
type RepublishOptions struct {
	// Dirs are repository directories, or parents of some (main,
	// main/prod, main/prod/el/9), relative to ROOT/repo or absolute
	// inside it. Empty: every repository directory.
	Dirs []string `json:"dirs,omitempty"`
	Who  string   `json:"who,omitempty"`
	// DryRun says which directories would be rebuilt and whether their
	// content would change; nothing is written or recorded.
	DryRun bool `json:"dry_run,omitempty"`
}

// RepublishResult lists what Republish rebuilt.
type RepublishResult struct {
	Dirs   []RepublishedDir `json:"dirs"`
	DryRun bool             `json:"dry_run,omitempty"`
}

// RepublishedDir is one rebuilt repository directory.
type RepublishedDir struct {
	Dir      string `json:"dir"` // relative to ROOT/repo
	Packages int    `json:"packages"`
	// Changed: what was served differed from what the store publishes
	// (content, or a missing or stale signature). A republish writes a
	// new revision and signature either way.
	Changed  bool   `json:"changed"`
	Revision string `json:"revision,omitempty"` // the new repomd.xml revision
}

// publishOptions are the options of every publish of dir, signed by
// signer. Fsck's dry run uses them too, so it compares with exactly what a
// publish would write.
func (r *Repo) publishOptions(dir string, signer func(context.Context, []byte) ([]byte, error)) []metadata.PublishOption {
	var state *metadata.PublishState
	if !r.noPubState {
		state = r.publishState(dir)
	}
	return []metadata.PublishOption{
		metadata.WithCompression(r.cfg.Publish.Compression),
		metadata.WithSigner(signer),
		metadata.WithLockWait(true),
		metadata.WithGrace(r.cfg.grace()),
		metadata.WithRetainOld(*r.cfg.Publish.RetainOldMD),
		metadata.WithBlockCache(blockCache{r.st, dir}),
		metadata.WithState(state),
		metadata.WithFragmentLoader(r.fragmentLoader(dir)),
		metadata.WithExtraRecordsFunc(func() ([]metadata.ExtraRecord, error) { return r.extraRecords(dir) }),
	}
}

// Republish rebuilds the repodata of the given repository directories (or
// all) from the store: signed with the current key, under a new revision,
// published atomically, whether or not the content changed. It is the
// repair for a tree someone else wrote into (createrepo, an edit) and what
// makes every repomd.xml.asc carry the current key. Package files are not
// touched; `repoctl fsck` checks those.
func (r *Repo) Republish(ctx context.Context, o RepublishOptions) (*RepublishResult, error) {
	scope, err := r.dirScope(o.Dirs)
	if err != nil {
		return nil, err
	}
	act := r.actor(ctx, o.Who)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	dirs, err := r.republishTargets(scope)
	if err != nil {
		return nil, err
	}
	if err := r.checkScope(scope, dirs); err != nil {
		return nil, err
	}
	res := &RepublishResult{Dirs: []RepublishedDir{}, DryRun: o.DryRun}
	for _, d := range dirs {
		changed, err := r.wouldChange(ctx, d, r.indexEntries(d))
		if err != nil {
			return nil, err
		}
		res.Dirs = append(res.Dirs, RepublishedDir{Dir: d, Packages: len(r.dirs[d]), Changed: changed})
	}
	if o.DryRun {
		return res, nil
	}
	for i := range res.Dirs {
		d := &res.Dirs[i]
		rev, err := r.forcePublish(ctx, d.Dir, act, func(rev string) Event {
			return act.stamp(Event{Action: EventRepublish, Path: d.Dir, Details: map[string]string{
				"packages": strconv.Itoa(d.Packages), "revision": rev, "changed": strconv.FormatBool(d.Changed)}})
		})
		if err != nil {
			return res, err
		}
		d.Revision = rev
	}
	return res, nil
}

// forcePublish publishes dir from the index under a new revision, so that
// repomd.xml and its signature are rewritten even when the content is
// unchanged, clears the directory's dirty mark and records the publish
// event and the one ev makes, in one transaction. The caller holds r.mu.
func (r *Repo) forcePublish(ctx context.Context, dir string, a actor, ev func(rev string) Event) (string, error) {
	rev := newRevision(r.servedRevision(dir), time.Now())
	events, err := r.publishDirs(ctx, []string{dir}, nil, a, metadata.WithRevision(rev))
	if err != nil {
		return "", err
	}
	if ev != nil {
		events = append(events, ev(rev))
	}
	err = r.st.db.Update(func(tx kv.Tx) error {
		if err := tx.Bucket(bucketDirty).Delete([]byte(dir)); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return "", fmt.Errorf("recording the publish of %q: %w", dir, err)
	}
	return rev, nil
}

// newRevision is a revision different from old: the unix time, or one
// more than old when old is a number not below it (two publishes in one
// second, or a clock that went back).
func newRevision(old string, now time.Time) string {
	n := now.Unix()
	if o, err := strconv.ParseInt(old, 10, 64); err == nil && o >= n {
		n = o + 1
	}
	return strconv.FormatInt(n, 10)
}

// servedRevision is the revision of dir's repomd.xml, "" if there is none
// or it does not parse.
func (r *Repo) servedRevision(dir string) string {
	f, err := r.tree.root.Open(dir + "/" + metadata.RepodataDir + "/repomd.xml")
	if err != nil {
		return ""
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return ""
	}
	md, err := metadata.ParseRepomd(raw)
	if err != nil {
		return ""
	}
	return md.Revision
}

// indexEntries is what a publish of dir writes: the index's entries.
func (r *Repo) indexEntries(dir string) []metadata.Entry {
	r.idxMu.RLock()
	defer r.idxMu.RUnlock()
	out := make([]metadata.Entry, 0, len(r.dirs[dir]))
	for _, e := range r.dirs[dir] {
		out = append(out, *e)
	}
	return out
}

// wouldChange reports whether publishing entries into dir would change
// what is served: its content, or a missing signature. It writes nothing.
func (r *Repo) wouldChange(ctx context.Context, dir string, entries []metadata.Entry) (bool, error) {
	fi, err := r.tree.root.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("%w: %q is not a directory", ErrEscape, dir)
	}
	d, err := r.tree.root.OpenRoot(dir)
	if err != nil {
		return false, err
	}
	defer d.Close()
	// A dry run never signs, but whether a signer is set decides whether
	// a missing repomd.xml.asc is a change; this one needs no key, so it
	// runs without the change lock while a key rotation may swap keys.
	noSign := func(context.Context, []byte) ([]byte, error) { return nil, errors.New("dry run") }
	pr, err := metadata.PublishRoot(ctx, d, entries, append(r.publishOptions(dir, noSign), metadata.WithDryRun(true))...)
	if err != nil {
		return false, fmt.Errorf("comparing the repodata of %q with the store: %w", dir, err)
	}
	return pr.Changed, nil
}

// republishTargets are the repository directories in scope that repoctl
// publishes: those the store places packages in, and those in the tree
// with repodata whose path is one of this root's repository directories
// (emptied by removals, or published empty).
func (r *Repo) republishTargets(scope []string) ([]string, error) {
	set := map[string]bool{}
	r.idxMu.RLock()
	for d := range r.dirs {
		if inScope(scope, d) {
			set[d] = true
		}
	}
	r.idxMu.RUnlock()
	found, err := r.walkTree(scope)
	if err != nil {
		return nil, err
	}
	for d, td := range found {
		if td.repodata && r.isRepoDir(d) {
			set[d] = true
		}
	}
	return sortedKeys(set), nil
}

// isRepoDir reports whether dir (relative to ROOT/repo) is a repository
// directory of this root: REPO/CHANNEL/RELEASE…/ARCH with a configured
// repository and channel, and an arch of the release (or SRPMS) or one
// the store places packages of that release in, in any channel (every
// channel gets repodata for it).
func (r *Repo) isRepoDir(dir string) bool {
	parts := strings.Split(dir, "/")
	if len(parts) < 4 || !slices.Contains(r.cfg.Repos, parts[0]) || !slices.Contains(r.cfg.Channels, parts[1]) {
		return false
	}
	rel, arch := strings.Join(parts[2:len(parts)-1], "/"), parts[len(parts)-1]
	if !releaseRE().MatchString(rel) {
		return false
	}
	if arch == "SRPMS" || (nevra.Arch(arch) == nil && slices.Contains(r.cfg.Arches(rel), arch)) {
		return true
	}
	r.idxMu.RLock()
	defer r.idxMu.RUnlock()
	for d, m := range r.dirs {
		if len(m) > 0 && strings.HasSuffix(d, "/"+rel+"/"+arch) && strings.Count(d, "/") == len(parts)-1 {
			return true
		}
	}
	return false
}

// dirScope turns directory arguments into clean prefixes relative to
// ROOT/repo; nil means the whole tree.
func (r *Repo) dirScope(dirs []string) ([]string, error) {
	if len(dirs) > 1024 {
		return nil, fmt.Errorf("%w: %d directories; give at most 1024 (or none for all)", ErrBadOption, len(dirs))
	}
	var out []string
	for _, s := range dirs {
		orig := s
		if len(s) > 4096 {
			return nil, fmt.Errorf("%w: a directory argument is longer than 4096 bytes", ErrBadOption)
		}
		if filepath.IsAbs(s) {
			rel, err := filepath.Rel(r.cfg.Paths.Repo, filepath.Clean(s))
			if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
				return nil, fmt.Errorf("%w: %q is outside the served tree %q", ErrBadOption, orig, r.cfg.Paths.Repo)
			}
			s = rel
		}
		s = path.Clean(filepath.ToSlash(s))
		if s == "." {
			return nil, nil
		}
		for _, el := range strings.Split(s, "/") {
			if !plainName(el) {
				return nil, fmt.Errorf("%w: %q: give a directory below ROOT/repo such as main/staging/el/9/x86_64", ErrBadOption, orig)
			}
		}
		out = append(out, s)
	}
	// A prefix inside another adds nothing.
	sort.Strings(out)
	var kept []string
	for _, s := range out {
		if len(kept) == 0 || !inScope(kept[len(kept)-1:], s) {
			kept = append(kept, s)
		}
	}
	return kept, nil
}

// checkScope fails when a prefix the caller gave matches no repository
// directory: a typo must not pass as "nothing to do".
func (r *Repo) checkScope(scope, dirs []string) error {
	for _, p := range scope {
		if fi, err := r.tree.root.Lstat(p); err == nil && fi.IsDir() {
			continue
		}
		if !slices.ContainsFunc(dirs, func(d string) bool { return inScope([]string{p}, d) }) {
			return fmt.Errorf("%w: %q is not a repository directory of %s, nor a parent of one", ErrBadOption, p, r.cfg.Paths.Repo)
		}
	}
	return nil
}

// inScope reports whether dir is one of the prefixes or below one; a nil
// scope holds everything.
func inScope(scope []string, dir string) bool {
	if scope == nil {
		return true
	}
	for _, p := range scope {
		if dir == p || strings.HasPrefix(dir, p+"/") {
			return true
		}
	}
	return false
}

// treeDir is what the walk saw in one directory of the served tree.
type treeDir struct {
	repodata bool
	rpms     []fs.DirEntry // *.rpm entries that are not directories
}

// walkTree lists, below each scope prefix (or the whole tree), the
// directories that hold repodata/ or *.rpm entries. Dot entries (the
// publisher's lock, staging and cache) are skipped; symbolic links are
// never followed.
func (r *Repo) walkTree(scope []string) (map[string]*treeDir, error) {
	found := map[string]*treeDir{}
	get := func(d string) *treeDir {
		td := found[d]
		if td == nil {
			td = &treeDir{}
			found[d] = td
		}
		return td
	}
	starts := scope
	if starts == nil {
		starts = []string{"."}
	}
	fsys := r.tree.root.FS()
	for _, start := range starts {
		if !fs.ValidPath(start) {
			continue
		}
		// WalkDir follows a symbolic link given as its start; the walk
		// must never leave the tree, so a start is taken only as a
		// directory.
		if fi, err := r.tree.root.Lstat(start); err != nil || !fi.IsDir() {
			continue
		}
		err := fs.WalkDir(fsys, start, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return fmt.Errorf("walking the served tree at %q: %w", p, err)
			}
			name := e.Name()
			if p != start && strings.HasPrefix(name, ".") {
				if e.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if e.IsDir() {
				if name == metadata.RepodataDir && p != start {
					get(path.Dir(p)).repodata = true
					return fs.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(name, ".rpm") {
				td := get(path.Dir(p))
				td.rpms = append(td.rpms, e)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}
