package sign

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/repoctl/repoctl/internal/rpmhdr"
	"github.com/repoctl/repoctl/internal/testrpm"
)

// rpm 6 packages, made by testrpm.RPM6 from rpmpack output because
// Debian's rpm 4.18 cannot build them: no PAYLOADDIGESTALGO, the six rpm 6
// payload digests, RPMFORMAT 6, a v6 signature header, and foreign v4 and
// v6 OpenPGP signatures in tag 278.

var (
	foreignOnce sync.Once
	foreignV4   *Key
	foreignV6   *openpgp.Entity
	foreignErr  error
)

// foreignKeys are a v4 EdDSA key (what rpm 4 and 6 both read) and an
// OpenPGP v6 Ed25519 key (rpm 6 only), standing for another signer.
func foreignKeys(t testing.TB) (*Key, *openpgp.Entity) {
	t.Helper()
	foreignOnce.Do(func() {
		foreignV4, foreignErr = GenerateKey("ed25519", "Foreign Signer", "foreign@example.test")
		if foreignErr == nil {
			foreignV6, foreignErr = openpgp.NewEntity("Foreign V6", "", "v6@example.test",
				&packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519, DefaultHash: crypto.SHA512})
		}
	})
	if foreignErr != nil {
		t.Fatal(foreignErr)
	}
	return foreignV4, foreignV6
}

func v6Sig(t testing.TB, e *openpgp.Entity, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := openpgp.DetachSign(&buf, e, bytes.NewReader(data), &packet.Config{DefaultHash: crypto.SHA512}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rpm6Case is one kind of package rpm 6 makes.
type rpm6Case struct {
	name       string
	compressor string
	opts       func(t testing.TB, payload []byte) testrpm.RPM6Options
	v6         bool // RPMFORMAT 6: we must write tag 278 too
	signed     bool // carries a foreign signature before we sign
}

func rpm6Cases() []rpm6Case {
	return []rpm6Case{
		{name: "v6-unsigned-zstd", compressor: "zstd", v6: true,
			opts: func(testing.TB, []byte) testrpm.RPM6Options { return testrpm.RPM6Options{} }},
		{name: "v6-unsigned-xz", compressor: "xz", v6: true,
			opts: func(testing.TB, []byte) testrpm.RPM6Options { return testrpm.RPM6Options{} }},
		// What rpmsign 6 leaves: the same v4 packet in 268 and 278, plus a
		// v6 signature only rpm 6 can read.
		{name: "v6-foreign-v4-and-v6-sigs", compressor: "zstd", v6: true, signed: true,
			opts: func(t testing.TB, _ []byte) testrpm.RPM6Options {
				k4, k6 := foreignKeys(t)
				return testrpm.RPM6Options{Sign: func(main []byte) ([]byte, [][]byte, error) {
					s4, err := k4.signParts(time.Now(), main)
					return s4, [][]byte{s4, v6Sig(t, k6, main)}, err
				}}
			}},
		// rpm's own hlinktest-1.0-1.noarch-v3sig.rpm: a v6 package with a
		// v4 header signature and a v3 (header+payload) one, no 278.
		{name: "v6-v3sig", compressor: "zstd", v6: true, signed: true,
			opts: func(t testing.TB, payload []byte) testrpm.RPM6Options {
				k4, _ := foreignKeys(t)
				var main []byte
				return testrpm.RPM6Options{
					Sign: func(m []byte) ([]byte, [][]byte, error) {
						main = m
						s, err := k4.signParts(time.Now(), m)
						return s, nil, err
					},
					EditSig: func(tags []testrpm.Tag) []testrpm.Tag {
						s, err := k4.signParts(time.Now(), main, payload)
						if err != nil {
							t.Fatal(err)
						}
						return append(tags, testrpm.BinTag(tagGPG, s))
					},
				}
			}},
		// rpm 6 digests in a v4 package, PAYLOADDIGESTALGO left out.
		{name: "v4-format-no-algo", compressor: "gzip",
			opts: func(testing.TB, []byte) testrpm.RPM6Options { return testrpm.RPM6Options{V4Format: true} }},
	}
}

// writeRPM6 builds the case's package into dir.
func writeRPM6(t testing.TB, dir string, i int, c rpm6Case) string {
	t.Helper()
	spec := testrpm.Small(600 + i)
	spec.Compressor = c.compressor
	b, err := testrpm.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	orig, err := testrpm.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := testrpm.RPM6(b, c.opts(t, orig.Payload))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, c.name+"-"+spec.FileName())
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSignRPM6Packages: every rpm 6 kind is accepted, signed in place (rpm
// 6 reserves space), verified by rpmkeys 4.18 with our key, verified by
// our rpm 6 reading (278 holds our signature, foreign ones are gone), and
// left alone when signed again.
func TestSignRPM6Packages(t *testing.T) {
	for _, algo := range []string{"rsa4096", "ed25519"} {
		t.Run(algo, func(t *testing.T) {
			k := testKey(t, algo)
			dir := t.TempDir()
			cases := rpm6Cases()
			var files []string
			for i, c := range cases {
				files = append(files, writeRPM6(t, dir, i, c))
			}
			// rpm 4.18 reads what rpm 6 made before we touch it.
			plain := newRPMDB(t)
			for i, f := range files {
				out, _ := plain.checksig(t, f)
				if !strings.Contains(out, "Header SHA256 digest: OK") || !strings.Contains(out, "Payload SHA256 digest: OK") || strings.Contains(out, "BAD") {
					t.Fatalf("%s: rpmkeys on the unsigned input:\n%s", cases[i].name, out)
				}
			}
			res := signAll(t, k, files)
			db := newRPMDB(t, pubOf(t, k))
			for i, r := range res {
				c := cases[i]
				want := ActionSigned
				if c.signed {
					want = ActionReplaced
				}
				if r.Action != want || !r.InPlace {
					t.Errorf("%s: action %q in place %v, want %q in place", c.name, r.Action, r.InPlace, want)
				}
				db.assertSignedOK(t, r.Path, k)
				out, _ := db.checksig(t, r.Path)
				if !strings.Contains(out, "Payload SHA256 digest: OK") {
					t.Errorf("%s: rpmkeys does not check the payload digest:\n%s", c.name, out)
				}

				p := mustReadPkg(t, r.Path)
				sigs, err := openPGPSigs(p)
				if err != nil {
					t.Fatal(err)
				}
				hdr := p.sig.get(tagRSAHeader)
				if !k.isRSA() {
					hdr = p.sig.get(tagDSAHeader)
				}
				if c.v6 {
					if len(sigs) != 1 || hdr == nil || !bytes.Equal(sigs[0], hdr.data) {
						t.Errorf("%s: tag 278 holds %d signatures, want ours once", c.name, len(sigs))
					}
					if p.sig.get(tagReserved) == nil || p.sig.get(tagReservedSpace) != nil {
						t.Errorf("%s: v6 package must keep RESERVED (999), not RESERVEDSPACE", c.name)
					}
				} else if sigs != nil {
					t.Errorf("%s: v4 package got tag 278", c.name)
				}
				for _, tag := range []uint32{tagPGP, tagGPG} {
					if p.sig.get(tag) != nil {
						t.Errorf("%s: header+payload signature %d left", c.name, tag)
					}
				}
				if p.main.get(tagPayloadDigestAlgo) != nil {
					t.Errorf("%s: PAYLOADDIGESTALGO appeared", c.name)
				}

				rep, err := VerifyFile(context.Background(), r.Path, []*Key{k})
				if err != nil {
					t.Fatal(err)
				}
				if !rep.OK || !rep.RPM4OK || !rep.RPM6OK {
					t.Errorf("%s: verify: %+v", c.name, rep)
				}
				names := map[string]string{}
				for _, ck := range append(append([]Check(nil), rep.Digests...), rep.Signatures...) {
					names[ck.Name] = ck.Status + "/" + ck.Reader
				}
				for _, want := range []string{"Header SHA256 digest", "Payload SHA256 digest", "Payload SHA512 digest", "Payload SHA3-256 digest"} {
					if !strings.HasPrefix(names[want], "OK/") {
						t.Errorf("%s: %s: %q (all: %v)", c.name, want, names[want], names)
					}
				}
				if c.v6 {
					if names["Header SHA3-256 digest"] != "OK/rpm6" {
						t.Errorf("%s: Header SHA3-256 digest %q", c.name, names["Header SHA3-256 digest"])
					}
					found := false
					for n, s := range names {
						if strings.HasPrefix(n, "Header OpenPGP V4 ") && s == "OK/rpm6" {
							found = true
						}
					}
					if !found {
						t.Errorf("%s: no rpm 6 signature check in %v", c.name, names)
					}
				}
			}
			before := map[string][]byte{}
			for _, f := range files {
				before[f] = readAll(t, f)
			}
			for i, r := range signAll(t, k, files) {
				if r.Action != ActionUnchanged || !bytes.Equal(before[r.Path], readAll(t, r.Path)) {
					t.Errorf("%s: second run %q, file changed %v", cases[i].name, r.Action, !bytes.Equal(before[r.Path], readAll(t, r.Path)))
				}
			}
		})
	}
}

// TestVerifyRPM6ForeignSignatures: before signing, rpm 4 reads only the
// foreign v4 signature in 268 and rpm 6 only the ones in 278; a key that
// is in neither fails both, the v4 key passes rpm 4 but not rpm 6 (whose
// 278 also holds a v6 signature of an unknown key), as rpm 6 would say.
func TestVerifyRPM6ForeignSignatures(t *testing.T) {
	k4, _ := foreignKeys(t)
	var c rpm6Case
	for _, x := range rpm6Cases() {
		if x.name == "v6-foreign-v4-and-v6-sigs" {
			c = x
		}
	}
	p := writeRPM6(t, t.TempDir(), 0, c)
	rep, err := VerifyFile(context.Background(), p, []*Key{k4})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.RPM4OK || rep.RPM6OK || rep.OK || !rep.DigestsOK {
		t.Errorf("foreign v4 key: rpm4 %v rpm6 %v ok %v digests %v\n%+v", rep.RPM4OK, rep.RPM6OK, rep.OK, rep.DigestsOK, rep.Signatures)
	}
	var nokey6, ok6, ok4 int
	for _, s := range rep.Signatures {
		switch {
		case s.Reader == readerRPM6 && s.Status == "NOKEY" && strings.HasPrefix(s.Name, "Header OpenPGP V6 Ed25519/"):
			nokey6++
		case s.Reader == readerRPM6 && s.Status == "OK":
			ok6++
		case s.Reader == readerRPM4 && s.Status == "OK":
			ok4++
		}
	}
	if nokey6 != 1 || ok6 != 1 || ok4 != 1 {
		t.Errorf("signatures: %+v", rep.Signatures)
	}
	db := newRPMDB(t, pubOf(t, k4))
	if out, ok := db.checksig(t, p); !ok || strings.Contains(out, "NOKEY") {
		t.Errorf("rpmkeys 4.18 reads only 268 and should accept:\n%s", out)
	}
}

// TestRPM6MalformedTags: malformed rpm 6 digest and signature tags (wrong
// type, count, length, bad hex or base64) are refused with ErrDigestTag or
// ErrSignatureTag (and ErrCorrupt), wrong digest values with ErrCorrupt;
// the file stays untouched and verify does not pass it. A mismatching ALT
// digest whose partner matches is accepted, as rpm accepts it.
func TestRPM6MalformedTags(t *testing.T) {
	hex64 := strings.Repeat("ab", 32)
	setMain := func(tg testrpm.Tag) func([]testrpm.Tag) []testrpm.Tag {
		return func(tags []testrpm.Tag) []testrpm.Tag { return testrpm.Set(tags, tg) }
	}
	setSig := setMain
	pubPkt := func() []byte {
		_, k6 := foreignKeys(t)
		var b bytes.Buffer
		if err := k6.PrimaryKey.Serialize(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	cases := []struct {
		name      string
		main, sig func([]testrpm.Tag) []testrpm.Tag
		want      error // nil: signs fine
	}{
		{"5092 as string", setMain(testrpm.StringTag(tagPayloadDigest, hex64)), nil, ErrDigestTag},
		{"5092 two values", setMain(testrpm.StringArrayTag(tagPayloadDigest, hex64, hex64)), nil, ErrDigestTag},
		{"5092 bad hex", setMain(testrpm.StringArrayTag(tagPayloadDigest, strings.Repeat("zz", 32))), nil, ErrDigestTag},
		{"5092 short", setMain(testrpm.StringArrayTag(tagPayloadDigest, "abcd")), nil, ErrDigestTag},
		{"5092 empty", setMain(testrpm.StringArrayTag(tagPayloadDigest, "")), nil, ErrDigestTag},
		{"5097 bad hex", setMain(testrpm.StringArrayTag(tagPayloadDigestAlt, strings.Repeat("g", 64))), nil, ErrDigestTag},
		{"5097 as int32", setMain(testrpm.Int32Tag(tagPayloadDigestAlt, 8)), nil, ErrDigestTag},
		{"5121 as string array", setMain(testrpm.StringArrayTag(tagPayloadSHA512, strings.Repeat("ab", 64))), nil, ErrDigestTag},
		{"5121 sha256 length", setMain(testrpm.StringTag(tagPayloadSHA512, hex64)), nil, ErrDigestTag},
		{"5122 bad hex", setMain(testrpm.StringTag(tagPayloadSHA512Alt, strings.Repeat("x", 128))), nil, ErrDigestTag},
		{"5123 bin", setMain(testrpm.BinTag(tagPayloadSHA3, make([]byte, 32))), nil, ErrDigestTag},
		{"5124 odd length", setMain(testrpm.StringTag(tagPayloadSHA3Alt, hex64[:63])), nil, ErrDigestTag},
		{"279 bad hex", nil, setSig(testrpm.StringTag(tagSHA3Header, strings.Repeat("q", 64))), ErrDigestTag},
		{"279 bin", nil, setSig(testrpm.BinTag(tagSHA3Header, make([]byte, 32))), ErrDigestTag},
		{"273 short", nil, setSig(testrpm.StringTag(tagSHA256Header, "abcd")), ErrDigestTag},
		{"278 bin", nil, setSig(testrpm.BinTag(tagOpenPGP, []byte("iQIz"))), ErrSignatureTag},
		{"278 bad base64", nil, setSig(testrpm.StringArrayTag(tagOpenPGP, "not base64 !!!")), ErrSignatureTag},
		{"278 junk packet", nil, setSig(testrpm.StringArrayTag(tagOpenPGP, base64.StdEncoding.EncodeToString([]byte("junk junk junk")))), ErrSignatureTag},
		{"278 key not signature", nil, setSig(testrpm.StringArrayTag(tagOpenPGP, base64.StdEncoding.EncodeToString(pubPkt()))), ErrSignatureTag},
		{"278 one bad of two", nil, func(tags []testrpm.Tag) []testrpm.Tag {
			good := base64.StdEncoding.EncodeToString(v6Sig(t, func() *openpgp.Entity { _, e := foreignKeys(t); return e }(), []byte("x")))
			return testrpm.Set(tags, testrpm.StringArrayTag(tagOpenPGP, good, "@@@@"))
		}, ErrSignatureTag},
		// Well-formed but wrong: the package is corrupt, the tags are not.
		{"5092 and 5097 wrong", func(tags []testrpm.Tag) []testrpm.Tag {
			tags = testrpm.Set(tags, testrpm.StringArrayTag(tagPayloadDigest, hex64))
			return testrpm.Set(tags, testrpm.StringArrayTag(tagPayloadDigestAlt, hex64))
		}, nil, ErrCorrupt},
		{"5121 wrong", setMain(testrpm.StringTag(tagPayloadSHA512, strings.Repeat("ab", 64))), nil, ErrCorrupt},
		{"5123 wrong, 5124 wrong", func(tags []testrpm.Tag) []testrpm.Tag {
			tags = testrpm.Set(tags, testrpm.StringTag(tagPayloadSHA3, hex64))
			return testrpm.Set(tags, testrpm.StringTag(tagPayloadSHA3Alt, hex64))
		}, nil, ErrCorrupt},
		{"279 wrong", nil, setSig(testrpm.StringTag(tagSHA3Header, hex64)), ErrCorrupt},
		// rpm drops a mismatching ALT digest when its partner matches.
		{"5097 wrong only", setMain(testrpm.StringArrayTag(tagPayloadDigestAlt, hex64)), nil, nil},
		{"5122 wrong only", setMain(testrpm.StringTag(tagPayloadSHA512Alt, strings.Repeat("ab", 64))), nil, nil},
		// rpm ≥ 4.14 hashes 5092 with SHA-256 whatever 5093 says.
		{"5093 says SHA-512", setMain(testrpm.Int32Tag(tagPayloadDigestAlgo, 10)), nil, nil},
		{"upper-case hex", func(tags []testrpm.Tag) []testrpm.Tag {
			e := testrpm.Get(tags, tagPayloadDigest)
			return testrpm.Set(tags, testrpm.StringArrayTag(tagPayloadDigest, strings.ToUpper(strings.TrimRight(string(e.Data), "\x00"))))
		}, nil, nil},
	}
	k := testKey(t, "ed25519")
	s, err := NewSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	orig := map[string][]byte{}
	for i, c := range cases {
		spec := testrpm.Small(700 + i)
		spec.Compressor = "zstd"
		b, err := testrpm.Build(spec)
		if err != nil {
			t.Fatal(err)
		}
		out, err := testrpm.RPM6(b, testrpm.RPM6Options{EditMain: c.main, EditSig: c.sig})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rpmhdr.Parse(out); err != nil {
			t.Fatalf("%s: test package does not parse: %v", c.name, err)
		}
		p := filepath.Join(dir, spec.FileName())
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		orig[p] = out
	}
	res, err := s.SignFiles(context.Background(), paths)
	if err != nil {
		t.Fatal(err)
	}
	db := newRPMDB(t, pubOf(t, k))
	for i, r := range res {
		c := cases[i]
		if c.want == nil {
			if r.Err != nil {
				t.Errorf("%s: refused: %v", c.name, r.Err)
				continue
			}
			db.assertSignedOK(t, r.Path, k)
			continue
		}
		if !errors.Is(r.Err, c.want) || !errors.Is(r.Err, ErrCorrupt) {
			t.Errorf("%s: err %v, want %v", c.name, r.Err, c.want)
		}
		if c.want == ErrCorrupt && (errors.Is(r.Err, ErrDigestTag) || errors.Is(r.Err, ErrSignatureTag)) {
			t.Errorf("%s: a wrong value is not a malformed tag: %v", c.name, r.Err)
		}
		if !bytes.Equal(readAll(t, r.Path), orig[r.Path]) {
			t.Errorf("%s: file changed", c.name)
		}
		rep, err := VerifyFile(context.Background(), r.Path, []*Key{k})
		if err == nil && rep.OK {
			t.Errorf("%s: verify says OK", c.name)
		}
	}
}

// FuzzPayloadDigestTag: whatever type, count and bytes tag 5092 holds,
// reading and checking never panics, and an error is a malformed tag or a
// mismatch, never anything else.
func FuzzPayloadDigestTag(f *testing.F) {
	f.Add(uint8(rpmhdr.TypeStringArray), uint8(1), []byte(strings.Repeat("ab", 32)))
	f.Add(uint8(rpmhdr.TypeString), uint8(1), []byte(strings.Repeat("AB", 32)))
	f.Add(uint8(rpmhdr.TypeStringArray), uint8(3), []byte("a\x00b\x00c"))
	f.Add(uint8(rpmhdr.TypeBin), uint8(4), []byte{1, 2, 3, 4})
	spec := testrpm.Small(800)
	base, err := testrpm.Build(spec)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, typ, count uint8, data []byte) {
		if len(data) > 512 {
			return
		}
		tg := testrpm.Tag{Tag: tagPayloadDigest, Type: uint32(typ % 10), Count: uint32(count%4) + 1, Data: append(bytes.Clone(data), 0)}
		b, err := testrpm.RPM6(base, testrpm.RPM6Options{EditMain: func(tags []testrpm.Tag) []testrpm.Tag { return testrpm.Set(tags, tg) }})
		if err != nil {
			t.Fatal(err)
		}
		p, err := readPkg(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return // rpmhdr refused the entry itself
		}
		checks, err := checkDigests(context.Background(), p, bytes.NewReader(b[p.payloadOff:]), nil, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := firstDigestError(checks); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error class: %v", err)
		}
	})
}
