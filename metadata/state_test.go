package metadata

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
)

// repodataFiles reads every file of dir/repodata by name.
func repodataFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, RepodataDir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, RepodataDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

// TestPublishStateSameBytes publishes one evolving directory of a few
// thousand packages twice per step, with a PublishState and without one
// (nor any cache), through adds, removes, content changes, re-adds, moves
// into subdirectories, a codec switch and dry runs, and requires
// byte-identical repodata every time; and that the state really reused
// blocks.
func TestPublishStateSameBytes(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(13, 1))
	const n = 3000
	cur := map[int]Entry{}
	salt := map[int]int{}
	entry := func(i int) Entry {
		e := fakeEntry(i, fmt.Sprint(salt[i]))
		if i%7 == 0 {
			e.Href = fmt.Sprintf("sub%d/%s", i%3, e.Href) // sorts by file name, then directory
		}
		return e
	}
	for i := range n {
		cur[i] = entry(i)
	}
	withState, plain := t.TempDir(), t.TempDir()
	state := NewPublishState()
	cache, err := NewDirCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	next := n
	list := func(fresh bool) []Entry {
		keys := make([]int, 0, len(cur))
		for i := range cur {
			keys = append(keys, i)
		}
		slices.Sort(keys)
		rng.Shuffle(len(keys), func(a, b int) { keys[a], keys[b] = keys[b], keys[a] })
		out := make([]Entry, 0, len(keys))
		for _, i := range keys {
			e := cur[i]
			if fresh {
				// Same bytes in new slices: compared by content.
				e.Primary, e.Filelists, e.Other = bytes.Clone(e.Primary), bytes.Clone(e.Filelists), bytes.Clone(e.Other)
			}
			out = append(out, e)
		}
		return out
	}
	reusedAny := false
	for step := range 40 {
		switch op := step % 5; {
		case step == 0:
		case op == 1: // add a few
			for range 1 + rng.IntN(3) {
				cur[next] = entry(next)
				next++
			}
		case op == 2: // remove a few
			for i := range cur {
				delete(cur, i)
				if rng.IntN(2) == 0 {
					break
				}
			}
		case op == 3: // change content of one, re-add a removed one
			for i := range cur {
				salt[i]++
				cur[i] = entry(i)
				break
			}
			for i := range n {
				if _, ok := cur[i]; !ok {
					cur[i] = entry(i)
					break
				}
			}
		case op == 4: // a bigger batch
			for range 50 {
				i := rng.IntN(next + 10)
				if _, ok := cur[i]; ok {
					delete(cur, i)
				} else {
					cur[i] = entry(i)
					next = max(next, i+1)
				}
			}
		}
		codec := CompressZstd
		if step >= 30 {
			codec = CompressGzip
		}
		rev := fmt.Sprint(1000 + step)
		es := list(step%4 == 3)
		// A dry run through the state must not change what it holds.
		if _, err := Publish(ctx, withState, es, WithState(state), WithBlockCache(cache), WithCompression(codec), WithRevision(rev+"9"), WithDryRun(true)); err != nil {
			t.Fatal(err)
		}
		a, err := Publish(ctx, withState, es, WithState(state), WithBlockCache(cache), WithCompression(codec), WithRevision(rev), WithGrace(0))
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if _, err := Publish(ctx, plain, list(false), WithCompression(codec), WithRevision(rev), WithGrace(0)); err != nil {
			t.Fatal(err)
		}
		got, want := repodataFiles(t, withState), repodataFiles(t, plain)
		if len(got) != len(want) {
			t.Fatalf("step %d: %d files with the state, %d without", step, len(got), len(want))
		}
		stamp := regexp.MustCompile(`<timestamp>[0-9]+</timestamp>`)
		for name, b := range want {
			if name == "repomd.xml" {
				// File timestamps are the only thing that may differ.
				b, got[name] = stamp.ReplaceAll(b, nil), stamp.ReplaceAll(got[name], nil)
			}
			if !bytes.Equal(got[name], b) {
				t.Fatalf("step %d: %s differs with the state", step, name)
			}
		}
		checkRepodata(t, withState, es)
		if step > 0 && step != 30 && a.BlocksCompressed*4 < a.BlocksReused {
			reusedAny = true
		}
	}
	if !reusedAny {
		t.Fatal("the state never made a publish reuse most blocks")
	}
}

// TestPublishStateRejects: what sortEntries rejects is rejected with a
// state too, for packages it knows and for new ones.
func TestPublishStateRejects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := NewPublishState()
	es := fakeEntries(300, "")
	if _, err := Publish(ctx, dir, es, WithState(state)); err != nil {
		t.Fatal(err)
	}
	dup := append(slices.Clone(es), es[5])
	bad := slices.Clone(es)
	bad[7].Primary = []byte("<package>broken")
	newBad := append(slices.Clone(es), fakeEntry(999, ""))
	newBad[len(newBad)-1].Other = []byte("x")
	newDup := append(slices.Clone(es), fakeEntry(999, ""), fakeEntry(999, ""))
	noHref := slices.Clone(es)
	noHref[3].Href = ""
	for name, in := range map[string][]Entry{"known twice": dup, "changed, broken": bad, "new, broken": newBad, "new twice": newDup, "no href": noHref} {
		if _, err := Publish(ctx, dir, in, WithState(state)); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: %v, want ErrBadEntry", name, err)
		}
	}
	// The state still serves the valid set.
	if _, err := Publish(ctx, dir, es, WithState(state)); err != nil {
		t.Fatal(err)
	}
	checkRepodata(t, dir, es)
}
