package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/google/rpmpack"
	bolt "go.etcd.io/bbolt"

	"github.com/repoctl/repoctl/internal/rpmhdr"
	"github.com/repoctl/repoctl/internal/testrpm"
	"github.com/repoctl/repoctl/sign"
)

// rotationFixture is a store with packages in staging and prod: half of
// them roomy (rpmbuild-made with RESERVEDSPACE, or rpmpack-made, which
// ingest rewrites with 4096 bytes to spare), half tight: signed by a
// vendor's EdDSA key with no reserved space, so that ingest signs them in
// place with the ~100 bytes left and the next, larger RSA signature does
// not fit.
type rotationFixture struct {
	root   string
	roomy  []string // NEVRAs
	tight  []string
	prod   []string // NEVRAs promoted to prod
	oldKey string
}

func newRotationFixture(t *testing.T, root string, add func(paths []string), promote func(nevra string)) *rotationFixture {
	t.Helper()
	in := t.TempDir()
	fx := &rotationFixture{root: root}
	var paths []string
	// rpmbuild-made, with RESERVEDSPACE (Archer cannot be installed: its
	// requirements are made up).
	paths = append(paths, "../testdata/hello-1.0-1.el9.noarch.rpm", filepath.Join(corpusDir(t), "Archer-3.4.5-6.x86_64.rpm"))
	fx.roomy = append(fx.roomy, "hello-1.0-1.el9.noarch", "Archer-2:3.4.5-6.x86_64")
	for i := range 2 {
		s := spec(fmt.Sprintf("roomy%d", i), "1", "1.el9", "x86_64")
		paths = append(paths, writeSpec(t, in, s))
		fx.roomy = append(fx.roomy, s.Name+"-1-1.el9.x86_64")
	}
	vendor, err := sign.GenerateKey("ed25519", "Vendor", "vendor@example.test")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		arch := "x86_64"
		if i == 3 {
			arch = "noarch"
		}
		s := spec(fmt.Sprintf("tight%d", i), "2", "1.el9", arch)
		paths = append(paths, writeVendorSigned(t, in, s, vendor))
		fx.tight = append(fx.tight, fmt.Sprintf("%s-2-1.el9.%s", s.Name, arch))
	}
	for _, p := range paths {
		if st := sigArea(t, p); strings.Contains(p, "tight") && st.reserved != 0 {
			t.Fatalf("%s: vendor-signed fixture has %d bytes of reserved space", p, st.reserved)
		}
	}
	add(paths)
	// Every other package also in prod: one inode in two channels.
	for i, n := range append(append([]string(nil), fx.roomy...), fx.tight...) {
		if i%2 == 0 {
			promote(n)
			fx.prod = append(fx.prod, n)
		}
	}
	return fx
}

// writeVendorSigned writes s signed by vendor the way rpmpack signs:
// header and header+payload signatures, no reserved space.
func writeVendorSigned(t *testing.T, dir string, s testrpm.Spec, vendor *sign.Key) string {
	t.Helper()
	r, err := rpmpack.NewRPM(rpmpack.RPMMetaData{Name: s.Name, Version: s.Version, Release: s.Release, Arch: s.Arch, OS: "linux",
		Summary: s.Summary, Description: s.Summary + ".", Licence: "MIT", BuildHost: "vendor.example.test", BuildTime: time.Unix(1700000000, 0)})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range s.Files {
		r.AddFile(rpmpack.RPMFile{Name: f.Name, Body: f.Body, Mode: 0o100644, Owner: "root", Group: "root", MTime: 1700000000})
	}
	r.SetPGPSigner(func(b []byte) ([]byte, error) {
		asc, err := vendor.DetachSignArmored(context.Background(), b)
		if err != nil {
			return nil, err
		}
		blk, err := armor.Decode(bytes.NewReader(asc))
		if err != nil {
			return nil, err
		}
		var out bytes.Buffer
		_, err = out.ReadFrom(blk.Body)
		return out.Bytes(), err
	})
	var b bytes.Buffer
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, s.FileName())
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

type sigInfo struct{ reserved int }

// sigArea reads how much reserved signature space a package has.
func sigArea(t *testing.T, path string) sigInfo {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := rpmhdr.Read(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if e := h.Sig.Get(1008); e != nil { // RESERVEDSPACE
		return sigInfo{reserved: len(e.Data)}
	}
	return sigInfo{}
}

// rpmDB is a throwaway rpm database with the given armored key file
// imported, so that rpmkeys judges signatures against exactly those keys.
func rpmDB(t *testing.T, keyFile []byte) string {
	t.Helper()
	db := t.TempDir()
	kf := filepath.Join(t.TempDir(), "keys.asc")
	if err := os.WriteFile(kf, keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rpmkeys", "--dbpath", db, "--import", kf).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, out)
	}
	return db
}

// importedKeys lists the short ids of the gpg-pubkey packages of an rpm
// database (rpm's own record of imported keys).
func importedKeys(t testing.TB, args ...string) []string {
	t.Helper()
	out, err := exec.Command("rpm", append(args, "-q", "gpg-pubkey", "--qf", "%{VERSION}\n")...).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "not installed") {
		t.Fatalf("rpm -q gpg-pubkey: %v\n%s", err, out)
	}
	var ids []string
	for _, l := range strings.Fields(string(out)) {
		if regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(l) {
			ids = append(ids, l)
		}
	}
	sort.Strings(ids)
	return ids
}

func shortIDs(ids ...string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, id[len(id)-8:])
	}
	sort.Strings(out)
	return out
}

// checkRotated asserts, with the real tools, that every file of the tree
// is signed by newKey only: each placed package passes rpmkeys --checksig
// with only the new public key imported, each repository's repodata names
// the placed file's checksum and size, each repomd.xml.asc passes gpgv with
// the new key, and every placement of a package is one inode.
func checkRotated(t *testing.T, root string, recs []PackageRecord, newPub []byte, newID string) {
	t.Helper()
	db := rpmDB(t, newPub)
	repoDir := filepath.Join(root, "repo")
	for _, p := range recs {
		if p.KeyID != newID {
			t.Errorf("%s: store says key %s, want %s", p.NEVRA, p.KeyID, newID)
		}
		var first os.FileInfo
		for _, pl := range p.Placements {
			f := filepath.Join(repoDir, pl.File)
			out, err := exec.Command("rpmkeys", "--dbpath", db, "--checksig", f).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "digests signatures OK") {
				t.Errorf("rpmkeys --checksig %s with only the new key: %v\n%s", pl.File, err, out)
			}
			fi, err := os.Stat(f)
			if err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = fi
			} else if !os.SameFile(first, fi) {
				t.Errorf("%s: %s is not the same inode as %s", p.NEVRA, pl.File, p.Placements[0].File)
			}
			if got := fileSHA(t, f); got != p.SHA256 || fi.Size() != p.Size {
				t.Errorf("%s: served %s has sha256 %s size %d, the store says %s %d", p.NEVRA, pl.File, got, fi.Size(), p.SHA256, p.Size)
			}
			listed := mustPkgs(t, filepath.Join(repoDir, pl.Dir))
			found := false
			for _, rp := range listed {
				if rp.Location.Href == p.FileName {
					found = true
					if rp.Checksum != p.SHA256 {
						t.Errorf("%s: repodata of %s lists checksum %s, the file is %s", p.NEVRA, pl.Dir, rp.Checksum, p.SHA256)
					}
				}
			}
			if !found {
				t.Errorf("%s: repodata of %s does not list it", p.NEVRA, pl.Dir)
			}
		}
	}
	gh := t.TempDir()
	if err := os.Chmod(gh, 0o700); err != nil {
		t.Fatal(err)
	}
	kr := filepath.Join(gh, "new.gpg")
	pubFile := filepath.Join(gh, "new.asc")
	if err := os.WriteFile(pubFile, newPub, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gpg", "--homedir", gh, "--batch", "--yes", "-o", kr, "--dearmor", pubFile).CombinedOutput(); err != nil {
		t.Fatalf("gpg --dearmor: %v\n%s", err, out)
	}
	n := 0
	if err := filepath.WalkDir(repoDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Name() != "repomd.xml.asc" || strings.Contains(p, "/.") {
			return nil
		}
		n++
		out, err := exec.Command("gpgv", "--homedir", gh, "--keyring", kr, p, strings.TrimSuffix(p, ".asc")).CombinedOutput()
		if err != nil {
			t.Errorf("gpgv %s with the new key: %v\n%s", p, err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("no repomd.xml.asc in the tree")
	}
}

func nevraName(n string) string {
	// name-[e:]v-r.a: the name is all but the last two dash fields.
	parts := strings.Split(n, "-")
	return strings.Join(parts[:len(parts)-2], "-")
}

// TestKeyRotate rotates a store with packages in staging and prod, half
// without reserved signature space, from ed25519 to rsa4096, and checks
// it with rpmkeys, gpgv and dnf: hosts import both keys from the one key
// file, old and new packages install with gpgcheck and repo_gpgcheck, and
// the old key can be retired only once nothing needs it.
func TestKeyRotate(t *testing.T) {
	needTools(t, "rpm", "rpmkeys", "dnf", "gpg", "gpgv")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	fx := newRotationFixture(t, root, func(paths []string) {
		res, err := r.Add(ctx, paths, AddOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range res {
			if x.Action != ActionAdded {
				t.Fatalf("add %s: %+v", x.Path, x)
			}
		}
	}, func(n string) {
		if _, err := r.Promote(ctx, PromoteRequest{Package: n, To: "prod"}); err != nil {
			t.Fatalf("promote %s: %v", n, err)
		}
	})
	oldKey := r.Key()
	oldPub, err := os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	prodURL := "file://" + filepath.Join(root, "repo") + "/"
	prodRepo := func() string {
		t.Helper()
		rf, err := r.RepoFile(ctx, RepoFileOptions{Channel: "prod", Release: "el/9", BaseURL: prodURL})
		if err != nil {
			t.Fatal(err)
		}
		return rf.Render()
	}

	before := map[string]os.FileInfo{}
	recsBefore, err := r.List(ctx, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range recsBefore {
		fi, err := os.Stat(filepath.Join(root, "repo", p.Placements[0].File))
		if err != nil {
			t.Fatal(err)
		}
		before[p.NEVRA] = fi
	}
	// A host that installed before the rotation, with only the old key.
	oldHost := newELHost(t, prodRepo())
	oldHost.install(nevraName(fx.prod[0]))
	if got := oldHost.keys(); !equalStrings(got, shortIDs(oldKey.KeyID())) {
		t.Fatalf("host before the rotation imported %v", got)
	}

	if _, err := r.RetireKey(ctx, KeyRetireRequest{KeyID: oldKey.KeyID()}); !errors.Is(err, ErrKeyInUse) {
		t.Errorf("retiring the active key: %v, want ErrKeyInUse", err)
	}
	dry, err := r.RotateKey(ctx, KeyRotateRequest{Algo: "rsa4096", DryRun: true})
	if err != nil || !dry.DryRun || dry.Packages != len(recsBefore) || dry.NewKeyID != "" {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if r.Key().KeyID() != oldKey.KeyID() {
		t.Fatal("a dry run changed the key")
	}

	// Readers never wait for the rotation (a CLI polls KeyStatus for its
	// progress line), and see the key swap whole.
	stopPoll := make(chan struct{})
	polled := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stopPoll:
				polled <- nil
				return
			default:
			}
			if _, err := r.KeyStatus(ctx); err != nil {
				polled <- err
				return
			}
			if _, err := r.Status(ctx); err != nil {
				polled <- err
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	rot, err := r.RotateKey(ctx, KeyRotateRequest{Algo: "rsa4096", Who: "tester"})
	close(stopPoll)
	if perr := <-polled; perr != nil {
		t.Errorf("reading during the rotation: %v", perr)
	}
	if err != nil {
		t.Fatalf("RotateKey: %v (%+v)", err, rot)
	}
	newKey := r.Key()
	if rot.Phase != phaseDone || rot.OldKeyID != oldKey.KeyID() || rot.NewKeyID != newKey.KeyID() || newKey.Algorithm() != "rsa4096" {
		t.Fatalf("rotation %+v, key now %s %s", rot, newKey.KeyID(), newKey.Algorithm())
	}
	// Each record re-signed once, however many channels hold it.
	if rot.Resigned != len(recsBefore) || rot.InPlace != len(fx.roomy) || rot.Rewritten != len(fx.tight) {
		t.Errorf("re-signed %d (%d in place, %d rewritten), want %d (%d, %d)", rot.Resigned, rot.InPlace, rot.Rewritten,
			len(recsBefore), len(fx.roomy), len(fx.tight))
	}
	recs, err := r.List(ctx, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range recs {
		fi, err := os.Stat(filepath.Join(root, "repo", p.Placements[0].File))
		if err != nil {
			t.Fatal(err)
		}
		tight := false
		for _, n := range fx.tight {
			tight = tight || n == p.NEVRA
		}
		switch {
		case tight && (os.SameFile(fi, before[p.NEVRA]) || fi.Size() == before[p.NEVRA].Size()):
			t.Errorf("%s has no room for an RSA signature, yet was not rewritten", p.NEVRA)
		case !tight && (!os.SameFile(fi, before[p.NEVRA]) || fi.Size() != before[p.NEVRA].Size()):
			t.Errorf("%s had room to spare, yet was rewritten", p.NEVRA)
		}
	}
	full, err := r.List(ctx, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkRotated(t, root, full, mustPublic(t, newKey), newKey.KeyID())

	// The served key file holds both keys, and rpm imports both.
	served, err := os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := sign.ReadKeyring(bytes.NewReader(served))
	if err != nil || len(ring) != 2 || ring[0].KeyID() != newKey.KeyID() || ring[1].KeyID() != oldKey.KeyID() {
		t.Fatalf("served keyring %v %v", ring, err)
	}
	if got := importedKeys(t, "--dbpath", rpmDB(t, served)); !equalStrings(got, shortIDs(oldKey.KeyID(), newKey.KeyID())) {
		t.Errorf("rpmkeys --import of %s imported %v", PublicKeyFile, got)
	}
	if bytes.Equal(served, oldPub) {
		t.Fatal("key file unchanged")
	}
	// The old private key is kept outside the served tree, 0600.
	if fi, err := os.Stat(filepath.Join(root, "keys", "old", oldKey.KeyID()+".asc")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("old private key: %v %v", fi, err)
	}

	// A package added after the rotation, promoted to prod.
	late := writeSpec(t, t.TempDir(), spec("late", "1", "1.el9", "x86_64"))
	if res, err := r.Add(ctx, []string{late}, AddOptions{}); err != nil || res[0].KeyID != newKey.KeyID() {
		t.Fatalf("add after rotation: %+v %v", res, err)
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "late-1-1.el9.x86_64", To: "prod"}); err != nil {
		t.Fatal(err)
	}
	// A new host imports both keys from the one gpgkey= URL and installs
	// old (re-signed, rewritten and in place) and new packages.
	host := newELHost(t, prodRepo())
	var names []string
	for _, n := range fx.prod {
		names = append(names, nevraName(n))
	}
	host.install(append(names, "late")...)
	if got := host.keys(); !equalStrings(got, shortIDs(oldKey.KeyID(), newKey.KeyID())) {
		t.Errorf("dnf imported %v from %s, want both keys", got, PublicKeyFile)
	}
	// The host from before the rotation fetches the key file again for the
	// new key and goes on installing.
	oldHost.install("late")
	if got := oldHost.keys(); !equalStrings(got, shortIDs(oldKey.KeyID(), newKey.KeyID())) {
		t.Errorf("existing host has keys %v after the rotation", got)
	}

	// Events name both keys.
	evs, err := r.History(ctx, HistoryOptions{Action: "key", Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	phases := map[string]bool{}
	for _, e := range evs {
		if e.Action == EventKeyRotate && e.Details["old_key_id"] == oldKey.KeyID() && e.Details["new_key_id"] == newKey.KeyID() {
			phases[e.Details["phase"]] = true
			if e.Who != "tester" {
				t.Errorf("rotation event by %q", e.Who)
			}
		}
	}
	if !phases["started"] || !phases["finished"] {
		t.Errorf("rotation events %+v", evs)
	}
	signs, err := r.History(ctx, HistoryOptions{Action: EventSign})
	if err != nil {
		t.Fatal(err)
	}
	resigned := 0
	for _, e := range signs {
		if e.Details["old_key_id"] == oldKey.KeyID() && e.Details["key_id"] == newKey.KeyID() {
			resigned++
		}
	}
	if resigned != len(recsBefore) {
		t.Errorf("%d sign events name both keys, want %d", resigned, len(recsBefore))
	}
	rep, err := r.Fsck(ctx, FsckOptions{})
	if err != nil || rep.Err() != nil {
		t.Errorf("fsck after the rotation: %v %+v", err, rep)
	}

	// A repomd.xml.asc by the old key anywhere keeps the old key needed.
	dir := filepath.Join(root, "repo", fx.dirOf(t, recs, fx.roomy[0], "staging"))
	ascPath := filepath.Join(dir, "repodata", "repomd.xml.asc")
	good, err := os.ReadFile(ascPath)
	if err != nil {
		t.Fatal(err)
	}
	repomd, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	oldSigner, err := sign.LoadKeyFile(filepath.Join(root, "keys", "old", oldKey.KeyID()+".asc"), nil)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := oldSigner.DetachSignArmored(ctx, repomd)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ascPath, stale, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RetireKey(ctx, KeyRetireRequest{KeyID: oldKey.KeyID()}); !errors.Is(err, ErrKeyInUse) || !strings.Contains(err.Error(), "repomd.xml.asc") {
		t.Errorf("retire while a repomd.xml.asc is by the old key: %v", err)
	}
	if err := os.WriteFile(ascPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.RetireKey(ctx, KeyRetireRequest{KeyID: "0123456789abcdef"}); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("retire of an unknown key: %v", err)
	}
	res, err := r.RetireKey(ctx, KeyRetireRequest{KeyID: shortIDs(oldKey.KeyID())[0]})
	if err != nil || res.KeyID != oldKey.KeyID() || !equalStrings(res.Served, []string{newKey.KeyID()}) {
		t.Fatalf("retire: %+v %v", res, err)
	}
	served, err = os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := importedKeys(t, "--dbpath", rpmDB(t, served)); !equalStrings(got, shortIDs(newKey.KeyID())) {
		t.Errorf("after retire, %s holds %v", PublicKeyFile, got)
	}
	newELHost(t, prodRepo()).install(names[0], "late")
	// The retired key stays retired when the store is opened again.
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openPL(t, root)
	st, err := r.KeyStatus(ctx)
	if err != nil || len(st.Keys) != 1 || st.Keys[0].KeyID != newKey.KeyID() || st.Rotation != nil || st.Keys[0].Packages != len(recsBefore)+1 {
		t.Errorf("key status after reopening: %+v %v", st, err)
	}
}

func (fx *rotationFixture) dirOf(t *testing.T, recs []PackageRecord, nevra, channel string) string {
	for _, p := range recs {
		if p.NEVRA == nevra {
			for _, pl := range p.Placements {
				if pl.Channel == channel {
					return pl.Dir
				}
			}
		}
	}
	t.Fatalf("%s is not in %s", nevra, channel)
	return ""
}

func mustPublic(t *testing.T, k *sign.Key) []byte {
	b, err := k.PublicArmored()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, " ") == strings.Join(b, " ")
}

// TestKeyChangedInConfig is the old way of rotating: pointing [signing]
// key at another key file. The old public key stays served and the store
// is rotated to the new key.
func TestKeyChangedInConfig(t *testing.T) {
	needTools(t, "rpmkeys")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	p := writeSpec(t, t.TempDir(), spec("cfg", "1", "1.el9", "x86_64"))
	if _, err := r.Add(ctx, []string{p}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	oldID := r.Key().KeyID()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	kdir := filepath.Join(t.TempDir(), "k")
	other, err := sign.GenerateKeyFiles("ed25519", "Other", "other@example.test", kdir)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(plConfig, "[signing]\n", "[signing]\nkey = \""+filepath.Join(kdir, "signing.asc")+"\"\n", 1)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var notes []string
	r = openPL(t, root, WithNotify(func(m string) { notes = append(notes, m) }))
	if r.Key().KeyID() != other.KeyID() {
		t.Fatalf("key %s, want the configured %s", r.Key().KeyID(), other.KeyID())
	}
	served, err := os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := importedKeys(t, "--dbpath", rpmDB(t, served)); !equalStrings(got, shortIDs(oldID, other.KeyID())) {
		t.Errorf("after the config change, %s holds %v", PublicKeyFile, got)
	}
	if len(notes) == 0 || !strings.Contains(strings.Join(notes, "\n"), "key rotate --resume") {
		t.Errorf("no notice of the unfinished rotation: %q", notes)
	}
	if _, err := r.RotateKey(ctx, KeyRotateRequest{}); !errors.Is(err, ErrRotationUnfinished) {
		t.Errorf("a new rotation during one: %v", err)
	}
	rot, err := r.RotateKey(ctx, KeyRotateRequest{Resume: true})
	if err != nil || rot == nil || rot.Reason != reasonConfig || rot.Resigned != 1 || rot.OldKeyID != oldID {
		t.Fatalf("resume: %+v %v", rot, err)
	}
	recs, err := r.List(ctx, ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	full := make([]PackageRecord, 0, len(recs))
	for _, p := range recs {
		full = append(full, p)
	}
	if len(full) != 1 || full[0].KeyID != other.KeyID() {
		t.Errorf("records %+v", full)
	}
	db := rpmDB(t, mustPublic(t, other))
	for _, pl := range full[0].Placements {
		out, err := exec.Command("rpmkeys", "--dbpath", db, "--checksig", filepath.Join(root, "repo", pl.File)).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "digests signatures OK") {
			t.Errorf("rpmkeys %s: %v %s", pl.File, err, out)
		}
	}
	// With a configured key file, `key rotate` leaves the key to the admin.
	if _, err := r.RotateKey(ctx, KeyRotateRequest{}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("rotate with [signing] key set: %v, want ErrBadConfig", err)
	}
}

// TestRotateCrashHelper is not a test on its own: TestKeyRotateKilled runs
// the test binary with REPOCTL_ROT_CRASH_AT=STATE:N, and this rotates the
// store and SIGKILLs itself the N-th time the rotation reaches STATE.
func TestRotateCrashHelper(t *testing.T) {
	at := os.Getenv("REPOCTL_ROT_CRASH_AT")
	if at == "" {
		return // only meaningful as a helper process
	}
	state, nth, _ := strings.Cut(at, ":")
	n, err := strconv.Atoi(nth)
	if err != nil {
		t.Fatal(err)
	}
	rotateBatch = 2
	r, err := Open(context.Background(), os.Getenv("REPOCTL_ROT_ROOT"))
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	failpoint = func(s string) error {
		if s == state {
			if hits++; hits >= n {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Minute)
			}
		}
		return nil
	}
	r.RotateKey(context.Background(), KeyRotateRequest{Algo: "rsa3072"})
	t.Fatal("not killed")
}

// TestKeyRotateKilled kills a real rotation with SIGKILL at each of its
// steps (after the key is recorded but before it is installed; with a
// batch signed but not recorded; recorded but not published) and finishes
// it by restarting the daemon or by `repoctl key rotate --resume`: then
// every file is valid with the new key, hard links are still one inode, a
// host that imported the key file installs old and new packages, and the
// old key can be retired only after that.
func TestKeyRotateKilled(t *testing.T) {
	needTools(t, "rpm", "rpmkeys", "dnf", "gpg", "gpgv")
	for _, c := range []struct {
		state  string
		nth    int
		daemon bool
	}{
		{"rotate.signed", 2, true},
		{"rotate.install", 1, false},
		{"rotate.recorded", 3, false},
	} {
		t.Run(c.state, func(t *testing.T) {
			root, url := newTestRoot(t, plConfig)
			ctx := context.Background()
			r := openPL(t, root)
			newRotationFixture(t, root, func(paths []string) {
				if _, err := r.Add(ctx, paths, AddOptions{}); err != nil {
					t.Fatal(err)
				}
			}, func(n string) {
				if _, err := r.Promote(ctx, PromoteRequest{Package: n, To: "prod"}); err != nil {
					t.Fatal(err)
				}
			})
			oldID := r.Key().KeyID()
			total, err := r.List(ctx, ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}

			cmd := exec.Command(os.Args[0], "-test.run=^TestRotateCrashHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), "REPOCTL_ROT_CRASH_AT="+c.state+":"+strconv.Itoa(c.nth), "REPOCTL_ROT_ROOT="+root)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper was not killed: %v\n%s", err, out)
			}

			// Killed: both keys served, the rotation recorded, retire refused.
			served, err := os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			ring, err := sign.ReadKeyring(bytes.NewReader(served))
			if err != nil || len(ring) != 2 {
				t.Fatalf("served keys after the kill: %v %v", ring, err)
			}
			newID := ring[0].KeyID()
			if ring[1].KeyID() != oldID {
				t.Fatalf("served keys %s %s, want the new one and %s", newID, ring[1].KeyID(), oldID)
			}
			sout, _, code := runCLI(t, root, "-o", "json", "key", "status")
			var ks KeyStatus
			if code != 0 || json.Unmarshal([]byte(sout), &ks) != nil || ks.Rotation == nil || ks.Rotation.NewKeyID != newID {
				t.Fatalf("key status after the kill: exit %d %s", code, sout)
			}
			_, errOut, code := runCLI(t, root, "key", "retire", oldID)
			if code != 3 || !strings.Contains(errOut, "unfinished") {
				t.Errorf("retire during the rotation: exit %d %s", code, errOut)
			}
			if _, errOut, code := runCLI(t, root, "key", "rotate", "--algo", "ed25519"); code != 4 || !strings.Contains(errOut, "--resume") {
				t.Errorf("a new rotation during one: exit %d %s, want 4", code, errOut)
			}

			repofile := func(base string) string {
				t.Helper()
				rf, e, code := runCLI(t, root, "repofile", "--channel", "prod", "--release", "el/9")
				if code != 0 {
					t.Fatalf("repofile: %d %s", code, e)
				}
				// Without a daemon nothing serves HTTP: the host reads the tree.
				return strings.ReplaceAll(rf, url, base)
			}
			var host *elHost
			if c.state == "rotate.install" {
				// Mid-rotation, every file still carries the old key's
				// signatures: a host that imports the transition key file
				// (both keys, the new one first) verifies them.
				host = newELHost(t, repofile("file://"+filepath.Join(root, "repo")+"/"))
				host.install("hello")
				if got := host.keys(); !equalStrings(got, shortIDs(oldID, newID)) {
					t.Errorf("host imported %v mid-rotation, want both keys", got)
				}
			}

			if c.daemon {
				d := startDaemon(t, root)
				deadline := time.Now().Add(5 * time.Minute)
				for {
					sout, _, _ := runCLI(t, root, "-o", "json", "key", "status")
					var ks KeyStatus
					if json.Unmarshal([]byte(sout), &ks) == nil && ks.Rotation == nil && ks.Active == newID {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the daemon did not finish the rotation: %s", sout)
					}
					time.Sleep(200 * time.Millisecond)
				}
				if !strings.Contains(d.log(), "resumed key rotation finished") {
					t.Errorf("daemon log does not say it finished the rotation")
				}
				defer d.stop()
			} else {
				sout, errOut, code := runCLI(t, root, "-o", "json", "key", "rotate", "--resume")
				var rot KeyRotation
				if code != 0 || json.Unmarshal([]byte(sout), &rot) != nil || rot.Phase != phaseDone || rot.NewKeyID != newID {
					t.Fatalf("key rotate --resume: exit %d %s %s", code, sout, errOut)
				}
			}

			var recs []PackageRecord
			if c.daemon {
				sock, err := Dial(ctx, filepath.Join(root, "repoctl.sock"), time.Second)
				if err != nil {
					t.Fatal(err)
				}
				recs, err = sock.List(ctx, ListOptions{})
				if err := sock.Close(); err != nil {
					t.Fatal(err)
				}
				if err != nil {
					t.Fatal(err)
				}
				// List leaves out the entries; the rest is what is checked.
			} else {
				rr := openPL(t, root)
				var err error
				recs, err = rr.List(ctx, ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if err := rr.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if len(recs) != len(total) {
				t.Fatalf("%d packages after the rotation, %d before", len(recs), len(total))
			}
			checkRotated(t, root, recs, []byte(ringPublic(t, ring[0])), newID)
			if out, e, code := runCLI(t, root, "fsck"); code != 0 {
				t.Errorf("fsck after the resumed rotation: exit %d\n%s%s", code, out, e)
			}

			// A host that imported the key file installs old and new packages.
			base := "file://" + filepath.Join(root, "repo") + "/"
			if c.daemon {
				base = url
			}
			late := writeSpec(t, t.TempDir(), spec("late", "1", "1.el9", "noarch"))
			if _, e, code := runCLI(t, root, "add", late); code != 0 {
				t.Fatalf("add after the rotation: %d %s", code, e)
			}
			if _, e, code := runCLI(t, root, "promote", "late-1-1.el9.noarch", "--to", "prod", "--yes"); code != 0 {
				t.Fatalf("promote: %d %s", code, e)
			}
			if host == nil {
				host = newELHost(t, repofile(base))
			}
			host.install("hello", "roomy0", "tight0", "late")
			if got := host.keys(); !equalStrings(got, shortIDs(oldID, newID)) {
				t.Errorf("host imported %v", got)
			}
			if out, e, code := runCLI(t, root, "key", "retire", oldID); code != 0 || !strings.Contains(out, "retired key "+oldID) {
				t.Errorf("retire after the rotation: exit %d %s %s", code, out, e)
			}
		})
	}
}

func ringPublic(t *testing.T, k *sign.Key) string {
	b, err := k.PublicArmored()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestKeyringFromOlderStore opens roots an older repoctl left: one with
// its key in keys/signing.asc opens unchanged; one whose [signing] key was
// changed while the older repoctl ran (so RPM-GPG-KEY-repoctl already holds
// only the new key) gets the old public key back from keys/ and a rotation.
func TestKeyringFromOlderStore(t *testing.T) {
	needTools(t, "rpmkeys")
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	p := writeSpec(t, t.TempDir(), spec("old", "1", "1.el9", "x86_64"))
	if _, err := r.Add(ctx, []string{p}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	oldID := r.Key().KeyID()
	servedPath := filepath.Join(root, "repo", PublicKeyFile)
	servedBefore, err := os.ReadFile(servedPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	dropKeyring := func() {
		t.Helper()
		db, err := bolt.Open(filepath.Join(root, "repoctl.db"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaKeyRing) }); err != nil {
			t.Fatal(err)
		}
	}

	dropKeyring()
	r = openPL(t, root)
	st, err := r.KeyStatus(ctx)
	if err != nil || st.Active != oldID || len(st.Keys) != 1 || st.Rotation != nil || st.Keys[0].Packages != 1 {
		t.Fatalf("older store: %+v %v", st, err)
	}
	b, err := os.ReadFile(servedPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, servedBefore) {
		t.Errorf("%s changed on opening an older store", PublicKeyFile)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	// The older repoctl, pointed at another key, served only that one.
	kdir := filepath.Join(t.TempDir(), "k")
	other, err := sign.GenerateKeyFiles("ed25519", "Other", "other@example.test", kdir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(servedPath, mustPublic(t, other), 0o644); err != nil {
		t.Fatal(err)
	}
	dropKeyring()
	cfg := strings.Replace(plConfig, "[signing]\n", "[signing]\nkey = \""+filepath.Join(kdir, "signing.asc")+"\"\n", 1)
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r = openPL(t, root)
	st, err = r.KeyStatus(ctx)
	if err != nil || st.Active != other.KeyID() || len(st.Keys) != 2 || st.Keys[1].KeyID != oldID || st.Rotation == nil ||
		st.Rotation.OldKeyID != oldID || st.Rotation.Reason != reasonConfig {
		t.Fatalf("older store with a changed key: %+v %v", st, err)
	}
	served, err := os.ReadFile(servedPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := importedKeys(t, "--dbpath", rpmDB(t, served)); !equalStrings(got, shortIDs(oldID, other.KeyID())) {
		t.Errorf("%s holds %v, want the old key back beside the new one", PublicKeyFile, got)
	}
}

// TestKeyRotateThroughDaemon runs key rotate, status and retire with the
// real binary against a running daemon, which does the work over its
// socket, and checks the exit codes of the refusals.
func TestKeyRotateThroughDaemon(t *testing.T) {
	needTools(t, "rpmkeys")
	root, _ := newTestRoot(t, plConfig)
	d := startDaemon(t, root)
	defer d.stop()
	p := writeSpec(t, t.TempDir(), spec("viad", "1", "1.el9", "x86_64"))
	if _, e, code := runCLI(t, root, "add", p); code != 0 {
		t.Fatalf("add: %d %s", code, e)
	}
	if _, e, code := runCLI(t, root, "key", "rotate", "--resume", "--algo", "ed25519"); code != 2 {
		t.Errorf("--resume with --algo: exit %d %s, want 2", code, e)
	}
	out, e, code := runCLI(t, root, "key", "rotate", "--dry-run")
	if code != 0 || !strings.Contains(out, "would rotate the signing key from") || !strings.Contains(out, "re-sign 1 packages") {
		t.Fatalf("rotate --dry-run: %d %s %s", code, out, e)
	}
	out, e, code = runCLI(t, root, "-o", "json", "key", "rotate", "--algo", "ed25519")
	var rot KeyRotation
	if code != 0 || json.Unmarshal([]byte(out), &rot) != nil || rot.Phase != phaseDone || rot.Resigned != 1 || rot.By != CurrentUser() {
		t.Fatalf("rotate: %d %s %s", code, out, e)
	}
	if !strings.Contains(d.log(), `"method":"key-rotate"`) {
		t.Error("the rotation did not go through the daemon's socket")
	}
	out, _, code = runCLI(t, root, "key", "status")
	if code != 0 || !strings.Contains(out, rot.NewKeyID) || !strings.Contains(out, rot.OldKeyID) || !strings.Contains(out, "active") {
		t.Errorf("key status: %d %s", code, out)
	}
	if _, e, code := runCLI(t, root, "key", "retire", rot.NewKeyID); code != 3 || !strings.Contains(e, "active signing key") {
		t.Errorf("retire of the active key: exit %d %s, want 3", code, e)
	}
	out, e, code = runCLI(t, root, "key", "retire", rot.OldKeyID)
	if code != 0 || !strings.Contains(out, "retired key "+rot.OldKeyID) {
		t.Errorf("retire: %d %s %s", code, out, e)
	}
	if _, e, code := runCLI(t, root, "key", "retire", rot.OldKeyID); code != 2 || !strings.Contains(e, "no such served key") {
		t.Errorf("retire again: exit %d %s, want 2", code, e)
	}
	served, err := os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := importedKeys(t, "--dbpath", rpmDB(t, served)); !equalStrings(got, shortIDs(rot.NewKeyID)) {
		t.Errorf("%s holds %v after retire", PublicKeyFile, got)
	}
	var recs []PackageRecord
	out, _, _ = runCLI(t, root, "-o", "json", "list")
	if json.Unmarshal([]byte(out), &recs) != nil || len(recs) != 1 {
		t.Fatalf("list: %s", out)
	}
	checkRotated(t, root, recs, served, rot.NewKeyID)
}
