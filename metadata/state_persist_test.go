package metadata

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// TestPublishStateSaveLoad: a state saved and loaded in another
// "process" makes the next publish reuse the last build's blocks, with
// the same bytes as a publish without any state; and every way a saved
// state can be wrong (truncated, edited, stale, its blocks gone from the
// cache, fragment boundaries moved) is refused with ErrStaleState.
func TestPublishStateSaveLoad(t *testing.T) {
	ctx := context.Background()
	for _, codec := range []string{CompressZstd, CompressGzip} {
		t.Run(codec, func(t *testing.T) {
			const n = 2000
			es := make([]Entry, n)
			for i := range es {
				es[i] = fakeEntry(i, "a")
			}
			dir, plain := t.TempDir(), t.TempDir()
			cache, err := NewDirCache(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			state := NewPublishState(t.TempDir())
			if _, err := Publish(ctx, dir, es, WithState(state), WithBlockCache(cache), WithCompression(codec), WithRevision("1")); err != nil {
				t.Fatal(err)
			}
			var saved bytes.Buffer
			if err := state.Save(&saved); err != nil {
				t.Fatal(err)
			}
			// Moved fragment boundaries, saved as they are.
			state.pkgs[state.order[0]].lens[0]++
			state.pkgs[state.order[1]].lens[0]--
			var moved bytes.Buffer
			if err := state.Save(&moved); err != nil {
				t.Fatal(err)
			}
			state.Close()
			repomd, err := os.ReadFile(filepath.Join(dir, RepodataDir, "repomd.xml"))
			if err != nil {
				t.Fatal(err)
			}
			byHref := map[string]*Entry{}
			for i := range es {
				byHref[es[i].Href] = &es[i]
			}
			known := func(h string) (string, string, bool) {
				e := byHref[h]
				if e == nil {
					return "", "", false
				}
				return e.Href, e.PkgID, true
			}
			empty, err := NewDirCache(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			raw := saved.Bytes()
			edited := bytes.Clone(raw)
			edited[len(edited)/2] ^= 1
			for name, c := range map[string]struct {
				file  []byte
				cache BlockCache
			}{
				"truncated": {raw[:len(raw)-5], cache},
				"edited":    {edited, cache},
				"moved":     {moved.Bytes(), cache},
				"no blocks": {raw, empty},
				"garbage":   {[]byte("not a state"), cache},
			} {
				if _, err := LoadPublishState(ctx, t.TempDir(), bytes.NewReader(c.file), repomd, c.cache, nil); !errors.Is(err, ErrStaleState) {
					t.Errorf("%s: %v, want ErrStaleState", name, err)
				}
			}

			loaded, err := LoadPublishState(ctx, t.TempDir(), bytes.NewReader(raw), repomd, cache, known)
			if err != nil {
				t.Fatalf("loading the saved state: %v", err)
			}
			defer loaded.Close()
			// The next publish gives the known packages light, as the
			// daemon does, plus one new package.
			next := append(es[:n:n], fakeEntry(n, "a"))
			light := make([]Entry, len(next))
			for i, e := range next {
				if loaded.Knows(&e) {
					e.Primary, e.Filelists, e.Other = nil, nil, nil
				}
				light[i] = e
			}
			res, err := Publish(ctx, dir, light, WithState(loaded), WithBlockCache(cache), WithCompression(codec), WithRevision("2"), WithGrace(0))
			if err != nil {
				t.Fatalf("publishing through the loaded state: %v", err)
			}
			if res.BlocksCompressed*10 > res.BlocksReused {
				t.Errorf("the loaded state reused %d blocks and compressed %d", res.BlocksReused, res.BlocksCompressed)
			}
			if _, err := Publish(ctx, plain, next, WithCompression(codec), WithRevision("2"), WithGrace(0)); err != nil {
				t.Fatal(err)
			}
			got, want := repodataFiles(t, dir), repodataFiles(t, plain)
			stamp := regexp.MustCompile(`<timestamp>[0-9]+</timestamp>`)
			for name, b := range want {
				if name == "repomd.xml" {
					b, got[name] = stamp.ReplaceAll(b, nil), stamp.ReplaceAll(got[name], nil)
				}
				if !bytes.Equal(got[name], b) {
					t.Fatalf("%s differs after a publish through the loaded state", name)
				}
			}
			// The old save no longer describes the published repodata.
			repomd2, err := os.ReadFile(filepath.Join(dir, RepodataDir, "repomd.xml"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := LoadPublishState(ctx, t.TempDir(), bytes.NewReader(raw), repomd2, cache, nil); !errors.Is(err, ErrStaleState) {
				t.Errorf("a stale state: %v, want ErrStaleState", err)
			}
			var again bytes.Buffer
			if err := loaded.Save(&again); err != nil {
				t.Fatal(err)
			}
			if s, err := LoadPublishState(ctx, t.TempDir(), &again, repomd2, cache, nil); err != nil {
				t.Errorf("the state saved after the next publish: %v", err)
			} else {
				s.Close()
			}
			if err := NewPublishState(t.TempDir()).Save(&bytes.Buffer{}); !errors.Is(err, ErrStaleState) {
				t.Errorf("saving an empty state: %v", err)
			}
		})
	}
}
