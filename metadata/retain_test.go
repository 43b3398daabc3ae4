package metadata

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// superseded lists the files of dir/repodata that its repomd.xml does not
// name, and checks that every file named by each repomd.xml in prev is
// still there.
func superseded(t *testing.T, dir string, prev [][]byte) []string {
	t.Helper()
	md, err := ParseRepomd(mustRead(t, filepath.Join(dir, RepodataDir, "repomd.xml")))
	if err != nil {
		t.Fatal(err)
	}
	cur := map[string]bool{"repomd.xml": true}
	for _, r := range md.Records {
		cur[strings.TrimPrefix(r.Href, RepodataDir+"/")] = true
	}
	for _, raw := range prev {
		old, err := ParseRepomd(raw)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range old.Records {
			if _, err := os.Stat(filepath.Join(dir, r.Href)); err != nil {
				t.Errorf("%s of a retained generation: %v", r.Href, err)
			}
		}
	}
	var out []string
	ents, err := os.ReadDir(filepath.Join(dir, RepodataDir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !cur[e.Name()] {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestRetainOldGenerations: a burst of publishes keeps the newest N
// superseded generations (all their files, so clients holding those
// repomd.xml still work) and no more; 0 keeps none; the grace period
// still ends them; an unchanged publish prunes by the same rule.
func TestRetainOldGenerations(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{0, 1, 2, 3} {
		dir := t.TempDir()
		var repomds [][]byte
		now := time.Unix(1700000000, 0)
		clock := func() time.Time { return now }
		for g := range 7 {
			es := fakeEntries(50+g, "")
			opts := []PublishOption{WithRetainOld(n), WithGrace(time.Hour), withClock(clock)}
			if _, err := Publish(ctx, dir, es, opts...); err != nil {
				t.Fatal(err)
			}
			repomds = append(repomds, mustRead(t, filepath.Join(dir, RepodataDir, "repomd.xml")))
			keep := min(n, g)
			old := superseded(t, dir, repomds[len(repomds)-1-keep:len(repomds)-1])
			if len(old) != 3*keep {
				t.Fatalf("retain %d, after %d publishes: %d superseded files %v, want %d", n, g+1, len(old), old, 3*keep)
			}
			now = now.Add(time.Second)
		}
		// The grace period ends them all, on an unchanged publish too.
		now = now.Add(2 * time.Hour)
		if _, err := Publish(ctx, dir, fakeEntries(56, ""), WithRetainOld(n), withClock(clock)); err != nil {
			t.Fatal(err)
		}
		if old := superseded(t, dir, nil); len(old) != 0 {
			t.Fatalf("retain %d: after the grace period %v remain", n, old)
		}
	}
	if _, err := Publish(ctx, t.TempDir(), nil, WithRetainOld(-1)); err == nil {
		t.Fatal("negative retain-old-md accepted")
	}
}

// TestRetiredLegacyFormat: a .repodata.retired written before generations
// were counted (name → unix time) is read: each time is one generation,
// and the count bound applies to them.
func TestRetiredLegacyFormat(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Unix(1700000000, 0)
	clock := func() time.Time { return now }
	if _, err := Publish(ctx, dir, fakeEntries(10, ""), withClock(clock)); err != nil {
		t.Fatal(err)
	}
	// Three old generations, as an older repoctl left them.
	legacy := "{"
	for g := range 3 {
		for _, typ := range []string{"primary", "filelists", "other"} {
			name := strings.Repeat(string(rune('a'+g)), 64) + "-" + typ + ".xml.zst"
			if err := os.WriteFile(filepath.Join(dir, RepodataDir, name), []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if legacy != "{" {
				legacy += ","
			}
			legacy += `"` + name + `":` + itoa(now.Unix()-int64(100*(3-g)))
		}
	}
	legacy += "}\n"
	if err := os.WriteFile(filepath.Join(dir, retiredFileName), []byte(legacy), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, dir, fakeEntries(11, ""), withClock(clock)); err != nil {
		t.Fatal(err)
	}
	old := superseded(t, dir, nil)
	// The generation just superseded and the newest legacy one ("c…").
	if len(old) != 6 {
		t.Fatalf("%d superseded files %v, want 6", len(old), old)
	}
	for _, n := range old {
		if strings.HasPrefix(n, strings.Repeat("a", 64)) || strings.HasPrefix(n, strings.Repeat("b", 64)) {
			t.Fatalf("older legacy generation %s kept", n)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func withClock(now func() time.Time) PublishOption {
	return func(c *publishConfig) error { c.now = now; return nil }
}

// TestCreateRepoSkipStat: with --skip-stat a listed file is trusted
// without a stat (a same-name replacement goes unnoticed, as with
// createrepo_c), new files are read, removed ones dropped; without it the
// replacement is read.
func TestCreateRepoSkipStat(t *testing.T) {
	ctx := context.Background()
	for _, from := range []string{"state", "repodata"} {
		dir := t.TempDir()
		for i := range 40 {
			writeSmall(t, dir, i)
		}
		opts := []CreateOption{}
		if from == "repodata" {
			opts = append(opts, WithCacheDir(""))
		}
		if _, err := CreateRepo(ctx, dir, opts...); err != nil {
			t.Fatal(err)
		}
		before := publishedDocs(t, dir)
		s := testrpm.Small(7)
		s.Summary = "replaced in place"
		b, err := testrpm.Build(s)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, testrpm.Small(7).FileName())
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		later := time.Unix(1800000000, 0)
		if err := os.Chtimes(p, later, later); err != nil {
			t.Fatal(err)
		}
		res, err := CreateRepo(ctx, dir, append(opts, WithUpdate(true), WithSkipStat(true))...)
		if err != nil {
			t.Fatal(err)
		}
		if res.Read != 0 || res.Reused != 40 || res.ReusedFrom != from {
			t.Fatalf("%s: skip-stat read %d, reused %d from %q", from, res.Read, res.Reused, from)
		}
		assertSameDocs(t, from+": skip-stat after a same-name replacement", before, publishedDocs(t, dir))
		writeSmall(t, dir, 100)
		if err := os.Remove(filepath.Join(dir, testrpm.Small(3).FileName())); err != nil {
			t.Fatal(err)
		}
		res, err = CreateRepo(ctx, dir, append(opts, WithUpdate(true), WithSkipStat(true))...)
		if err != nil {
			t.Fatal(err)
		}
		if res.Read != 1 || res.Packages != 40 {
			t.Fatalf("%s: skip-stat with one new and one removed: read %d, %d packages", from, res.Read, res.Packages)
		}
		res, err = CreateRepo(ctx, dir, append(opts, WithUpdate(true))...)
		if err != nil {
			t.Fatal(err)
		}
		if res.Read != 1 {
			t.Fatalf("%s: update without skip-stat read %d, want the replaced file", from, res.Read)
		}
		// The stale entry is gone: a full run agrees now.
		assertSameDocs(t, from+": update after skip-stat", fullRunOf(t, dir), publishedDocs(t, dir))
	}
}
