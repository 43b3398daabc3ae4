package sign

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// TestRecoverStates drives Recover through each state a crash can leave.
func TestRecoverStates(t *testing.T) {
	a, b := testKey(t, "ed25519"), testKey(t, "rsa4096")
	dir := t.TempDir()
	p, err := testrpm.Write(dir, testrpm.Small(4))
	if err != nil {
		t.Fatal(err)
	}
	signAll(t, a, []string{p}) // now has reserved space
	orig := readAll(t, p)
	s, err := NewSigner(b)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := s.prepare(context.Background(), p)
	if err != nil || !pl.inPlace {
		t.Fatalf("prepare: %v in place %v", err, pl != nil && pl.inPlace)
	}
	rec := journalRecord{Path: p, Off: leadSize, Size: int64(len(orig)), Orig: pl.origArea,
		OrigSum: sum256(pl.origArea), NewSum: sum256(pl.newArea), MainLen: pl.mainLen, MainSum: pl.mainSum}
	write := func(area []byte) {
		data := bytes.Clone(orig)
		copy(data[leadSize:], area)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A torn write: new bytes up to the last byte that differs, which is
	// still old (the reserved space's zeros are the same in both).
	torn := bytes.Clone(pl.newArea)
	last := len(torn) - 1
	for last >= 0 && torn[last] == pl.origArea[last] {
		last--
	}
	torn[last] = pl.origArea[last]
	db := newRPMDB(t, pubOf(t, b))
	for _, c := range []struct {
		name     string
		area     []byte
		complete bool
		want     []byte // nil: signed by b
	}{
		{"torn write rolls back", torn, true, orig},
		{"full write rolls forward", pl.newArea, true, nil},
		{"nothing written yet", pl.origArea, true, orig},
		{"incomplete journal means untouched", pl.origArea, false, orig},
	} {
		write(c.area)
		j, err := writeJournal(dir, []journalRecord{rec})
		if err != nil {
			t.Fatal(err)
		}
		// While the batch holds the lock, Recover keeps out.
		if err := Recover(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(j.path); err != nil {
			t.Fatalf("%s: Recover removed a live journal", c.name)
		}
		if !c.complete {
			jb := readAll(t, j.path)
			if err := os.WriteFile(j.path, jb[:len(jb)-10], 0o600); err != nil {
				t.Fatal(err)
			}
		}
		j.f.Close() // the "crash": lock released, journal left
		if err := Recover(context.Background(), dir); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		left, err := filepath.Glob(filepath.Join(dir, journalPrefix+"*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(left) != 0 {
			t.Fatalf("%s: journal left: %v", c.name, left)
		}
		got := readAll(t, p)
		if c.want != nil {
			if !bytes.Equal(got, c.want) {
				d := 0
				for d < len(got) && d < len(c.want) && got[d] == c.want[d] {
					d++
				}
				t.Errorf("%s: not the original bytes (len %d vs %d, first diff at %d, sig area %d)", c.name, len(got), len(c.want), d, len(pl.origArea))
			}
			continue
		}
		db.assertSignedOK(t, p, b)
	}
	// A different file at the same path is never written to.
	other, err := testrpm.Build(testrpm.Small(5))
	if err != nil {
		t.Fatal(err)
	}
	other = append(other, make([]byte, len(orig)-len(other))...)
	if err := os.WriteFile(p, other, 0o644); err != nil {
		t.Fatal(err)
	}
	j, err := writeJournal(dir, []journalRecord{rec})
	if err != nil {
		t.Fatal(err)
	}
	if err := j.f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Recover(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readAll(t, p), other) {
		t.Fatal("Recover wrote into a different package")
	}
}
