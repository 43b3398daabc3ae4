package metadata

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/rpmpack"
)

// randText draws strings that stress conversion and escaping: XML
// specials, white space, valid multi-byte UTF-8, Latin-1 bytes, overlong
// and surrogate forms, bytes that are never valid, sequences cut short at
// the end of the string, and (rarely) control characters.
func randText(rng *rand.Rand, maxLen int, ctrl bool) string {
	pieces := []string{
		"a", "Z", "0", "9", " ", ".", "-", ":", "(", ")", "/", "bin/", "/etc/",
		"&", "<", ">", "\"", "'", "&amp;", "\t", "\n", "\r",
		"é", "ž", "日本", "🎉", "\u00a0", "\ufffd", "\uffff",
		"\xe9", "\xa9", "\x80", "\xbf", "\xc0", "\xff", "\xf8x", "\xfe",
		"\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xef\xbf\xbe",
		"\xc3", "\xe2\x82", "\xf0\x9f\x8e", "\x7f",
	}
	n := rng.Intn(maxLen + 1)
	var b strings.Builder
	for range n {
		if ctrl && rng.Intn(700) == 0 {
			b.WriteByte(byte(1 + rng.Intn(31)))
			continue
		}
		b.WriteString(pieces[rng.Intn(len(pieces))])
	}
	return b.String()
}

func randEVR(rng *rand.Rand) string {
	parts := []string{"", "1", "2.0", "0", " 3", "+4", "-1", "x", "1.0-2", "2:1.0", ":1", "5:", "1:2-3-4", "a:b", "1.0~rc1", "1^git"}
	return parts[rng.Intn(len(parts))] + parts[rng.Intn(len(parts))]
}

func randRelations(rng *rand.Rand, n int, names []string) rpmpack.Relations {
	var rs rpmpack.Relations
	for range rng.Intn(n + 1) {
		name := names[rng.Intn(len(names))]
		if rng.Intn(3) == 0 {
			name = randText(rng, 6, true)
		}
		var sense uint32
		for _, bit := range []uint32{1 << 1, 1 << 2, 1 << 3, 1 << 6, 1 << 9, 1 << 10, 1 << 19, 1 << 24, 1 << 27, 1} {
			if rng.Intn(4) == 0 {
				sense |= bit
			}
		}
		rs = append(rs, rel(name, randEVR(rng), sense))
	}
	return rs
}

// TestRepodataMatchesCreaterepoCRandom is a differential test: packages
// with random text, relations, flags, files and changelogs, rendered by
// us and by createrepo_c, must give the same bytes.
func TestRepodataMatchesCreaterepoCRandom(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(randSeed()))
	depNames := []string{"libc.so.6", "libc.so.6()(64bit)", "libc.so.6(GLIBC_2.3)", "libc.so.6(GLIBC_2.17)(64bit)",
		"libc.so.6(GLIBC_PRIVATE)", "rpmlib(PayloadIsZstd)", "/bin/sh", "/etc/x.conf", "/usr/bin/tool", "/opt/data",
		"dup", "cap", "cap(x)", "perl(Foo::Bar)"}
	for i := range 200 {
		md := rpmpack.RPMMetaData{
			Name: fmt.Sprintf("rnd%03d", i), Version: "1." + fmt.Sprint(i%5), Release: fmt.Sprint(i % 3), Arch: []string{"x86_64", "noarch", "aarch64"}[i%3],
			Summary: randText(rng, 12, true), Description: randText(rng, 40, true), Licence: randText(rng, 5, false),
			URL: randText(rng, 5, false), Vendor: randText(rng, 5, false), Group: randText(rng, 4, false),
			Packager: randText(rng, 6, false), BuildHost: randText(rng, 4, false),
			BuildTime: time.Unix(1600000000+int64(rng.Intn(1e8)), 0),
			Epoch:     []uint32{rpmpack.NoEpoch, 0, 1, 42}[rng.Intn(4)],
			Provides:  randRelations(rng, 5, depNames), Requires: randRelations(rng, 12, depNames),
			Conflicts: randRelations(rng, 3, depNames), Obsoletes: randRelations(rng, 3, depNames),
			Recommends: randRelations(rng, 3, depNames), Suggests: randRelations(rng, 3, depNames),
		}
		r := rawRPM{md: md, custom: map[int]rpmpack.IndexEntry{}}
		paths := []string{"/etc/x.conf", "/usr/bin/tool", "/opt/data", "/usr/lib/sendmail", "/srv/bin/y", "/var/z"}
		seen := map[string]bool{}
		for range rng.Intn(6) {
			p := paths[rng.Intn(len(paths))]
			if rng.Intn(3) == 0 {
				p = "/usr/share/" + strings.NewReplacer("/", "_").Replace(randText(rng, 4, true)) + "f"
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			f := rpmpack.RPMFile{Name: p, Body: []byte("x"), Mode: 0o100644}
			switch rng.Intn(4) {
			case 0:
				f.Mode, f.Body = 0o40755, nil
			case 1:
				f.Type = rpmpack.GhostFile
			}
			r.files = append(r.files, f)
		}
		if n := rng.Intn(16); n > 0 {
			times := make([]uint32, n)
			names := make([]string, n)
			texts := make([]string, n)
			tm := uint32(1700000000)
			for k := range n {
				if rng.Intn(2) == 0 {
					tm -= uint32(rng.Intn(3))
				}
				times[k] = tm
				names[k] = randText(rng, 5, true) + strings.Repeat(" ", rng.Intn(3))
				texts[k] = randText(rng, 10, true)
			}
			r.custom[1080] = rpmpack.EntryUint32(times)
			r.custom[1081] = rpmpack.EntryStringSlice(names)
			r.custom[1082] = rpmpack.EntryStringSlice(texts)
		}
		r.custom[1044] = rpmpack.EntryString(randText(rng, 4, false) + ".src.rpm")
		writeRaw(t, dir, r)
	}
	assertSameRepodata(t, dir, RenderOptions{})
	t.Run("all-changelogs", func(t *testing.T) {
		assertSameRepodataArgs(t, dir, RenderOptions{ChangelogLimit: -1}, "--changelog-limit", "-1")
	})
}

// randSeed is fixed so failures reproduce; REPOCTL_RANDOM_SEED explores.
func randSeed() int64 {
	if s, err := strconv.ParseInt(os.Getenv("REPOCTL_RANDOM_SEED"), 10, 64); err == nil {
		return s
	}
	return 20261122
}
