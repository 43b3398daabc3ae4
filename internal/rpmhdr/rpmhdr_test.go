package rpmhdr

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	rpmutils "github.com/sassoftware/go-rpmutils"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// corpusDir is createrepo_c's test packages, beside the repository.
func corpusDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join("..", "..", "..", "shared", "corpus", "createrepo_c-testdata")
	if _, err := os.Stat(d); err != nil {
		t.Fatalf("shared corpus missing: %v", err)
	}
	return d
}

func fixtures(t testing.TB) [][]byte {
	t.Helper()
	ms, err := filepath.Glob(filepath.Join(corpusDir(t), "*.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 10 {
		t.Fatalf("only %d corpus packages", len(ms))
	}
	var out [][]byte
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	for i := range 3 {
		b, err := testrpm.Build(testrpm.Small(i))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// Every fixture passes, and the offsets agree with go-rpmutils' reading
// of the same file.
func TestFixturesAgreeWithGoRPMUtils(t *testing.T) {
	for i, b := range fixtures(t) {
		h, err := Parse(b)
		if err != nil {
			t.Fatalf("fixture %d: %v", i, err)
		}
		h2, err := Read(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("fixture %d: Read: %v", i, err)
		}
		if !bytes.Equal(h.Bytes(), h2.Bytes()) || len(h2.Main.Entries) != len(h.Main.Entries) {
			t.Fatalf("fixture %d: Read and Parse differ", i)
		}
		ref, err := rpmutils.ReadHeader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("fixture %d: go-rpmutils: %v", i, err)
		}
		r := ref.GetRange()
		if int64(r.Start) != h.Main.Offset || int64(r.End) != h.PayloadOffset() {
			t.Errorf("fixture %d: main header %d-%d, go-rpmutils %d-%d", i, h.Main.Offset, h.PayloadOffset(), r.Start, r.End)
		}
		if h.Main.Offset != int64(LeadSize+h.SigArea()) || h.SigArea()%8 != 0 {
			t.Errorf("fixture %d: signature area %d", i, h.SigArea())
		}
		name, ok := h.Main.String(1000)
		want, err := ref.GetString(1000)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || name != want {
			t.Errorf("fixture %d: NAME %q, go-rpmutils %q", i, name, want)
		}
		for _, e := range h.Main.Entries {
			if e.Tag == 1000 && string(e.Data) != name+"\x00" {
				t.Errorf("fixture %d: NAME data %q", i, e.Data)
			}
		}
	}
}

// layout locates the parts of a valid package image.
type layout struct{ sig, sigIndex, main, mainIndex, mainData, end int }

func parseLayout(b []byte) layout {
	var l layout
	l.sig = LeadSize
	l.sigIndex = l.sig + IntroSize
	sil, sdl := int(binary.BigEndian.Uint32(b[l.sig+8:])), int(binary.BigEndian.Uint32(b[l.sig+12:]))
	l.main = l.sigIndex + sil*EntrySize + sdl + (8-sdl%8)%8
	l.mainIndex = l.main + IntroSize
	il, dl := int(binary.BigEndian.Uint32(b[l.main+8:])), int(binary.BigEndian.Uint32(b[l.main+12:]))
	l.mainData = l.mainIndex + il*EntrySize
	l.end = l.mainData + dl
	return l
}

func entryAt(t *testing.T, b []byte, l layout, tag uint32) int {
	for at := l.mainIndex; at < l.mainData; at += EntrySize {
		if binary.BigEndian.Uint32(b[at:]) == tag {
			return at
		}
	}
	t.Fatalf("tag %d missing", tag)
	return 0
}

func TestMalformed(t *testing.T) {
	good, err := testrpm.Build(testrpm.Small(7))
	if err != nil {
		t.Fatal(err)
	}
	l := parseLayout(good)
	name := entryAt(t, good, l, 1000) // STRING
	size := entryAt(t, good, l, 1009) // INT32
	mut := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return b }
	put := func(at int, v uint32) []byte {
		return mut(func(b []byte) { binary.BigEndian.PutUint32(b[at:], v) })
	}
	type tc struct {
		name string
		in   []byte
		opts []Option
		want error
	}
	cases := []tc{
		{"empty", nil, nil, ErrNotRPM},
		{"text", []byte("not an rpm at all\n"), nil, ErrNotRPM},
		{"lead magic", mut(func(b []byte) { b[2] = 0 }), nil, ErrNotRPM},
		{"magic only", good[:4], nil, ErrTruncated},
		{"lead version", mut(func(b []byte) { b[4] = 9 }), nil, ErrMalformed},
		{"lead signature type", mut(func(b []byte) { b[79] = 1 }), nil, ErrMalformed},
		{"sig magic", mut(func(b []byte) { b[l.sig+1] = 0 }), nil, ErrMalformed},
		{"sig magic reserved bytes", mut(func(b []byte) { b[l.sig+5] = 1 }), nil, ErrMalformed},
		{"main magic", mut(func(b []byte) { b[l.main] = 0 }), nil, ErrMalformed},
		{"sig il over rpm's 32", put(l.sig+8, 33), nil, ErrTooLarge},
		{"sig il huge", put(l.sig+8, 0xffffffff), nil, ErrTooLarge},
		{"sig dl over 64 MiB", put(l.sig+12, 64<<20+1), nil, ErrTooLarge},
		{"sig il zero", put(l.sig+8, 0), nil, ErrMalformed},
		{"sig dl beyond file", put(l.sig+12, 1<<20), nil, ErrTruncated},
		{"main il huge", put(l.main+8, 0x10000), nil, ErrTooLarge},
		{"main dl huge", put(l.main+12, 0x7fffffff), nil, ErrTooLarge},
		{"main dl over option", good, []Option{WithMaxData(64)}, ErrTooLarge},
		{"entries over option", good, []Option{WithMaxEntries(2)}, ErrTooLarge},
		{"main il beyond file", put(l.main+8, 4000), nil, ErrTruncated},
		{"offset past store", put(name+8, uint32(l.end-l.mainData+1)), nil, ErrMalformed},
		{"negative offset", put(name+8, 0x80000000), nil, ErrMalformed},
		{"unknown type", put(name+4, 42), nil, ErrMalformed},
		{"string count 0", put(name+12, 0), nil, ErrMalformed},
		{"string count 2", put(name+12, 2), nil, ErrMalformed},
		{"string array past NULs", mut(func(b []byte) {
			binary.BigEndian.PutUint32(b[name+4:], TypeStringArray)
			binary.BigEndian.PutUint32(b[name+12:], uint32(l.end-l.mainData))
		}), nil, ErrMalformed},
		{"unterminated string", mut(func(b []byte) {
			b[l.end-1] = 'x'
			binary.BigEndian.PutUint32(b[name+8:], uint32(l.end-l.mainData-1))
		}), nil, ErrMalformed},
		{"int count past store", put(size+12, uint32((l.end-l.mainData)/4+1)), nil, ErrMalformed},
		{"int count huge", put(size+12, 0x7fffffff), nil, ErrMalformed},
		{"int count zero", put(size+12, 0), nil, ErrMalformed},
		{"misaligned int", put(size+8, binary.BigEndian.Uint32(good[size+8:])+1), nil, ErrMalformed},
		{"region tag type", put(l.mainIndex+4, TypeInt32), nil, ErrMalformed},
		{"region tag count", put(l.mainIndex+12, 15), nil, ErrMalformed},
		{"region trailer tag", mut(func(b []byte) {
			off := binary.BigEndian.Uint32(b[l.mainIndex+8:])
			binary.BigEndian.PutUint32(b[l.mainData+int(off):], 64)
		}), nil, ErrMalformed},
		{"region larger than index", mut(func(b []byte) {
			off := binary.BigEndian.Uint32(b[l.mainIndex+8:])
			binary.BigEndian.PutUint32(b[l.mainData+int(off)+8:], 0xffff0000)
		}), nil, ErrMalformed},
	}
	for _, cut := range []int{1, 3, 50, LeadSize - 1, LeadSize, LeadSize + 9, l.sigIndex + 3, l.main - 1, l.main, l.main + 10, l.mainData, l.end - 1} {
		cases = append(cases, tc{"cut at " + strconv.Itoa(cut), good[:cut], nil, ErrTruncated})
	}
	kinds := []error{ErrNotRPM, ErrTruncated, ErrMalformed, ErrTooLarge}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for how, read := range map[string]func([]byte, ...Option) (*Headers, error){
				"Parse": Parse,
				"Read":  func(b []byte, o ...Option) (*Headers, error) { return Read(bytes.NewReader(b), o...) },
			} {
				_, err := read(c.in, c.opts...)
				if !errors.Is(err, c.want) {
					t.Fatalf("%s: %v, want %v", how, err, c.want)
				}
				for _, k := range kinds {
					if k != c.want && errors.Is(err, k) {
						t.Fatalf("%s: %v also matches %v", how, err, k)
					}
				}
			}
		})
	}
	for cut := 1; cut < l.end; cut++ {
		if _, err := Read(bytes.NewReader(good[:cut])); !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v", cut, err)
		}
	}
	if _, err := Parse(good[:l.end]); err != nil {
		t.Fatalf("headers without payload: %v", err)
	}
}

func TestReclassify(t *testing.T) {
	mine := errors.New("mine: broken")
	_, err := Parse([]byte("junk"))
	err = Reclassify(err, map[error]error{ErrNotRPM: mine})
	if !errors.Is(err, mine) || !errors.Is(err, ErrNotRPM) || errors.Is(err, ErrMalformed) {
		t.Fatalf("reclassified: %v", err)
	}
	if got := err.Error(); got != "mine: broken: bad lead magic" {
		t.Errorf("message %q", got)
	}
	other := errors.New("io")
	if Reclassify(other, map[error]error{ErrNotRPM: mine}) != other {
		t.Error("foreign error changed")
	}
	for _, o := range []Option{WithMaxData(0), WithMaxEntries(-1)} {
		if _, err := Parse(nil, o); err == nil || errors.Is(err, ErrNotRPM) {
			t.Errorf("bad option accepted: %v", err)
		}
	}
}

// FuzzParse: no input panics; every failure is one sentinel; whatever
// passes keeps every entry inside its header, and go-rpmutils, given the
// validated bytes, neither panics nor reads outside them.
func FuzzParse(f *testing.F) {
	for _, b := range fixtures(f) {
		f.Add(b)
		f.Add(b[:len(b)/3])
	}
	f.Add([]byte{})
	f.Add([]byte{0xed, 0xab, 0xee, 0xdb})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := Parse(b, WithMaxData(1<<20), WithMaxEntries(1<<12))
		h2, err2 := Read(bytes.NewReader(b), WithMaxData(1<<20), WithMaxEntries(1<<12))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("Parse %v, Read %v", err, err2)
		}
		if err != nil {
			n := 0
			for _, k := range []error{ErrNotRPM, ErrTruncated, ErrMalformed, ErrTooLarge} {
				if errors.Is(err, k) {
					n++
				}
			}
			if n != 1 {
				t.Fatalf("error matches %d sentinels: %v", n, err)
			}
			return
		}
		if !bytes.Equal(h.Bytes(), h2.Bytes()) || !bytes.Equal(h.Bytes(), b[:h.PayloadOffset()]) {
			t.Fatal("Read and Parse disagree")
		}
		for _, hd := range []Header{h.Sig, h.Main} {
			for _, e := range hd.Entries {
				if len(e.Data) > len(hd.Blob) {
					t.Fatalf("tag %d data outside its header", e.Tag)
				}
			}
		}
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("go-rpmutils panicked on validated bytes: %v", v)
				}
			}()
			if ref, err := rpmutils.ReadHeader(bytes.NewReader(h.Bytes())); err == nil {
				ref.GetNEVRA()
			}
		}()
	})
}
