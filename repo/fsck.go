package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/repoctl/repoctl/repo/input"
	kv "github.com/repoctl/repoctl/repo/store"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/repoctl/repoctl/internal/fsutil"
	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/sign"
)

// Kinds of FsckFinding.
const (
	// FsckMissing: a package file the store records is not there (or is
	// not a regular file).
	FsckMissing = "missing-package"
	// FsckModified: a package file differs from the recorded size or
	// sha256.
	FsckModified = "modified-package"
	// FsckSignature: a package file has the recorded bytes, but its
	// signature does not verify with a current key.
	FsckSignature = "package-signature"
	// FsckRepodata: repodata is missing, damaged (a file that does not
	// match repomd.xml) or differs from what the store publishes.
	FsckRepodata = "repodata"
	// FsckStrayListed: repodata lists a package the store does not place
	// in that directory.
	FsckStrayListed = "stray-listed"
	// FsckUnlisted: the store places a package that repodata does not list.
	FsckUnlisted = "unlisted"
	// FsckRepomdSignature: repomd.xml.asc is missing or does not verify
	// with a current key.
	FsckRepomdSignature = "repomd-signature"
	// FsckStrayFile: an .rpm file in the served tree that the store does
	// not place there.
	FsckStrayFile = "stray-file"
	// FsckUnknownDir: repodata/ in a directory that is not one of this
	// root's repository directories.
	FsckUnknownDir = "unknown-dir"
	// FsckPublicKey: the served RPM-GPG-KEY-repoctl is missing, unreadable
	// or lacks the signing key.
	FsckPublicKey = "public-key"
)

// FsckOptions steer Fsck.
type FsckOptions struct {
	// Dirs limits the check to these repository directories, or parents of
	// some (main, main/prod), relative to ROOT/repo or absolute inside it.
	// Empty: the whole tree.
	Dirs []string `json:"dirs,omitempty"`
	// Repair fixes what can be fixed (see FsckFinding.Repair).
	Repair bool   `json:"repair,omitempty"`
	Who    string `json:"who,omitempty"`
}

// FsckFinding is one thing in the served tree that does not match the store.
type FsckFinding struct {
	Kind    string `json:"kind"`
	Dir     string `json:"dir,omitempty"`  // repository directory, relative to ROOT/repo
	File    string `json:"file,omitempty"` // file, relative to ROOT/repo
	NEVRA   string `json:"nevra,omitempty"`
	Message string `json:"message"`
	// Repairable: Fsck with Repair can fix it. Repair says how (or what
	// was done, or why it cannot be).
	Repairable bool   `json:"repairable"`
	Repair     string `json:"repair,omitempty"`
	// Repaired: it was repaired and a check afterwards no longer finds it.
	Repaired bool `json:"repaired,omitempty"`
}

func (f *FsckFinding) key() string { return f.Kind + "\x00" + f.Dir + "\x00" + f.File }

// FsckReport is the outcome of Fsck.
type FsckReport struct {
	Dirs     []string      `json:"dirs"`     // repository directories checked
	Packages int           `json:"packages"` // package files checked
	Findings []FsckFinding `json:"findings"`
	Repair   bool          `json:"repair,omitempty"`
}

// Err is nil when the tree matches the store (every finding repaired);
// otherwise it wraps ErrFsck and counts what is left.
func (rep *FsckReport) Err() error {
	n, kinds := 0, map[string]bool{}
	for _, f := range rep.Findings {
		if !f.Repaired {
			n++
			kinds[f.Kind] = true
		}
	}
	if n == 0 {
		return nil
	}
	return fmt.Errorf("%w: %d finding(s): %s", ErrFsck, n, strings.Join(sortedKeys(kinds), ", "))
}

// Fsck checks the served tree (or o.Dirs) against the store: every package
// file exists with the recorded size and sha256 and a signature by a
// current key; every repository directory's repodata is what the store
// would publish (Publish's dry run with the options of a real publish),
// its files match repomd.xml, and repomd.xml.asc verifies; nothing is
// listed or lying in a repository directory that the store does not
// place there. Current keys are the signing key and the keys of the
// served RPM-GPG-KEY-repoctl, which is what hosts import.
//
// The tree is checked without holding up ingest; whatever that finds is
// checked again under the change lock, so a batch that ran meanwhile is
// never reported. With o.Repair, under that lock: a missing or modified
// package file is restored by hard link from another placement of the
// same record that has the recorded bytes (else it is reported as not
// repairable: fsck never changes the store); a directory whose repodata
// or signature is wrong is republished from the store under a new
// revision; stray files are moved to ROOT/rejected (with a .reason) once
// no repodata lists them; a served key file without the signing key gets
// it added. Each repair is recorded as an event (fsck.repair), then the
// repaired parts are checked again.
//
// The error is for a check that could not run; what the check found is
// in the report, and FsckReport.Err turns it into ErrFsck. Fsck takes the
// change lock itself: code holding r.mu calls fsckHeld.
func (r *Repo) Fsck(ctx context.Context, o FsckOptions) (*FsckReport, error) {
	scope, err := r.dirScope(o.Dirs)
	if err != nil {
		return nil, err
	}
	act := r.actor(ctx, o.Who)
	first, err := r.fsckScan(ctx, scope)
	if err != nil {
		return nil, err
	}
	if err := r.checkScope(scope, first.scopeHits()); err != nil {
		return nil, err
	}
	rep := &FsckReport{Dirs: append([]string{}, first.dirs...), Packages: first.packages, Findings: []FsckFinding{}, Repair: o.Repair}
	if len(first.findings) == 0 {
		return rep, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	second, err := r.fsckScan(ctx, flagged(first.findings))
	if err != nil {
		return nil, err
	}
	if !o.Repair || len(second.findings) == 0 {
		r.fsckHints(ctx, second)
		rep.Findings = append(rep.Findings, second.findings...)
		return rep, nil
	}
	if err := r.fsckRepair(ctx, second, act); err != nil {
		return nil, err
	}
	third, err := r.fsckScan(ctx, flagged(second.findings))
	if err != nil {
		return nil, err
	}
	left := map[string]bool{}
	for _, f := range third.findings {
		left[f.key()] = true
	}
	seen := map[string]bool{}
	for i := range second.findings {
		f := &second.findings[i]
		seen[f.key()] = true
		f.Repaired = f.Repairable && !left[f.key()]
		if f.Repairable && !f.Repaired && !strings.HasPrefix(f.Repair, "not repaired") {
			f.Repair = "not repaired: still found after the repair (" + f.Repair + ")"
		}
	}
	rep.Findings = second.findings
	// What the repair left behind that was not there before (it should
	// be nothing) is reported too.
	r.fsckHints(ctx, third)
	for _, f := range third.findings {
		if !seen[f.key()] {
			rep.Findings = append(rep.Findings, f)
		}
	}
	sortFindings(rep.Findings)
	return rep, nil
}

// fsckHeld is Fsck of the whole tree without repair for a caller that
// already holds r.mu (Fsck itself takes it, so it must not be called
// then), such as a key rotation checking its own work: one scan, which the
// lock makes final.
func (r *Repo) fsckHeld(ctx context.Context) (*FsckReport, error) {
	res, err := r.fsckScan(ctx, nil)
	if err != nil {
		return nil, err
	}
	r.fsckHints(ctx, res)
	return &FsckReport{Dirs: append([]string{}, res.dirs...), Packages: res.packages, Findings: append([]FsckFinding{}, res.findings...)}, nil
}

// flagged is the scope that covers every finding: its directory, or the
// directory of its file. Findings about the whole tree (the public key)
// are checked by every scan anyway.
func flagged(findings []FsckFinding) []string {
	set := map[string]bool{}
	for _, f := range findings {
		switch {
		case f.Dir != "":
			set[f.Dir] = true
		case f.Kind == FsckPublicKey:
		case f.File != "":
			set[path.Dir(f.File)] = true
		}
	}
	if set["."] {
		return nil
	}
	out := []string{} // not nil: nil means the whole tree
	for _, d := range sortedKeys(set) {
		if len(out) == 0 || !inScope(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// fsckResult is one scan.
type fsckResult struct {
	scope    []string
	dirs     []string // repository directories checked
	found    map[string]*treeDir
	packages int
	findings []FsckFinding
	// expect: dir → file name → record placed there (records with an
	// Entry), in scope.
	expect map[string]map[string]*PackageRecord
	// records by repo NUL NEVRA, all of them (repairs look for copies
	// outside the scope).
	records map[string]*PackageRecord
	keys    []*sign.Key
	served  []*sign.Key // keys of the served key file that could be read
	hasSig  bool        // the served key file holds the signing key
}

// scopeHits is every directory the scan saw, for checking the arguments.
func (res *fsckResult) scopeHits() []string {
	set := map[string]bool{}
	for _, d := range res.dirs {
		set[d] = true
	}
	for d := range res.found {
		set[d] = true
	}
	return sortedKeys(set)
}

func (res *fsckResult) add(f FsckFinding) { res.findings = append(res.findings, f) }

// fsckScan checks everything in scope (nil: the whole tree). It only
// reads; the store is read in one snapshot.
func (r *Repo) fsckScan(ctx context.Context, scope []string) (*fsckResult, error) {
	res := &fsckResult{scope: scope, expect: map[string]map[string]*PackageRecord{}, records: map[string]*PackageRecord{}}
	r.fsckKeys(res)
	var recs []*PackageRecord
	err := r.view(func(tx kv.Tx) error {
		return eachPackage(tx, "", func(p *PackageRecord) error {
			recs = append(recs, p)
			res.records[p.Repo+"\x00"+p.NEVRA] = p
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	type check struct {
		rec *PackageRecord
		pls []Placement
	}
	var checks []check
	for _, p := range recs {
		var pls []Placement
		for _, pl := range p.Placements {
			if !inScope(scope, pl.Dir) {
				continue
			}
			if err := checkPlacement(p.Repo, pl); err != nil {
				res.add(FsckFinding{Kind: FsckMissing, Dir: pl.Dir, NEVRA: p.NEVRA,
					Message: fmt.Sprintf("the store places %s at an invalid path: %v", p.NEVRA, err)})
				continue
			}
			pls = append(pls, pl)
			if p.Entry != nil {
				m := res.expect[pl.Dir]
				if m == nil {
					m = map[string]*PackageRecord{}
					res.expect[pl.Dir] = m
				}
				m[path.Base(pl.File)] = p
			}
		}
		if len(pls) > 0 {
			checks = append(checks, check{p, pls})
			res.packages += len(pls)
		}
	}
	if res.found, err = r.walkTree(scope); err != nil {
		return nil, err
	}

	// Which directories are repository directories.
	isRepo := map[string]bool{}
	for d := range res.expect {
		isRepo[d] = true
	}
	for d, td := range res.found {
		if (td.repodata || len(td.rpms) > 0) && r.isRepoDir(d) {
			isRepo[d] = true
		}
	}
	res.dirs = sortedKeys(isRepo)
	// Held files and trashed ones waiting for their grace are ours,
	// though no repodata lists them (held.go).
	kept, err := r.keptFiles()
	if err != nil {
		return nil, err
	}
	for _, d := range sortedKeys(setOf(res.found)) {
		td := res.found[d]
		if td.repodata && !isRepo[d] {
			res.add(FsckFinding{Kind: FsckUnknownDir, Dir: d,
				Message: d + "/repodata is not published by repoctl: " + d + " is not a repository directory of this root"})
		}
		owner := ""
		for a := d; a != "." && a != "/"; a = path.Dir(a) {
			if isRepo[a] {
				owner = a
				break
			}
		}
		for _, e := range td.rpms {
			if owner == d && res.expect[d][e.Name()] != nil {
				// Recorded here; if it is not a regular file, the package
				// check reports it.
				continue
			}
			file := path.Join(d, e.Name())
			if kept[file] && e.Type().IsRegular() {
				continue
			}
			f := FsckFinding{Kind: FsckStrayFile, Dir: owner, File: file,
				Message: file + " is not a package the store places here"}
			if !e.Type().IsRegular() {
				f.Message += " (" + input.Describe(e.Type()) + ")"
			}
			res.add(f)
		}
	}

	// Package files, in parallel; one hash per inode, one signature check
	// per record.
	var mu sync.Mutex
	hashes := &inodeHashes{m: map[inodeKey]string{}}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.o.workers)
	for _, c := range checks {
		g.Go(func() error {
			got, err := r.fsckRecord(gctx, c.rec, c.pls, res.keys, hashes)
			if err != nil {
				return err
			}
			mu.Lock()
			res.findings = append(res.findings, got...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// Repodata of each repository directory.
	for _, d := range res.dirs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		got, err := r.fsckDir(ctx, d, res.expect[d], res.found[d], res.keys)
		if err != nil {
			return nil, err
		}
		res.findings = append(res.findings, got...)
	}
	got, err := r.fsckTarget(ctx, res)
	if err != nil {
		return nil, err
	}
	res.findings = append(res.findings, got...)
	sortFindings(res.findings)
	return res, nil
}

func setOf[V any](m map[string]V) map[string]bool {
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func sortFindings(fs []FsckFinding) {
	sort.SliceStable(fs, func(i, j int) bool {
		a, b := fs[i], fs[j]
		if a.Dir != b.Dir {
			return a.Dir < b.Dir
		}
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Kind < b.Kind
	})
}

// fsckKeys loads the current keys: the signing key and the served key
// file's keys, and reports a served key file hosts cannot use.
func (r *Repo) fsckKeys(res *fsckResult) {
	res.keys = []*sign.Key{r.Key()}
	bad := func(msg string) {
		res.add(FsckFinding{Kind: FsckPublicKey, File: PublicKeyFile, Message: msg})
	}
	b, err := readTreeFile(r.tree.root, PublicKeyFile, 1<<20)
	if errors.Is(err, fs.ErrNotExist) {
		bad(PublicKeyFile + " is missing: hosts cannot import the key their .repo names (gpgkey=)")
		return
	}
	if err != nil {
		bad(fmt.Sprintf("%s cannot be read: %v", PublicKeyFile, err))
		return
	}
	ring, err := sign.ReadKeyring(bytes.NewReader(b))
	if err != nil {
		bad(fmt.Sprintf("%s holds no usable key: %v", PublicKeyFile, err))
		return
	}
	res.served = ring
	for _, k := range ring {
		if k.Fingerprint() == r.Key().Fingerprint() {
			res.hasSig = true
		} else {
			res.keys = append(res.keys, k)
		}
	}
	if !res.hasSig {
		bad(fmt.Sprintf("%s does not hold the signing key %s: hosts cannot verify what is signed now", PublicKeyFile, r.Key().KeyID()))
	}
}

// readTreeFile reads a regular file of at most max bytes from the tree.
func readTreeFile(root *os.Root, name string, max int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return nil, err
	} else if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("larger than %d bytes", max)
	}
	return b, nil
}

// inodeKey identifies file content by inode: hard-linked placements are
// hashed once.
type inodeKey struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

type inodeHashes struct {
	mu sync.Mutex
	m  map[inodeKey]string
}

// fileState says whether file (relative to the tree) has size and sum:
// "" if it does, else why not and whether it is missing altogether.
func (r *Repo) fileState(ctx context.Context, file string, size int64, sum string, hashes *inodeHashes) (problem string, missing bool, err error) {
	fi, err := r.tree.root.Lstat(file)
	if errors.Is(err, fs.ErrNotExist) {
		return file + " is missing", true, nil
	}
	if err != nil {
		// A symbolic link planted in the tree's path, a permission: a
		// client cannot fetch it either.
		return fmt.Sprintf("%s cannot be read: %v", file, err), true, nil
	}
	if !fi.Mode().IsRegular() {
		return fmt.Sprintf("%s is %s, not the package file", file, input.Describe(fi.Mode())), true, nil
	}
	if fi.Size() != size {
		return fmt.Sprintf("%s has %d bytes, the store recorded %d", file, fi.Size(), size), false, nil
	}
	got, err := r.hashFile(ctx, file, fi, hashes)
	if err != nil {
		if ctx.Err() != nil {
			return "", false, ctx.Err()
		}
		return fmt.Sprintf("%s cannot be read: %v", file, err), false, nil
	}
	if got != sum {
		return fmt.Sprintf("%s has sha256 %s, the store recorded %s", file, got, sum), false, nil
	}
	return "", false, nil
}

func (r *Repo) hashFile(ctx context.Context, file string, fi fs.FileInfo, hashes *inodeHashes) (string, error) {
	var k inodeKey
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok {
		k = inodeKey{uint64(st.Dev), st.Ino, fi.Size(), fi.ModTime().UnixNano()}
		hashes.mu.Lock()
		s, done := hashes.m[k]
		hashes.mu.Unlock()
		if done {
			return s, nil
		}
	}
	f, err := r.tree.root.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if ofi, err := f.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return "", errors.New("it changed while being checked")
	}
	h := sha256.New()
	if _, err := io.Copy(h, input.Reader(ctx, f)); err != nil {
		return "", err
	}
	s := hex.EncodeToString(h.Sum(nil))
	if ok {
		hashes.mu.Lock()
		hashes.m[k] = s
		hashes.mu.Unlock()
	}
	return s, nil
}

// fsckRecord checks the placements pls of one record.
func (r *Repo) fsckRecord(ctx context.Context, p *PackageRecord, pls []Placement, keys []*sign.Key, hashes *inodeHashes) ([]FsckFinding, error) {
	var out []FsckFinding
	good := ""
	for _, pl := range pls {
		problem, missing, err := r.fileState(ctx, pl.File, p.Size, p.SHA256, hashes)
		if err != nil {
			return nil, err
		}
		switch {
		case problem == "":
			if good == "" {
				good = pl.File
			}
		case missing:
			out = append(out, FsckFinding{Kind: FsckMissing, Dir: pl.Dir, File: pl.File, NEVRA: p.NEVRA, Message: problem})
		default:
			out = append(out, FsckFinding{Kind: FsckModified, Dir: pl.Dir, File: pl.File, NEVRA: p.NEVRA, Message: problem})
		}
	}
	if good == "" {
		return out, nil
	}
	msg, err := r.verifyPackage(ctx, good, keys)
	if err != nil {
		return nil, err
	}
	if msg != "" {
		out = append(out, FsckFinding{Kind: FsckSignature, Dir: path.Dir(good), File: good, NEVRA: p.NEVRA, Message: msg})
	}
	return out, nil
}

// verifyPackage checks the digests and signatures of the tree file like
// `rpmkeys -K` with the current keys; "" means valid.
func (r *Repo) verifyPackage(ctx context.Context, file string, keys []*sign.Key) (string, error) {
	f, err := r.tree.root.Open(file)
	if err != nil {
		return fmt.Sprintf("%s cannot be verified: %v", file, err), nil
	}
	defer f.Close()
	// The verifier takes a path; the descriptor's own /proc entry is the
	// inode just opened through the tree's root, whatever happens to the
	// name meanwhile.
	rep, err := sign.VerifyFile(ctx, fmt.Sprintf("/proc/self/fd/%d", f.Fd()), keys)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return fmt.Sprintf("%s cannot be verified: %s", file, strings.ReplaceAll(err.Error(), fmt.Sprintf("/proc/self/fd/%d", f.Fd()), file)), nil
	}
	if rep.OK {
		return "", nil
	}
	var bad []string
	for _, c := range append(append([]sign.Check(nil), rep.Digests...), rep.Signatures...) {
		if c.Status == "OK" {
			continue
		}
		s := c.Name + ": " + c.Status
		if c.KeyID != "" {
			s += " (key " + c.KeyID + ")"
		}
		if c.Reader != "" {
			s += " [as " + c.Reader + " reads it]"
		}
		bad = append(bad, s)
	}
	if len(rep.Signatures) == 0 {
		bad = append(bad, "no signature")
	}
	return fmt.Sprintf("%s is not signed by a current key: %s", file, strings.Join(bad, "; ")), nil
}

// fsckDir checks the repodata of the repository directory d against the
// records the store places there.
func (r *Repo) fsckDir(ctx context.Context, d string, expect map[string]*PackageRecord, td *treeDir, keys []*sign.Key) ([]FsckFinding, error) {
	var out []FsckFinding
	add := func(kind, file, nevra, msg string) {
		out = append(out, FsckFinding{Kind: kind, Dir: d, File: file, NEVRA: nevra, Message: msg})
	}
	fi, err := r.tree.root.Lstat(d)
	if errors.Is(err, fs.ErrNotExist) {
		add(FsckRepodata, "", "", d+" is missing: the store places packages there")
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checking %q: %w", d, err)
	}
	if !fi.IsDir() {
		add(FsckRepodata, "", "", d+" is "+input.Describe(fi.Mode())+", not a repository directory")
		return out, nil
	}
	root, err := r.tree.root.OpenRoot(d)
	if err != nil {
		return nil, fmt.Errorf("checking %q: %w", d, err)
	}
	defer root.Close()
	st, err := metadata.ReadRepodataState(ctx, root)
	if err != nil {
		return nil, fmt.Errorf("reading the repodata of %q: %w", d, err)
	}
	if st.Repomd == nil && len(st.Problems) == 0 {
		if len(expect) > 0 || (td != nil && td.repodata) {
			add(FsckRepodata, d+"/repodata/repomd.xml", "", d+"/repodata/repomd.xml is missing: dnf cannot use this repository")
		}
		return out, nil
	}
	for _, p := range st.Problems {
		add(FsckRepodata, "", "", d+": "+p)
	}
	related := len(st.Problems) > 0
	if st.Packages != nil {
		listed := map[string]metadata.ListedPackage{}
		for _, lp := range st.Packages {
			listed[lp.Href] = lp
			nevra := formatNEVRA(lp.Name, lp.Epoch, lp.Version, lp.Release, lp.Arch)
			rec := expect[lp.Href]
			switch {
			case lp.Base != "":
				add(FsckStrayListed, d+"/"+lp.Href, nevra, fmt.Sprintf("repodata lists %s at %s%s, outside this directory", nevra, lp.Base, lp.Href))
			case rec == nil:
				add(FsckStrayListed, d+"/"+lp.Href, nevra, fmt.Sprintf("repodata lists %s (%s), which the store does not place in %s", nevra, lp.Href, d))
			case lp.PkgID != rec.SHA256:
				add(FsckRepodata, d+"/"+lp.Href, rec.NEVRA, fmt.Sprintf("repodata lists %s with checksum %s, the store recorded %s", lp.Href, lp.PkgID, rec.SHA256))
			default:
				continue
			}
			related = true
		}
		for _, name := range sortedKeys(setOf(expect)) {
			if _, ok := listed[name]; !ok {
				add(FsckUnlisted, d+"/"+name, expect[name].NEVRA, fmt.Sprintf("repodata of %s does not list %s, which the store places there", d, expect[name].NEVRA))
				related = true
			}
		}
	}
	switch {
	case st.Repomd == nil:
	case st.Signature == nil:
		add(FsckRepomdSignature, d+"/repodata/repomd.xml.asc", "", d+"/repodata/repomd.xml.asc is missing: dnf with repo_gpgcheck=1 refuses the repository")
	default:
		if _, err := sign.VerifyDetached(st.Repomd, st.Signature, keys); err != nil {
			add(FsckRepomdSignature, d+"/repodata/repomd.xml.asc", "", d+"/repodata/repomd.xml.asc: "+strings.TrimPrefix(err.Error(), sign.ErrBadSignature.Error()+": "))
		}
	}
	if related {
		return out, nil
	}
	entries := make([]metadata.Entry, 0, len(expect))
	for _, p := range expect {
		entries = append(entries, *p.Entry)
	}
	changed, err := r.wouldChange(ctx, d, entries)
	if err != nil {
		return nil, err
	}
	// A missing signature alone makes a publish change the directory;
	// that is reported above.
	if changed && st.Signature != nil {
		add(FsckRepodata, "", "", d+": repodata differs from what the store publishes")
	}
	return out, nil
}

// fsckHints fills in how each finding could be repaired.
func (r *Repo) fsckHints(ctx context.Context, res *fsckResult) {
	hashes := &inodeHashes{m: map[inodeKey]string{}}
	for i := range res.findings {
		f := &res.findings[i]
		switch f.Kind {
		case FsckMissing, FsckModified:
			p := r.findingRecord(res, f)
			if p == nil || f.File == "" {
				f.Repair = "not repairable: the store's record is unusable"
				continue
			}
			src := r.goodCopy(ctx, p, f.File, hashes)
			if src == "" {
				f.Repair = fmt.Sprintf("not repairable: no placed copy has the recorded bytes (sha256 %s); `repoctl remove %s` and add the package again", p.SHA256, p.NEVRA)
				continue
			}
			f.Repairable, f.Repair = true, "restore from "+src+" (hard link)"
		case FsckSignature:
			f.Repair = "not repairable by fsck: the package must be signed again with a current key"
		case FsckRepodata, FsckStrayListed, FsckUnlisted, FsckRepomdSignature:
			f.Repairable, f.Repair = true, "republish "+f.Dir+" from the store"
		case FsckStrayFile:
			f.Repairable, f.Repair = true, "move to "+r.cfg.Paths.Rejected+"/"
			if f.Dir != "" {
				f.Repair += " once the repodata of " + f.Dir + " does not list it"
			}
		case FsckUnknownDir:
			f.Repair = "not repairable by fsck: remove " + f.Dir + "/repodata by hand if nothing uses it"
		case FsckPublicKey:
			f.Repairable, f.Repair = true, "rewrite "+PublicKeyFile+" with the signing key added to the keys it holds"
		}
	}
}

func (r *Repo) findingRecord(res *fsckResult, f *FsckFinding) *PackageRecord {
	repoName, _, _ := strings.Cut(f.Dir, "/")
	return res.records[repoName+"\x00"+f.NEVRA]
}

// goodCopy is a placement of p other than not whose file has the
// recorded bytes, "" if there is none.
func (r *Repo) goodCopy(ctx context.Context, p *PackageRecord, not string, hashes *inodeHashes) string {
	for _, pl := range p.Placements {
		if pl.File == not || checkPlacement(p.Repo, pl) != nil {
			continue
		}
		if problem, _, err := r.fileState(ctx, pl.File, p.Size, p.SHA256, hashes); err == nil && problem == "" {
			return pl.File
		}
	}
	return ""
}

// fsckRepair repairs what res found; the caller holds r.mu. Package files
// first, then repodata, then strays (only once unlisted).
func (r *Repo) fsckRepair(ctx context.Context, res *fsckResult, act actor) error {
	r.fsckHints(ctx, res)
	record := func(e Event) error {
		e = act.stamp(e)
		return r.st.db.Update(func(tx kv.Tx) error { return appendEvent(tx, &e) })
	}
	fail := func(f *FsckFinding, err error) {
		f.Repair = "not repaired: " + err.Error()
	}
	hashes := &inodeHashes{m: map[inodeKey]string{}}
	for i := range res.findings {
		f := &res.findings[i]
		if !f.Repairable {
			continue
		}
		switch f.Kind {
		case FsckPublicKey:
			if err := r.repairPublicKey(res); err != nil {
				fail(f, err)
				continue
			}
			f.Repair = "rewrote " + PublicKeyFile + " with the signing key " + r.Key().KeyID()
			if err := record(Event{Action: EventFsckRepair, Path: PublicKeyFile,
				Details: map[string]string{"kind": f.Kind, "key_id": r.Key().KeyID()}}); err != nil {
				return err
			}
		case FsckMissing, FsckModified:
			p := r.findingRecord(res, f)
			var pl *Placement
			for j := range p.Placements {
				if p.Placements[j].File == f.File {
					pl = &p.Placements[j]
				}
			}
			src := r.goodCopy(ctx, p, f.File, hashes)
			if pl == nil || src == "" {
				f.Repairable, f.Repair = false, "not repairable: no placed copy has the recorded bytes any more"
				continue
			}
			if err := r.tree.linkWithin(src, *pl); err != nil {
				fail(f, err)
				continue
			}
			if err := r.tree.syncDir(pl.Dir); err != nil {
				return err
			}
			f.Repair = "restored from " + src + " (hard link)"
			if err := record(Event{Action: EventFsckRepair, Repo: p.Repo, Channel: pl.Channel, NEVRA: p.NEVRA, Path: f.File,
				Details: map[string]string{"kind": f.Kind, "from": src, "sha256": p.SHA256}}); err != nil {
				return err
			}
		}
	}
	// Repodata: one republish per directory, whatever was wrong with it.
	kinds := map[string][]string{}
	for _, f := range res.findings {
		switch f.Kind {
		case FsckRepodata, FsckStrayListed, FsckUnlisted, FsckRepomdSignature:
			if !strings.Contains(strings.Join(kinds[f.Dir], " "), f.Kind) {
				kinds[f.Dir] = append(kinds[f.Dir], f.Kind)
			}
		}
	}
	republished := map[string]string{} // dir → revision, or "" when it failed
	for _, d := range sortedKeys(setOf(kinds)) {
		rev, err := r.forcePublish(ctx, d, act, func(rev string) Event {
			return act.stamp(Event{Action: EventFsckRepair, Path: d, Details: map[string]string{
				"kind": strings.Join(kinds[d], " "), "republished": "true", "revision": rev}})
		})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for i := range res.findings {
				if f := &res.findings[i]; f.Dir == d && slices.Contains(kinds[d], f.Kind) {
					fail(f, err)
				}
			}
			continue
		}
		republished[d] = rev
	}
	for i := range res.findings {
		f := &res.findings[i]
		switch f.Kind {
		case FsckRepodata, FsckStrayListed, FsckUnlisted, FsckRepomdSignature:
			if rev, ok := republished[f.Dir]; ok {
				f.Repair = "republished " + f.Dir + " from the store (revision " + rev + ")"
			}
		}
	}
	if err := r.repairTarget(ctx, res, record); err != nil {
		return err
	}
	// Strays go last, and only those no repodata of ours lists now.
	for i := range res.findings {
		f := &res.findings[i]
		if f.Kind != FsckStrayFile || !f.Repairable {
			continue
		}
		if f.Dir != "" {
			if listed, err := r.listedHrefs(ctx, f.Dir); err != nil || listed[strings.TrimPrefix(f.File, f.Dir+"/")] {
				f.Repair = "not repaired: the repodata of " + f.Dir + " still lists it"
				continue
			}
			if res.expect[f.Dir][path.Base(f.File)] != nil && path.Dir(f.File) == f.Dir {
				f.Repair = "not repaired: the store places a package under this name"
				continue
			}
		}
		kept, err := r.keepStray(f.File)
		if err != nil {
			fail(f, err)
			continue
		}
		if kept == "" {
			f.Repair = "removed " + f.File
		} else {
			f.Repair = "moved to " + kept
		}
		if err := record(Event{Action: EventFsckRepair, Path: f.File,
			Details: map[string]string{"kind": f.Kind, "kept": kept}}); err != nil {
			return err
		}
	}
	return nil
}

// listedHrefs are the hrefs the current repodata of dir lists.
func (r *Repo) listedHrefs(ctx context.Context, dir string) (map[string]bool, error) {
	root, err := r.tree.root.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	st, err := metadata.ReadRepodataState(ctx, root)
	if err != nil {
		return nil, err
	}
	if st.Repomd != nil && st.Packages == nil {
		return nil, errors.New("unreadable repodata")
	}
	out := map[string]bool{}
	for _, p := range st.Packages {
		out[p.Href] = true
	}
	return out, nil
}

// repairPublicKey writes the served key file with the keys it held that
// could be read, plus the signing key.
func (r *Repo) repairPublicKey(res *fsckResult) error {
	var buf bytes.Buffer
	for _, k := range res.served {
		if k.Fingerprint() == r.Key().Fingerprint() {
			continue
		}
		b, err := k.PublicArmored()
		if err != nil {
			return err
		}
		buf.Write(b)
	}
	b, err := r.Key().PublicArmored()
	if err != nil {
		return err
	}
	buf.Write(b)
	return fsutil.WriteFileAtomic(filepath.Join(r.cfg.Paths.Repo, PublicKeyFile), buf.Bytes(), r.tree.filePerm())
}

// keepStray moves a stray regular file of the tree to ROOT/rejected with a
// .reason beside it (it may be someone's only copy) and returns where it
// went; anything else (a symbolic link, a FIFO) is removed and "" returned.
func (r *Repo) keepStray(file string) (string, error) {
	fi, err := r.tree.root.Lstat(file)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", r.tree.remove(file)
	}
	base := safeFileName(path.Base(file))
	dst := filepath.Join(r.cfg.Paths.Rejected, base)
	for i := 1; ; i++ {
		_, e1 := os.Lstat(dst)
		_, e2 := os.Lstat(dst + ".reason")
		if errors.Is(e1, fs.ErrNotExist) && errors.Is(e2, fs.ErrNotExist) {
			break
		}
		dst = filepath.Join(r.cfg.Paths.Rejected, fmt.Sprintf("%s.%d", base, i))
	}
	reason := fmt.Sprintf("stray: found in the served tree by repoctl fsck; the store places no package there\nfile: %s\ntime: %s\n",
		escapeText(file), time.Now().UTC().Format(time.RFC3339))
	if err := fsutil.WriteFileAtomic(dst+".reason", []byte(reason), 0o644); err != nil {
		return "", err
	}
	d, err := r.tree.root.Open(path.Dir(file))
	if err != nil {
		return "", err
	}
	defer d.Close()
	// Linked by the descriptor of its directory, so no name in the tree
	// is resolved again; copied where the rejected dir is elsewhere.
	err = unix.Linkat(int(d.Fd()), path.Base(file), unix.AT_FDCWD, dst, 0)
	if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EMLINK) {
		err = r.copyOut(file, fi, dst)
	}
	if err != nil {
		return "", fmt.Errorf("keeping %q as %q: %w", file, dst, err)
	}
	if err := fsutil.SyncDir(r.cfg.Paths.Rejected); err != nil {
		return "", err
	}
	return dst, r.tree.remove(file)
}

func (r *Repo) copyOut(file string, fi fs.FileInfo, dst string) error {
	in, err := r.tree.root.Open(file)
	if err != nil {
		return err
	}
	defer in.Close()
	if ofi, err := in.Stat(); err != nil || !os.SameFile(fi, ofi) {
		return fmt.Errorf("%q changed while being moved", file)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(dst)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
