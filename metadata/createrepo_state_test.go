package metadata

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// fullRunOf publishes a copy of dir's packages from scratch and returns
// its documents: what every --update must equal.
func fullRunOf(t *testing.T, dir string) repodataDocs {
	t.Helper()
	full := t.TempDir()
	copyRPMs(t, dir, full)
	if _, err := CreateRepo(context.Background(), full, WithCacheDir("")); err != nil {
		t.Fatal(err)
	}
	return publishedDocs(t, full)
}

func TestCreateRepoUpdateFastPath(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 400; i++ {
		writeSmall(t, dir, i)
	}
	res, err := CreateRepo(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	update := func(what, from string, read int) *CreateResult {
		t.Helper()
		res, err := CreateRepo(ctx, dir, WithUpdate(true))
		if err != nil {
			t.Fatal(err)
		}
		if res.ReusedFrom != from || res.Read != read {
			t.Fatalf("%s: reused from %q, read %d; want %q, %d", what, res.ReusedFrom, res.Read, from, read)
		}
		assertSameDocs(t, what, fullRunOf(t, dir), publishedDocs(t, dir))
		return res
	}

	writeSmall(t, dir, 5000)
	res = update("one added", "state", 1)
	if c := res.Publish.BlocksCompressed; c < 3 || c > 6 {
		t.Fatalf("one added: %d blocks compressed", c)
	}

	// Changed in place: new content and mtime, same name.
	s := testrpm.Small(17)
	s.Release = "2.el9"
	s.BuildTime = time.Unix(1700001000, 0)
	b, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, testrpm.Small(17).FileName())
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	update("one changed", "state", 1)

	if err := os.Remove(filepath.Join(dir, testrpm.Small(33).FileName())); err != nil {
		t.Fatal(err)
	}
	update("one removed", "state", 0)

	// Nothing changed: nothing rewritten.
	if res = update("nothing changed", "state", 0); res.Publish.Changed {
		t.Fatal("unchanged repository rewritten")
	}

	// Another tool rewrote repodata/: the state no longer describes it.
	if out, err := exec.Command("createrepo_c", "--no-database", dir).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, out)
	}
	writeSmall(t, dir, 5001)
	update("after createrepo_c", "repodata", 1)

	// A damaged state is not trusted.
	st := filepath.Join(dir, CacheDirName, stateFileName)
	sb := mustRead(t, st)
	sb[len(sb)/2] ^= 0x40
	if err := os.WriteFile(st, sb, 0o644); err != nil {
		t.Fatal(err)
	}
	writeSmall(t, dir, 5002)
	update("damaged state", "repodata", 1)

	// Torn uncompressed blocks are not trusted either.
	raw := filepath.Join(dir, CacheDirName, rawPackName)
	fi := mustStat(t, raw)
	if err := os.Truncate(raw, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	writeSmall(t, dir, 5003)
	update("torn raw pack", "repodata", 1)

	// Different render options: the state is not used.
	res, err = CreateRepo(ctx, dir, WithUpdate(true), WithRenderOptions(RenderOptions{BaseURL: "http://mirror.example/repo"}))
	if err != nil || res.ReusedFrom != "repodata" || res.Read != res.Packages {
		t.Fatalf("new base URL: %v, reused from %q, read %d of %d", err, res.ReusedFrom, res.Read, res.Packages)
	}
}

func TestStateRoundTripAndDamage(t *testing.T) {
	s := &repoState{checksums: [3]string{"a", "b", "c"}, codecID: "zstd", base: "", changelog: -2,
		entries: []stateEntry{{href: "x.rpm", pkgid: "p", size: 10, mtime: 20, lens: [3]uint64{1, 2, 3}},
			{href: "y.rpm", size: 1, lens: [3]uint64{4, 5, 6}}},
		blocks: []stateBlock{{n: 2, keys: [3]string{"k1", "k2", "k3"}}}}
	b := s.marshal()
	got, err := unmarshalState(b)
	if err != nil || got.entries[1].href != "y.rpm" || got.blocks[0].keys[2] != "k3" || got.changelog != -2 {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for i := 0; i < len(b); i++ {
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		if _, err := unmarshalState(c); err == nil {
			t.Fatalf("flipped byte %d accepted", i)
		}
		if _, err := unmarshalState(b[:i]); err == nil {
			t.Fatalf("truncated at %d accepted", i)
		}
	}
}

func TestCreateRepoDryRunWritesNothing(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		writeSmall(t, dir, i)
	}
	dry := WithPublishOptions(WithDryRun(true))
	res, err := CreateRepo(ctx, dir, dry)
	if err != nil || !res.Publish.DryRun || !res.Publish.Changed || res.Packages != 50 {
		t.Fatalf("dry run on a new repository: %v %+v", err, res)
	}
	for _, p := range []string{"repodata", CacheDirName} {
		if pathExists(filepath.Join(dir, p)) {
			t.Fatalf("dry run created %s", p)
		}
	}
	if _, err := CreateRepo(ctx, dir); err != nil {
		t.Fatal(err)
	}
	snapshot := func() map[string]string {
		m := map[string]string{}
		for _, d := range []string{"repodata", CacheDirName} {
			ents, err := os.ReadDir(filepath.Join(dir, d))
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range ents {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				m[d+"/"+e.Name()] = fmt.Sprint(fi.Size(), fi.ModTime().UnixNano())
			}
		}
		return m
	}
	before := snapshot()
	writeSmall(t, dir, 77)
	res, err = CreateRepo(ctx, dir, WithUpdate(true), dry)
	if err != nil || !res.Publish.Changed || res.Read != 1 {
		t.Fatalf("dry run with a new package: %v %+v", err, res)
	}
	if after := snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("dry run wrote:\nbefore %v\nafter  %v", before, after)
	}
	// The dry run's checksums are the real run's.
	real, err := CreateRepo(ctx, dir, WithUpdate(true))
	if err != nil {
		t.Fatal(err)
	}
	for k := range real.Publish.Records {
		if real.Publish.Records[k].Checksum != res.Publish.Records[k].Checksum {
			t.Fatalf("dry run predicted %s, real run wrote %s", res.Publish.Records[k].Checksum, real.Publish.Records[k].Checksum)
		}
	}
	if res, err = CreateRepo(ctx, dir, WithUpdate(true), dry); err != nil || res.Publish.Changed {
		t.Fatalf("dry run on an up-to-date repository: %v %+v", err, res.Publish)
	}
}
