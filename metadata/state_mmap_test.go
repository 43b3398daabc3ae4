package metadata

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mappedRSS is the resident size of the mapping starting at m, from
// /proc/self/smaps.
func mappedRSS(t *testing.T, m []byte) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(&m[0])))
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, start) {
			in = true
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			kb, err := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("mapping %s not in smaps", start)
	return 0
}

// TestPageDropper: a pass over a mapped file through pageDropper leaves
// only a few MB of it resident while it runs, and none once flushed;
// the bytes read are the file's.
func TestPageDropper(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "pack")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const size = 48 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	sum := func(b []byte) (s uint64) {
		for _, c := range b {
			s += uint64(c)
		}
		return s
	}
	want := sum(data)
	// Without dropping, a pass leaves it all resident: the measure works.
	if got := sum(m); got != want {
		t.Fatal("mapped bytes differ from the file")
	}
	if rss := mappedRSS(t, m); rss < size/2 {
		t.Fatalf("after a full pass only %d bytes resident: smaps not measuring", rss)
	}
	dropMapped(m)
	if rss := mappedRSS(t, m); rss > 1<<20 {
		t.Fatalf("%d bytes resident after dropMapped", rss)
	}
	d := &pageDropper{m: m}
	var got uint64
	peak := int64(0)
	const chunk = 70_000 // not page-aligned, as blocks are not
	for off := int64(0); off < size; off += chunk {
		n := min(chunk, size-off)
		got += sum(m[off : off+n])
		d.add(off, n)
		if off%(2<<20) < chunk {
			peak = max(peak, mappedRSS(t, m))
		}
	}
	d.flush()
	if got != want {
		t.Fatal("bytes read through the dropper differ from the file")
	}
	if peak > 8<<20 {
		t.Fatalf("%d bytes resident during a dropped pass", peak)
	}
	if rss := mappedRSS(t, m); rss > 1<<20 {
		t.Fatalf("%d bytes resident after the pass", rss)
	}
}
