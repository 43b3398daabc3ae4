package metadata

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const testComps = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<comps>
  <group>
    <id>app-stack</id>
    <name>App stack</name>
    <description>The app</description>
    <default>false</default>
    <uservisible>true</uservisible>
    <packagelist>
      <packagereq type="mandatory">Rimmer</packagereq>
    </packagelist>
  </group>
</comps>
`

func readRepomd(t *testing.T, dir string) *Repomd {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	md, err := ParseRepomd(raw)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// TestExtraRecordsMatchCreaterepoCGroups publishes comps the way
// createrepo_c -g does and compares repomd.xml record by record with
// createrepo_c's own output for the same files: types and their order,
// the verbatim group file's checksum and size, and group_gz's open
// checksum (gzip bytes differ between zlib and Go, what they hold must not).
func TestExtraRecordsMatchCreaterepoCGroups(t *testing.T) {
	src := sharedCorpus(t)
	theirs, ours := t.TempDir(), t.TempDir()
	copyRPMs(t, src, theirs)
	copyRPMs(t, src, ours)
	comps := filepath.Join(t.TempDir(), "comps.xml")
	if err := os.WriteFile(comps, []byte(testComps), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("createrepo_c", "--no-database", "--compress-type", "gz", "-g", comps, theirs)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c -g: %v\n%s", err, b)
	}
	_, err := CreateRepo(context.Background(), ours, WithPublishOptions(WithCompression("gz"), WithExtraRecords(
		ExtraRecord{Type: "group", Name: "comps.xml", Data: []byte(testComps)},
		ExtraRecord{Type: "group_gz", Name: "comps.xml", Data: []byte(testComps), Compress: true},
	)))
	if err != nil {
		t.Fatal(err)
	}
	want, got := readRepomd(t, theirs), readRepomd(t, ours)
	if len(want.Records) != len(got.Records) {
		t.Fatalf("records: createrepo_c has %d, we have %d", len(want.Records), len(got.Records))
	}
	for i, w := range want.Records {
		g := got.Records[i]
		if w.Type != g.Type || w.OpenChecksum != g.OpenChecksum || w.OpenSize != g.OpenSize {
			t.Errorf("record %d: createrepo_c %s open %s/%d, ours %s open %s/%d", i, w.Type, w.OpenChecksum, w.OpenSize, g.Type, g.OpenChecksum, g.OpenSize)
		}
		if w.Type == "group" && (w.Checksum != g.Checksum || w.Size != g.Size || w.Href != g.Href) {
			t.Errorf("group: createrepo_c %s %d %s, ours %s %d %s", w.Checksum, w.Size, w.Href, g.Checksum, g.Size, g.Href)
		}
		if _, err := os.Stat(filepath.Join(ours, g.Href)); err != nil {
			t.Errorf("record %s names a missing file: %v", g.Type, err)
		}
	}
	// A second publish with the same extras changes nothing.
	before, err := os.ReadFile(filepath.Join(ours, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := CreateRepo(context.Background(), ours, WithUpdate(true), WithPublishOptions(WithCompression("gz"), WithExtraRecords(
		ExtraRecord{Type: "group", Name: "comps.xml", Data: []byte(testComps)},
		ExtraRecord{Type: "group_gz", Name: "comps.xml", Data: []byte(testComps), Compress: true},
	))); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(filepath.Join(ours, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("republishing the same extras rewrote repomd.xml")
	}
}

// TestExtraRecordsMatchModifyrepoC adds an updateinfo file with
// modifyrepo_c and with WithExtraRecords and compares the records.
func TestExtraRecordsMatchModifyrepoC(t *testing.T) {
	src := sharedCorpus(t)
	theirs, ours := t.TempDir(), t.TempDir()
	copyRPMs(t, src, theirs)
	copyRPMs(t, src, ours)
	ui := []byte("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<updates/>\n")
	uiFile := filepath.Join(t.TempDir(), "updateinfo.xml")
	if err := os.WriteFile(uiFile, ui, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("createrepo_c", "--no-database", theirs).CombinedOutput(); err != nil {
		t.Fatalf("createrepo_c: %v\n%s", err, b)
	}
	if b, err := exec.Command("modifyrepo_c", "--mdtype", "updateinfo", uiFile, filepath.Join(theirs, "repodata")).CombinedOutput(); err != nil {
		t.Fatalf("modifyrepo_c: %v\n%s", err, b)
	}
	if _, err := CreateRepo(context.Background(), ours, WithPublishOptions(WithExtraCompression("gz"),
		WithExtraRecords(ExtraRecord{Type: "updateinfo", Name: "updateinfo.xml", Data: ui, Compress: true}))); err != nil {
		t.Fatal(err)
	}
	w, g := readRepomd(t, theirs).Record("updateinfo"), readRepomd(t, ours).Record("updateinfo")
	if w == nil || g == nil {
		t.Fatalf("updateinfo record: modifyrepo_c %v, ours %v", w, g)
	}
	if w.OpenChecksum != g.OpenChecksum || w.OpenSize != g.OpenSize || filepath.Ext(w.Href) != filepath.Ext(g.Href) {
		t.Errorf("modifyrepo_c %+v\nours          %+v", *w, *g)
	}
}

func TestExtraRecordsRefuseBadNames(t *testing.T) {
	for _, r := range []ExtraRecord{
		{Type: "primary", Name: "x.xml"},
		{Type: "group", Name: "../comps.xml"},
		{Type: "group", Name: "repomd.xml"},
		{Type: "Group", Name: "comps.xml"},
		{Type: "group", Name: ""},
	} {
		if _, err := newPublishConfig([]PublishOption{WithExtraRecords(r)}); !errors.Is(err, ErrBadOption) {
			t.Errorf("%+v: err %v, want ErrBadOption", r, err)
		}
	}
	if _, err := newPublishConfig([]PublishOption{WithExtraRecords(ExtraRecord{Type: "group", Name: "a.xml"}, ExtraRecord{Type: "group", Name: "b.xml"})}); !errors.Is(err, ErrBadOption) {
		t.Errorf("duplicate type: err %v", err)
	}
}
