package sign

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// rpmkeysLines parses rpmkeys -Kv output into "name: STATUS" lines, the
// detail rpm adds in parentheses dropped.
func rpmkeysLines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.HasPrefix(l, "    ") {
			continue
		}
		l = strings.TrimSpace(l)
		if i := strings.Index(l, " ("); i > 0 {
			l = l[:i]
		}
		// rpm lists what it would have required once something failed;
		// an absent tag is no check.
		if strings.HasSuffix(l, ": NOTFOUND") {
			continue
		}
		ls = append(ls, l)
	}
	sort.Strings(ls)
	return ls
}

// ourLines renders the checks rpm 4 reads as rpmkeys 4.18 prints them
// (key IDs shortened to 8 hex digits).
func ourLines(rep *Report) []string {
	var ls []string
	for _, c := range append(append([]Check(nil), rep.Signatures...), rep.Digests...) {
		if c.Reader == readerRPM6 {
			continue
		}
		l := c.Name
		if c.KeyID != "" {
			l += ", key ID " + c.KeyID[len(c.KeyID)-8:]
		}
		ls = append(ls, l+": "+c.Status)
	}
	sort.Strings(ls)
	return ls
}

// TestVerifyAgreesWithRpmkeys: on every corpus package (the v6
// multi-signature one included) and on rpm 6 packages (unsigned, signed by
// others with v4 and v6 signatures, signed by us, and tampered), repoctl's
// verify prints the lines rpmkeys -Kv prints, with the same statuses, and
// its rpm 4 verdict is rpmkeys' exit code; with and without the keys.
func TestVerifyAgreesWithRpmkeys(t *testing.T) {
	ours := testKey(t, "rsa4096")
	foreign, _ := foreignKeys(t)
	_, files := copyCorpus(t)
	dir := t.TempDir()
	for i, c := range rpm6Cases() {
		files = append(files, writeRPM6(t, dir, i, c))
	}
	var mine []string
	for i, c := range rpm6Cases() {
		p := writeRPM6(t, dir, 10+i, c)
		mine = append(mine, p)
	}
	cp := filepath.Join(dir, "corpus-signed-"+filepath.Base(files[0]))
	copyFile(t, files[0], cp)
	mine = append(mine, cp)
	signAll(t, ours, mine)
	files = append(files, mine...)
	// Tampered copies: a payload byte, a main header byte in a string.
	for _, src := range []string{files[0], mine[0], mine[1]} {
		b := readAll(t, src)
		p := mustReadPkg(t, src)
		pay := append([]byte(nil), b...)
		pay[len(pay)-1] ^= 0x20
		hp := filepath.Join(dir, "tampered-payload-"+filepath.Base(src))
		if err := os.WriteFile(hp, pay, 0o644); err != nil {
			t.Fatal(err)
		}
		hd := append([]byte(nil), b...)
		e := p.main.raw.Get(1004) // summary
		at := p.mainOff + int64(16+16*len(p.main.raw.Entries)) + int64(e.Offset)
		hd[at] ^= 0x20
		hh := filepath.Join(dir, "tampered-header-"+filepath.Base(src))
		if err := os.WriteFile(hh, hd, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, hp, hh)
	}

	for _, tc := range []struct {
		name string
		keys []*Key
	}{{"no keys", nil}, {"our and the foreign key", []*Key{ours, foreign}}} {
		var pubs [][]byte
		for _, k := range tc.keys {
			pubs = append(pubs, pubOf(t, k))
		}
		db := newRPMDB(t, pubs...)
		for _, f := range files {
			out, ok := db.checksig(t, f)
			rep, err := VerifyFile(context.Background(), f, tc.keys)
			if err != nil {
				t.Errorf("%s: %s: verify: %v", tc.name, filepath.Base(f), err)
				continue
			}
			want, got := rpmkeysLines(out), ourLines(rep)
			if strings.Join(want, "\n") != strings.Join(got, "\n") {
				t.Errorf("%s: %s:\nrpmkeys:\n  %s\nrepoctl:\n  %s", tc.name, filepath.Base(f), strings.Join(want, "\n  "), strings.Join(got, "\n  "))
			}
			// Without any signature rpmkeys judges the digests alone;
			// repoctl verify also wants a signature when given keys.
			verdict := rep.RPM4OK
			hasSig := false
			for _, c := range rep.Signatures {
				if c.Reader != readerRPM6 {
					hasSig = true
				}
			}
			if !hasSig {
				verdict = true
				for _, c := range rep.Digests {
					if c.Reader != readerRPM6 && c.Status != "OK" {
						verdict = false
					}
				}
			}
			if verdict != ok {
				t.Errorf("%s: %s: rpmkeys exit OK %v, repoctl rpm 4 verdict %v\n%s", tc.name, filepath.Base(f), ok, verdict, out)
			}
		}
	}
}
