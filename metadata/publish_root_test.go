package metadata

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// These tests plant symbolic links that lead out of the repository
// directory and check that publishing never writes, renames, links or
// removes anything outside it, nor publishes outside content.

// treeEntry is what snapshotTree records of one file: enough to tell any
// change of the listing or of a byte.
type treeEntry struct {
	mode    fs.FileMode
	content string // file content, or symlink target
}

// snapshotTree lists dir recursively without following symbolic links.
func snapshotTree(t *testing.T, dir string) map[string]treeEntry {
	t.Helper()
	out := map[string]treeEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := treeEntry{mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.content, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			e.content = string(b)
		}
		out[rel] = e
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertTreeUnchanged(t *testing.T, dir string, before map[string]treeEntry) {
	t.Helper()
	after := snapshotTree(t, dir)
	for name, b := range before {
		a, ok := after[name]
		switch {
		case !ok:
			t.Errorf("outside %s was removed", name)
		case a.mode != b.mode:
			t.Errorf("outside %s changed mode %v -> %v", name, b.mode, a.mode)
		case a.content != b.content:
			t.Errorf("outside %s was rewritten: %q -> %q", name, b.content, a.content)
		}
	}
	for name := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("outside %s was created", name)
		}
	}
}

// assertNoOutsideContent fails if a file under repoDir (not following
// symbolic links) is a hard link to, or carries the marker of, a file of
// outside: publishing must not copy outside content into the repository.
func assertNoOutsideContent(t *testing.T, repoDir, outside, marker string) {
	t.Helper()
	var outs []os.FileInfo
	if err := filepath.WalkDir(outside, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := os.Lstat(p); err == nil {
				outs = append(outs, fi)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := filepath.WalkDir(repoDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return nil
		}
		for _, o := range outs {
			if os.SameFile(fi, o) {
				t.Errorf("%s is a hard link to a file outside the repository", p)
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(marker)) {
			t.Errorf("%s carries content from outside the repository", p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// publisher publishes dir through Publish or through PublishRoot.
type publisher struct {
	name string
	pub  func(ctx context.Context, dir string, es []Entry, opts ...PublishOption) (*PublishResult, error)
}

var publishers = []publisher{
	{"Publish", Publish},
	{"PublishRoot", func(ctx context.Context, dir string, es []Entry, opts ...PublishOption) (*PublishResult, error) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, err
		}
		defer root.Close()
		return PublishRoot(ctx, root, es, opts...)
	}},
}

func atClock(clock *time.Time) PublishOption {
	return func(c *publishConfig) error { c.now = func() time.Time { return *clock }; return nil }
}

const outsideMarker = "OUTSIDE-SECRET-7f3a"

// TestPublishRootRepodataSymlinkOutside plants DIR/repodata as a symbolic
// link (absolute or relative) to a directory outside DIR that holds a
// published repodata with superseded files and a marker file, and
// publishes: changed content with the directory exchange, changed content
// with the in-place fallback, and unchanged content with grace 0 (which
// prunes). Publishing may fail or replace the link, but the outside
// directory must be byte-for-byte unchanged and none of its files may be
// linked or copied into DIR.
func TestPublishRootRepodataSymlinkOutside(t *testing.T) {
	ctx := context.Background()
	modes := []struct {
		name    string
		inPlace bool
		entries []Entry
		opts    []PublishOption
	}{
		{"exchange", false, fakeEntries(12, "c"), nil},
		{"in-place", true, fakeEntries(12, "c"), nil},
		{"unchanged prune", false, fakeEntries(10, "b"), []PublishOption{WithGrace(0)}},
	}
	for _, p := range publishers {
		for _, m := range modes {
			for _, relative := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/relative=%v", p.name, m.name, relative), func(t *testing.T) {
					forceInPlace = m.inPlace
					defer func() { forceInPlace = false }()
					parent := t.TempDir()
					other := filepath.Join(parent, "other")
					clock := time.Unix(1800000000, 0)
					// The outside directory: a real repodata with a
					// generation in its grace period, and a marker.
					if _, err := Publish(ctx, other, fakeEntries(10, "a"), atClock(&clock)); err != nil {
						t.Fatal(err)
					}
					clock = clock.Add(time.Minute)
					if _, err := Publish(ctx, other, fakeEntries(10, "b"), atClock(&clock)); err != nil {
						t.Fatal(err)
					}
					outside := filepath.Join(other, "repodata")
					if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte(outsideMarker+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					before := snapshotTree(t, other)

					dir := filepath.Join(parent, "repo")
					if err := os.Mkdir(dir, 0o755); err != nil {
						t.Fatal(err)
					}
					target := outside
					if relative {
						target = filepath.Join("..", "other", "repodata")
					}
					if err := os.Symlink(target, filepath.Join(dir, "repodata")); err != nil {
						t.Fatal(err)
					}
					opts := append([]PublishOption{atClock(&clock)}, m.opts...)
					_, err := p.pub(ctx, dir, m.entries, opts...)

					assertTreeUnchanged(t, other, before)
					assertNoOutsideContent(t, dir, other, outsideMarker)
					if err == nil {
						// Replacing the link is acceptable; then the
						// repository must be complete and real.
						fi, lerr := os.Lstat(filepath.Join(dir, "repodata"))
						if lerr != nil || !fi.IsDir() {
							t.Fatalf("publish succeeded but repodata is %v (%v)", fi, lerr)
						}
						checkRepodata(t, dir, m.entries)
					} else {
						t.Logf("refused: %v", err)
					}
					if _, err := os.Lstat(filepath.Join(dir, genDirName)); err == nil {
						t.Error("generation directory left behind")
					}
				})
			}
		}
	}
}

// TestPublishRootSymlinkInsideRepository plants a symbolic link to a file
// (or directory) outside the repository at a name that the next publish
// removes, overwrites, reuses or creates, and checks that the outside
// file is unchanged afterwards and that the link's target is never
// published in the repository's name.
func TestPublishRootSymlinkInsideRepository(t *testing.T) {
	ctx := context.Background()
	type env struct {
		dir, outsideDir, secret string
		clock                   *time.Time
		pub                     publisher
	}
	link := func(t *testing.T, target, at string) {
		t.Helper()
		if err := os.Remove(at); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if err := os.Symlink(target, at); err != nil {
			t.Fatal(err)
		}
	}
	mustPublish := func(t *testing.T, e env, es []Entry, opts ...PublishOption) *PublishResult {
		t.Helper()
		res, err := e.pub.pub(ctx, e.dir, es, append([]PublishOption{atClock(e.clock)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	primaryName := func(t *testing.T, dir string) string {
		t.Helper()
		md, err := ParseRepomd(mustRead(t, filepath.Join(dir, "repodata", "repomd.xml")))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(dir, filepath.FromSlash(md.Records[0].Href))
	}
	cases := []struct {
		name string
		// inPlaceToo: also run with the in-place fallback.
		inPlaceToo bool
		run        func(t *testing.T, e env)
	}{
		{"superseded data file", true, func(t *testing.T, e env) {
			mustPublish(t, e, fakeEntries(10, "a"))
			old := primaryName(t, e.dir)
			*e.clock = e.clock.Add(time.Minute)
			if res := mustPublish(t, e, fakeEntries(10, "b")); len(res.Kept) != 3 {
				t.Fatalf("kept %v", res.Kept)
			}
			link(t, e.secret, old)
			*e.clock = e.clock.Add(time.Minute)
			mustPublish(t, e, fakeEntries(11, "c"), WithGrace(0))
			checkRepodata(t, e.dir, fakeEntries(11, "c"))
		}},
		{"superseded data file pruned in place", false, func(t *testing.T, e env) {
			mustPublish(t, e, fakeEntries(10, "a"))
			old := primaryName(t, e.dir)
			*e.clock = e.clock.Add(time.Minute)
			mustPublish(t, e, fakeEntries(10, "b"))
			link(t, e.secret, old)
			*e.clock = e.clock.Add(2 * DefaultGrace)
			mustPublish(t, e, fakeEntries(10, "b"))
			checkRepodata(t, e.dir, fakeEntries(10, "b"))
		}},
		{"current data file", true, func(t *testing.T, e env) {
			mustPublish(t, e, fakeEntries(10, "a"))
			cur := primaryName(t, e.dir)
			// Outside, a file with exactly the right content: it must
			// still not be served through the link.
			if err := os.WriteFile(e.secret, mustRead(t, cur), 0o644); err != nil {
				t.Fatal(err)
			}
			link(t, e.secret, cur)
			*e.clock = e.clock.Add(time.Minute)
			mustPublish(t, e, fakeEntries(10, "a"))
			checkRepodata(t, e.dir, fakeEntries(10, "a"))
			for _, r := range checkRepodata(t, e.dir, nil).Records {
				if fi, err := os.Lstat(filepath.Join(e.dir, r.Href)); err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("%s is published as %v (%v), not a regular file", r.Href, fi, err)
				}
			}
		}},
		{"repomd.xml.asc", true, func(t *testing.T, e env) {
			mustPublish(t, e, fakeEntries(10, "a"), WithSigner(fakeSign))
			asc := filepath.Join(e.dir, "repodata", "repomd.xml.asc")
			link(t, e.secret, asc)
			*e.clock = e.clock.Add(time.Minute)
			mustPublish(t, e, fakeEntries(10, "a"), WithSigner(fakeSign))
			fi, err := os.Lstat(asc)
			if err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("repomd.xml.asc is %v (%v), not a regular file", fi, err)
			}
			want, err := fakeSign(ctx, mustRead(t, filepath.Join(e.dir, "repodata", "repomd.xml")))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustRead(t, asc), want) {
				t.Fatal("repomd.xml.asc does not sign repomd.xml")
			}
			// And with changed content.
			link(t, e.secret, asc)
			mustPublish(t, e, fakeEntries(11, "a"), WithSigner(fakeSign))
			want, err = fakeSign(ctx, mustRead(t, filepath.Join(e.dir, "repodata", "repomd.xml")))
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Lstat(asc); err != nil || !fi.Mode().IsRegular() || !bytes.Equal(mustRead(t, asc), want) {
				t.Fatal("changed publish left a foreign repomd.xml.asc")
			}
		}},
		{"retired list temp file", true, func(t *testing.T, e env) {
			link(t, e.secret, filepath.Join(e.dir, retiredFileName+".tmp"))
			mustPublish(t, e, fakeEntries(10, "a"))
			link(t, e.secret, filepath.Join(e.dir, retiredFileName+".tmp"))
			*e.clock = e.clock.Add(time.Minute)
			mustPublish(t, e, fakeEntries(10, "b"))
			checkRepodata(t, e.dir, fakeEntries(10, "b"))
			if fi, err := os.Lstat(filepath.Join(e.dir, retiredFileName)); err != nil || !fi.Mode().IsRegular() {
				t.Fatalf("%s is %v (%v)", retiredFileName, fi, err)
			}
		}},
		{"retired list", false, func(t *testing.T, e env) {
			link(t, e.secret, filepath.Join(e.dir, retiredFileName))
			mustPublish(t, e, fakeEntries(10, "a"))
			checkRepodata(t, e.dir, fakeEntries(10, "a"))
		}},
		{"lock file", false, func(t *testing.T, e env) {
			link(t, e.secret, filepath.Join(e.dir, LockFileName))
			_, err := e.pub.pub(ctx, e.dir, fakeEntries(10, "a"), atClock(e.clock))
			t.Logf("publish: %v", err)
		}},
		{"generation directory", false, func(t *testing.T, e env) {
			mustPublish(t, e, fakeEntries(10, "a"))
			link(t, e.outsideDir, filepath.Join(e.dir, genDirName))
			*e.clock = e.clock.Add(time.Minute)
			mustPublish(t, e, fakeEntries(10, "b"))
			checkRepodata(t, e.dir, fakeEntries(10, "b"))
		}},
	}
	for _, p := range publishers {
		for _, c := range cases {
			for _, inPlace := range []bool{false, true} {
				if inPlace && !c.inPlaceToo {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s/inplace=%v", p.name, c.name, inPlace), func(t *testing.T) {
					forceInPlace = inPlace
					defer func() { forceInPlace = false }()
					parent := t.TempDir()
					e := env{dir: filepath.Join(parent, "repo"), outsideDir: filepath.Join(parent, "outside"), pub: p}
					e.secret = filepath.Join(e.outsideDir, "secret")
					clock := time.Unix(1800000000, 0)
					e.clock = &clock
					for _, d := range []string{e.dir, e.outsideDir} {
						if err := os.Mkdir(d, 0o755); err != nil {
							t.Fatal(err)
						}
					}
					if err := os.WriteFile(e.secret, []byte(outsideMarker+"\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(e.outsideDir, "other"), []byte("keep me\n"), 0o644); err != nil {
						t.Fatal(err)
					}
					// Every publish of a case leaves the outside tree as it
					// found it (a case may change it on purpose between
					// publishes).
					e.pub = publisher{p.name, func(ctx context.Context, dir string, es []Entry, opts ...PublishOption) (*PublishResult, error) {
						before := snapshotTree(t, e.outsideDir)
						res, err := p.pub(ctx, dir, es, opts...)
						assertTreeUnchanged(t, e.outsideDir, before)
						return res, err
					}}
					c.run(t, e)
					assertNoOutsideContent(t, e.dir, e.outsideDir, outsideMarker)
				})
			}
		}
	}
}

// TestCreateRepoCacheSymlinkOutside plants the block cache directory, or
// a file CreateRepo writes in it, as a symbolic link out of the
// repository, and runs CreateRepo (then --update) on createrepo_c's test
// packages: it may fail, but must not write outside.
func TestCreateRepoCacheSymlinkOutside(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		plant func(t *testing.T, dir, outsideDir, secret string)
	}{
		{"cache directory", func(t *testing.T, dir, outsideDir, secret string) {
			if err := os.Symlink(outsideDir, filepath.Join(dir, CacheDirName)); err != nil {
				t.Fatal(err)
			}
		}},
		{"state temp file", func(t *testing.T, dir, outsideDir, secret string) {
			if err := os.Mkdir(filepath.Join(dir, CacheDirName), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(secret, filepath.Join(dir, CacheDirName, stateFileName+".tmp")); err != nil {
				t.Fatal(err)
			}
		}},
		{"block packs", func(t *testing.T, dir, outsideDir, secret string) {
			if err := os.Mkdir(filepath.Join(dir, CacheDirName), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{packName, rawPackName} {
				if err := os.Symlink(secret, filepath.Join(dir, CacheDirName, n)); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dir, outsideDir := filepath.Join(parent, "repo"), filepath.Join(parent, "outside")
			secret := filepath.Join(outsideDir, "secret")
			for _, d := range []string{dir, outsideDir} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(secret, []byte(outsideMarker+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			copyRPMs(t, sharedCorpus(t), dir)
			before := snapshotTree(t, outsideDir)
			c.plant(t, dir, outsideDir, secret)
			for i := range 2 {
				res, err := CreateRepo(ctx, dir, WithUpdate(i > 0))
				t.Logf("createrepo %d: %v", i, err)
				if err != nil && errors.Is(err, ErrSomeSkipped) {
					err = nil
				}
				assertTreeUnchanged(t, outsideDir, before)
				if err == nil && res.Publish == nil {
					t.Fatal("no publish result")
				}
			}
			assertNoOutsideContent(t, dir, outsideDir, outsideMarker)
		})
	}
}

var timestampRE = regexp.MustCompile(`<timestamp>[0-9]+</timestamp>`)

// TestPublishRootMatchesPublish runs the same sequence of publishes
// (first, changed with a foreign repomd.xml.key and a signer, unchanged,
// changed after the grace period) through Publish in one directory and
// through PublishRoot, on one open root, in another, and requires the
// same results, the same repomd.xml (timestamps, which are file mtimes,
// aside: each must be its file's mtime) and the same files.
func TestPublishRootMatchesPublish(t *testing.T) {
	ctx := context.Background()
	for _, inPlace := range []bool{false, true} {
		t.Run(fmt.Sprint("inplace=", inPlace), func(t *testing.T) {
			forceInPlace = inPlace
			defer func() { forceInPlace = false }()
			a, b := t.TempDir(), t.TempDir()
			root, err := os.OpenRoot(b)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			clock := time.Unix(1800000000, 0)
			steps := []struct {
				es    []Entry
				after time.Duration
				opts  []PublishOption
				setup func(dir string)
			}{
				{es: fakeEntries(20, "a"), opts: []PublishOption{WithCompression("gz")}},
				{es: fakeEntries(25, "b"), after: time.Minute, opts: []PublishOption{WithSigner(fakeSign)},
					setup: func(dir string) {
						if err := os.WriteFile(filepath.Join(dir, "repodata", "repomd.xml.key"), []byte("key\n"), 0o644); err != nil {
							t.Fatal(err)
						}
					}},
				{es: fakeEntries(25, "b"), after: time.Minute, opts: []PublishOption{WithSigner(fakeSign)}},
				{es: fakeEntries(30, "c"), after: 2 * DefaultGrace},
				{es: fakeEntries(30, "c"), after: time.Minute, opts: []PublishOption{WithRevision("r9"), WithGrace(0)}},
			}
			for i, s := range steps {
				clock = clock.Add(s.after)
				if s.setup != nil {
					s.setup(a)
					s.setup(b)
				}
				opts := append([]PublishOption{atClock(&clock)}, s.opts...)
				ra, err := Publish(ctx, a, s.es, opts...)
				if err != nil {
					t.Fatalf("step %d: Publish: %v", i, err)
				}
				rb, err := PublishRoot(ctx, root, s.es, opts...)
				if err != nil {
					t.Fatalf("step %d: PublishRoot: %v", i, err)
				}
				if ja, jb := resultJSON(ra), resultJSON(rb); ja != jb {
					t.Fatalf("step %d: results differ:\nPublish:     %s\nPublishRoot: %s", i, ja, jb)
				}
				ma := mustRead(t, filepath.Join(a, "repodata", "repomd.xml"))
				mb := mustRead(t, filepath.Join(b, "repodata", "repomd.xml"))
				if na, nb := timestampRE.ReplaceAll(ma, nil), timestampRE.ReplaceAll(mb, nil); !bytes.Equal(na, nb) {
					t.Fatalf("step %d: repomd.xml differs:\n%s\n%s", i, ma, mb)
				}
				for _, dir := range []string{a, b} {
					md := checkRepodata(t, dir, s.es)
					if asc, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml.asc")); err == nil {
						want, err := fakeSign(ctx, mustRead(t, filepath.Join(dir, "repodata", "repomd.xml")))
						if err != nil {
							t.Fatal(err)
						}
						if !bytes.Equal(asc, want) {
							t.Fatalf("step %d: repomd.xml.asc does not sign repomd.xml", i)
						}
					}
					for _, r := range md.Records {
						if fi := mustStat(t, filepath.Join(dir, r.Href)); fi.ModTime().Unix() != r.Timestamp {
							t.Fatalf("step %d: %s timestamp %d, mtime %d", i, r.Href, r.Timestamp, fi.ModTime().Unix())
						}
					}
				}
				if ta, tb := repoFiles(t, a), repoFiles(t, b); ta != tb {
					t.Fatalf("step %d: files differ:\nPublish:     %s\nPublishRoot: %s", i, ta, tb)
				}
			}
		})
	}
}

// resultJSON is a PublishResult without the timestamps (file mtimes).
func resultJSON(r *PublishResult) string {
	c := *r
	c.Records = append([]RepomdRecord(nil), r.Records...)
	for i := range c.Records {
		c.Records[i].Timestamp = 0
	}
	b, err := json.Marshal(&c)
	if err != nil {
		panic(err) // a Repomd always marshals
	}
	return string(b)
}

// repoFiles describes every file of a repository directory: name, mode
// and content (repomd.xml without timestamps; repomd.xml.asc, which signs
// those, only by name: it is checked against repomd.xml separately).
func repoFiles(t *testing.T, dir string) string {
	t.Helper()
	var sb strings.Builder
	snap := snapshotTree(t, dir)
	names := make([]string, 0, len(snap))
	for n := range snap {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		e := snap[n]
		content := e.content
		switch filepath.Base(n) {
		case "repomd.xml":
			content = string(timestampRE.ReplaceAll([]byte(content), nil))
		case "repomd.xml.asc":
			content = ""
		}
		fmt.Fprintf(&sb, "%s %v %d %x\n", n, e.mode, len(content), content)
	}
	return sb.String()
}
