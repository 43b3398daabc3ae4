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
	"strings"
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
	state := NewPublishState(t.TempDir())
	defer state.Close()
	defer func(v int64) { stateCompactSlack = v }(stateCompactSlack)
	stateCompactSlack = 0 // compact as soon as half is dead
	cache, err := NewDirCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	next := n
	// light: packages the state knows are given without fragments (as
	// the daemon does); fresh: with the same bytes in new slices.
	list := func(fresh, light bool) []Entry {
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
			if light && state.Knows(&e) {
				e.Primary, e.Filelists, e.Other = nil, nil, nil
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
		es := list(step%4 == 3, step%3 != 0)
		// A dry run through the state must not change what it holds.
		if _, err := Publish(ctx, withState, es, WithState(state), WithBlockCache(cache), WithCompression(codec), WithRevision(rev+"9"), WithDryRun(true)); err != nil {
			t.Fatal(err)
		}
		a, err := Publish(ctx, withState, es, WithState(state), WithBlockCache(cache), WithCompression(codec), WithRevision(rev), WithGrace(0))
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if _, err := Publish(ctx, plain, list(false, false), WithCompression(codec), WithRevision(rev), WithGrace(0)); err != nil {
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
		checkRepodata(t, withState, list(false, false))
		if step > 0 && step != 30 && a.BlocksCompressed*4 < a.BlocksReused {
			reusedAny = true
		}
	}
	if !reusedAny {
		t.Fatal("the state never made a publish reuse most blocks")
	}
	if state.compactions == 0 {
		t.Fatal("the scratch file was never compacted")
	}
	if state.midHits == 0 {
		t.Fatal("no open-checksum ever started from a saved midstate")
	}
	if state.cmidHits == 0 {
		t.Fatal("no compressed file's checksum ever started from a saved midstate")
	}
}

// TestPublishStateRejects: what sortEntries rejects is rejected with a
// state too, for packages it knows and for new ones.
func TestPublishStateRejects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	state := NewPublishState(t.TempDir())
	defer state.Close()
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

// TestPublishStateLightAndLoader: light entries a state does not know
// (after a codec switch, with a fresh state, stateless) are filled by the
// loader; without one they are refused; a closed state is not used.
func TestPublishStateLightAndLoader(t *testing.T) {
	ctx := context.Background()
	es := fakeEntries(500, "")
	full := map[string]Entry{}
	for _, e := range es {
		full[e.Href] = e
	}
	light := make([]Entry, len(es))
	for i, e := range es {
		e.Primary, e.Filelists, e.Other = nil, nil, nil
		light[i] = e
	}
	loads := 0
	loader := WithFragmentLoader(func(_ context.Context, ls []*Entry) error {
		for _, e := range ls {
			f := full[e.Href]
			e.Primary, e.Filelists, e.Other = f.Primary, f.Filelists, f.Other
			loads++
		}
		return nil
	})
	want, dir := t.TempDir(), t.TempDir()
	if _, err := Publish(ctx, want, es, WithRevision("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, dir, light, WithRevision("1")); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("light entries without a loader: %v", err)
	}
	state := NewPublishState(t.TempDir())
	for _, opts := range [][]PublishOption{{loader}, {loader, WithState(state)}, {WithState(state)}} {
		loads = 0
		if _, err := Publish(ctx, dir, light, append(opts, WithRevision("1"))...); err != nil {
			t.Fatal(err)
		}
		checkRepodata(t, dir, es)
		if !bytes.Equal(mustRead(t, filepath.Join(dir, "repodata", "repomd.xml")), mustRead(t, filepath.Join(want, "repodata", "repomd.xml"))) {
			// Timestamps aside, checkRepodata proved the content.
			t.Log("repomd.xml differs in timestamps only")
		}
	}
	if loads != 0 {
		t.Fatalf("the state knew every package, yet %d were loaded", loads)
	}
	// The rest of the raw blocks are read back: drop one package so a
	// block is rebuilt from its light neighbours.
	if _, err := Publish(ctx, dir, light[1:], WithState(state)); err != nil {
		t.Fatal(err)
	}
	checkRepodata(t, dir, es[1:])
	if err := state.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(ctx, dir, light, WithState(state)); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("light entries through a closed state without a loader: %v", err)
	}
}

// TestPublishStateMidstates: after a publish, a single add (the
// speculated count), a same-count replacement (the build's own states)
// and a remove (no saved states for that count) all give the bytes a
// stateless publish gives, and the first two start from midstates, for
// open-checksum and for the compressed files' checksums alike.
func TestPublishStateMidstates(t *testing.T) {
	for _, mm := range []bool{true, false} {
		t.Run(fmt.Sprintf("mmap=%v", mm), func(t *testing.T) {
			defer func(v bool) { stateMmap = v }(stateMmap)
			stateMmap = mm
			testPublishStateMidstates(t, mm)
		})
	}
}

func testPublishStateMidstates(t *testing.T, mm bool) {
	ctx := context.Background()
	state := NewPublishState(t.TempDir())
	defer state.Close()
	es := fakeEntries(4000, "")
	dir, plain := t.TempDir(), t.TempDir()
	step := func(what string, in []Entry, wantHits int) {
		t.Helper()
		if state.spec != nil && !strings.Contains(what, "cut short") {
			<-state.spec.done // deterministic: the speculation is complete
		}
		before, cbefore := state.midHits, state.cmidHits
		if _, err := Publish(ctx, dir, in, WithState(state), WithRevision("7")); err != nil {
			t.Fatal(err)
		}
		if _, err := Publish(ctx, plain, in, WithRevision("7")); err != nil {
			t.Fatal(err)
		}
		a, b := repodataFiles(t, dir)["repomd.xml"], repodataFiles(t, plain)["repomd.xml"]
		stamp := regexp.MustCompile(`<timestamp>[0-9]+</timestamp>`)
		if !bytes.Equal(stamp.ReplaceAll(a, nil), stamp.ReplaceAll(b, nil)) {
			t.Fatalf("%s: repomd.xml differs from a stateless publish:\n%s\n%s", what, a, b)
		}
		if got := state.midHits - before; got != wantHits {
			t.Fatalf("%s: %d documents started from a midstate, want %d", what, got, wantHits)
		}
		if got := state.cmidHits - cbefore; got != wantHits {
			t.Fatalf("%s: %d compressed files' checksums started from a midstate, want %d", what, got, wantHits)
		}
	}
	step("first", es, 0)
	if (state.packMap != nil) != mm {
		t.Fatalf("scratch file mapped: %v, want %v", state.packMap != nil, mm)
	}
	es = append(es, fakeEntry(2500000, "")) // sorts near the end
	step("one added", es, 3)
	es[3999] = fakeEntry(3999, "changed")
	step("one replaced", es, 3)
	// A speculation cut short: primary half done, the others not begun
	// (as if the next publish came early); only primary can start from
	// it, and only from what it reached.
	if state.spec != nil {
		<-state.spec.done
	}
	set := state.spec.set
	set.avail[0].Store(int64(len(set.mids[0]) / 2))
	set.avail[1].Store(0)
	set.avail[2].Store(0)
	es = append(es, fakeEntry(2500002, "")) // sorts near the end
	step("one added, speculation cut short", es, 1)
	es = append(es[:10], es[11:]...)
	step("one removed", es, 0)
	es = append(es, fakeEntry(10, ""), fakeEntry(2500001, ""))
	step("two added", es, 0)
}

// TestPublishStateRefsSameBytes: a caller holding light entries by
// pointer (PublishRootRefs, as the daemon's index) is matched by pointer,
// and whatever it does to those pointers between publishes (new ones,
// dropped ones, an entry changed in place to another href or pkgid, the
// same pointer given twice, one given with its fragments changed in
// place) gives the bytes a stateless publish of the same content gives,
// or is refused as a stateless publish refuses it.
func TestPublishStateRefsSameBytes(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 3))
	full := map[string]Entry{} // href + pkgid → the entry with fragments
	mk := func(i int, salt string) *Entry {
		e := fakeEntry(i, salt)
		full[e.Href+e.PkgID] = e
		l := e
		l.Primary, l.Filelists, l.Other = nil, nil, nil
		return &l
	}
	loader := WithFragmentLoader(func(_ context.Context, ls []*Entry) error {
		for _, e := range ls {
			f, ok := full[e.Href+e.PkgID]
			if !ok {
				return fmt.Errorf("no fragments for %q", e.Href)
			}
			e.Primary, e.Filelists, e.Other = f.Primary, f.Filelists, f.Other
		}
		return nil
	})
	var idx []*Entry
	for i := range 2000 {
		idx = append(idx, mk(i, ""))
	}
	state := NewPublishState(t.TempDir())
	defer state.Close()
	withState, plain := t.TempDir(), t.TempDir()
	open := func(dir string) *os.Root {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := os.OpenRoot(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	rootS, rootP := open(withState), open(plain)
	next := 2000
	for step := range 24 {
		var wantErr bool
		in := slices.Clone(idx)
		switch step % 8 {
		case 1: // one new
			idx = append(idx, mk(next, ""))
			next++
			in = slices.Clone(idx)
		case 2: // one dropped, one new release in its place
			j := rng.IntN(len(idx))
			idx[j] = mk(next, "r")
			next++
			in = slices.Clone(idx)
		case 3: // changed in place: same pointer, other pkgid
			e := idx[rng.IntN(len(idx))]
			n := mk(0, fmt.Sprint("inplace", step))
			e.PkgID = n.PkgID
			full[e.Href+e.PkgID] = withHref(full[n.Href+n.PkgID], e.Href)
			in = slices.Clone(idx)
		case 4: // changed in place: same pointer and pkgid, another href
			e := idx[rng.IntN(len(idx))]
			f := full[e.Href+e.PkgID]
			e.Href = fmt.Sprintf("moved/zz%d-%s", step, e.Href)
			full[e.Href+e.PkgID] = withHref(f, e.Href)
			in = slices.Clone(idx)
		case 5: // the same pointer twice
			in = append(slices.Clone(idx), idx[rng.IntN(len(idx))])
			wantErr = true
		case 6: // given with fragments, then those bytes changed in place
			j := rng.IntN(len(idx))
			f := full[idx[j].Href+idx[j].PkgID]
			c := f
			c.Primary = bytes.Clone(f.Primary)
			idx[j] = &c
			in = slices.Clone(idx)
			if _, err := PublishRootRefs(ctx, rootS, in, WithState(state), loader, WithRevision("1")); err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			c.Primary[bytes.Index(c.Primary, []byte("<summary>"))+9] = 'Z'
		case 7: // dropped
			j := rng.IntN(len(idx))
			idx = append(idx[:j], idx[j+1:]...)
			in = slices.Clone(idx)
		}
		rng.Shuffle(len(in), func(a, b int) { in[a], in[b] = in[b], in[a] })
		rev := fmt.Sprint(100 + step)
		_, err := PublishRootRefs(ctx, rootS, in, WithState(state), loader, WithRevision(rev), WithGrace(0))
		if wantErr {
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("step %d: %v, want ErrBadEntry", step, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		if _, err := PublishRootRefs(ctx, rootP, in, loader, WithRevision(rev), WithGrace(0)); err != nil {
			t.Fatal(err)
		}
		got, want := repodataFiles(t, withState), repodataFiles(t, plain)
		stamp := regexp.MustCompile(`<timestamp>[0-9]+</timestamp>`)
		for name, b := range want {
			if name == "repomd.xml" {
				b, got[name] = stamp.ReplaceAll(b, nil), stamp.ReplaceAll(got[name], nil)
			}
			if !bytes.Equal(got[name], b) {
				t.Fatalf("step %d: %s differs with the state", step, name)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("step %d: %d files with the state, %d without", step, len(got), len(want))
		}
	}
	if state.ptrHits < 10*2000 {
		t.Fatalf("only %d entries were matched by pointer", state.ptrHits)
	}
}

func withHref(e Entry, href string) Entry {
	old := e.Href
	e.Href = href
	e.Primary = bytes.ReplaceAll(e.Primary, []byte(old), []byte(href))
	return e
}
