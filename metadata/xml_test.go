package metadata

import (
	"math/rand"
	"testing"
)

// naiveBump is createrepo_c's loop from parsehdr.c, transcribed literally
// (list prepend and walk over the previously prepended entries).
func naiveBump(times []int64) []int64 {
	var list []int64 // list[0] is the most recently prepended
	var last int64
	for _, t := range times {
		list = append([]int64{t}, list...)
		if last == t {
			tmp := t
			for k := 1; k < len(list) && list[k] == tmp; k++ {
				list[k]++
				tmp++
			}
		} else {
			last = t
		}
	}
	return list // oldest-first output order
}

func TestChangelogTimeBumpMatchesCreaterepoC(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for iter := range 20000 {
		n := rng.Intn(14)
		times := make([]int64, n)
		for i := range times {
			times[i] = int64(rng.Intn(5))
			if rng.Intn(4) == 0 && i > 0 {
				times[i] = times[i-1] + int64(rng.Intn(3)) - 1
			}
		}
		p := &Package{}
		for _, tm := range times {
			p.Changelog = append(p.Changelog, ChangelogEntry{Time: tm})
		}
		got := p.selectChangelog(-1)
		want := naiveBump(times)
		for i := range want {
			if got[i].Time != want[i] {
				t.Fatalf("iteration %d: times %v: got %v, want %v", iter, times, got, want)
			}
		}
	}
}

// A hostile run of equal timestamps must not take quadratic time.
func TestChangelogEqualTimesLinear(t *testing.T) {
	p := &Package{}
	for range 200000 {
		p.Changelog = append(p.Changelog, ChangelogEntry{Time: 1000})
	}
	sel := p.selectChangelog(-1)
	if sel[0].Time != 1000 || sel[len(sel)-1].Time != 1000+199999 {
		t.Fatalf("first/last = %d/%d", sel[0].Time, sel[len(sel)-1].Time)
	}
}

func TestChangelogLimitFromFlag(t *testing.T) {
	p := &Package{}
	for i := range 15 {
		p.Changelog = append(p.Changelog, ChangelogEntry{Time: int64(100 - i)})
	}
	for _, c := range []struct{ flag, want int }{{0, 0}, {-1, 15}, {-5, 10}, {3, 3}, {20, 15}} {
		if got := len(p.selectChangelog(ChangelogLimitFromFlag(c.flag))); got != c.want {
			t.Errorf("--changelog-limit %d kept %d, want %d", c.flag, got, c.want)
		}
	}
	if got := len(p.selectChangelog(0)); got != 10 {
		t.Errorf("default kept %d", got)
	}
	if sel := p.selectChangelog(3); sel[0].Time != 98 || sel[2].Time != 100 {
		t.Errorf("limit 3 = %+v, want newest three oldest first", sel)
	}
}
