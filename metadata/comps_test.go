package metadata

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/nevra"
)

// fullComps has what real comps files carry besides groups: translations,
// categories, environments, langpacks, comments, a DOCTYPE, conditional
// packages and elements libcomps knows and we do not look at.
const fullComps = "\ufeff" + `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE comps PUBLIC "-//Red Hat, Inc.//DTD Comps info//EN" "comps.dtd">
<!-- generated -->
<comps>
  <group>
    <id>app-stack</id>
    <name>App stack</name>
    <name xml:lang="de">App-Stapel</name>
    <description>The app &amp; its agent</description>
    <default>true</default>
    <uservisible>true</uservisible>
    <display_order>10</display_order>
    <packagelist>
      <packagereq type="mandatory">app</packagereq>
      <packagereq type="default">app-agent</packagereq>
      <packagereq>app-docs</packagereq>
      <packagereq type="optional">perl-App_Tool+x</packagereq>
      <packagereq type="conditional" requires="app">app-langpack-de</packagereq>
    </packagelist>
  </group>
  <group>
    <id>ops_tools.2</id>
    <name>Ops</name>
    <packagelist/>
  </group>
  <category>
    <id>apps</id>
    <name>Applications</name>
    <grouplist><groupid>app-stack</groupid></grouplist>
  </category>
  <environment>
    <id>app-server</id>
    <name>App server</name>
    <grouplist><groupid>app-stack</groupid></grouplist>
    <optionlist><groupid>ops_tools.2</groupid></optionlist>
  </environment>
  <langpacks>
    <match install="app-langpack-%s" name="app"/>
  </langpacks>
</comps>
`

func TestParseCompsAccepts(t *testing.T) {
	c, err := ParseComps([]byte(fullComps))
	if err != nil {
		t.Fatal(err)
	}
	if ids := c.GroupIDs(); !slices.Equal(ids, []string{"app-stack", "ops_tools.2"}) {
		t.Errorf("group ids %v", ids)
	}
	if g := c.Groups[0]; g.Name != "App stack" || len(g.Packages) != 5 || g.Packages[1] != (CompsPackage{Name: "app-agent", Type: "default"}) || g.Packages[2].Type != "" {
		t.Errorf("group 0: %+v", g)
	}
	if !slices.Equal(c.Categories, []string{"apps"}) || !slices.Equal(c.Environments, []string{"app-server"}) {
		t.Errorf("categories %v, environments %v", c.Categories, c.Environments)
	}
	for _, f := range []string{testComps, readTestdata(t, "comps/comps.xml")} {
		if _, err := ParseComps([]byte(f)); err != nil {
			t.Errorf("%v\n%s", err, f)
		}
	}
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// compsWith is a valid one-group file with body inside <comps>.
func compsWith(body string) string {
	return "<comps><group><id>g</id><name>G</name></group>" + body + "</comps>"
}

func TestParseCompsMalformed(t *testing.T) {
	group := func(inner string) string { return "<comps><group>" + inner + "</group></comps>" }
	pkg := func(req string) string {
		return group("<id>g</id><name>G</name><packagelist>" + req + "</packagelist>")
	}
	deep := strings.Repeat("<x>", 40) + strings.Repeat("</x>", 40)
	many := func(n int, f func(i int) string) string {
		var b strings.Builder
		b.WriteString("<comps>")
		for i := range n {
			b.WriteString(f(i))
		}
		b.WriteString("</comps>")
		return b.String()
	}
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"empty", "", ErrCompsStructure},
		{"only whitespace", " \n", ErrCompsStructure},
		{"not xml", "comps", ErrCompsStructure},
		{"binary", "\x1f\x8b\x08\x00", ErrCompsSyntax},
		{"invalid utf-8", compsWith("<!-- \xff -->"), ErrCompsSyntax},
		{"unclosed", "<comps><group>", ErrCompsSyntax},
		{"mismatched", "<comps></group>", ErrCompsSyntax},
		{"undefined entity", compsWith("<x>&foo;</x>"), ErrCompsSyntax},
		{"latin-1 declared", `<?xml version="1.0" encoding="ISO-8859-1"?>` + compsWith(""), ErrCompsSyntax},
		{"escape in comment", compsWith("<!-- \x1b[2J -->"), ErrCompsSyntax},
		{"C1 control", compsWith("<x>\u009b</x>"), ErrCompsSyntax},
		{"C1 by reference", compsWith("<x>&#x9b;</x>"), ErrCompsSyntax},
		{"DEL in attribute", compsWith(`<x a="` + "\x7f" + `"/>`), ErrCompsSyntax},
		{"wrong root", "<groups><group><id>g</id><name>G</name></group></groups>", ErrCompsStructure},
		{"namespaced root", `<comps xmlns="urn:x"><group><id>g</id><name>G</name></group></comps>`, ErrCompsStructure},
		{"second root", compsWith("") + "<comps/>", ErrCompsStructure},
		{"text after root", compsWith("") + "trailing", ErrCompsStructure},
		{"text before root", "x" + compsWith(""), ErrCompsStructure},
		{"internal subset", `<!DOCTYPE comps [ <!ELEMENT comps ANY> ]>` + compsWith(""), ErrCompsEntity},
		{"entity declaration", `<!DOCTYPE comps [ <!ENTITY x "y"> ]>` + compsWith("<x>&x;</x>"), ErrCompsEntity},
		{"external entity", `<!DOCTYPE comps [ <!ENTITY x SYSTEM "file:///etc/passwd"> ]>` + compsWith("<x>&x;</x>"), ErrCompsEntity},
		{"parameter entity", `<!DOCTYPE comps [ <!ENTITY % p SYSTEM "http://x/"> %p; ]>` + compsWith(""), ErrCompsEntity},
		{"the word entity in a DOCTYPE", `<!DOCTYPE comps SYSTEM "entity.dtd">` + compsWith(""), ErrCompsEntity},
		{"directive inside", compsWith("<!DOCTYPE comps>"), ErrCompsStructure},
		{"other directive", `<!ELEMENT comps ANY>` + compsWith(""), ErrCompsStructure},
		{"no groups", "<comps><category><id>c</id></category></comps>", ErrCompsEmpty},
		{"empty comps", "<comps/>", ErrCompsEmpty},
		{"group without id", group("<name>G</name>"), ErrCompsID},
		{"empty id", group("<id></id><name>G</name>"), ErrCompsID},
		{"id with slash", group("<id>../g</id><name>G</name>"), ErrCompsID},
		{"id with space", group("<id>g g</id><name>G</name>"), ErrCompsID},
		{"id padded", group("<id> g</id><name>G</name>"), ErrCompsID},
		{"id with shell", group("<id>g;rm</id><name>G</name>"), ErrCompsID},
		{"id with dollar", group("<id>$(x)</id><name>G</name>"), ErrCompsID},
		{"id starting with dash", group("<id>-g</id><name>G</name>"), ErrCompsID},
		{"id too long", group("<id>" + strings.Repeat("g", 129) + "</id><name>G</name>"), ErrCompsID},
		{"id with newline", group("<id>g\nx</id><name>G</name>"), ErrCompsID},
		{"two ids", group("<id>g</id><id>h</id><name>G</name>"), ErrCompsStructure},
		{"no name", group("<id>g</id>"), ErrCompsStructure},
		{"translated name only", group(`<id>g</id><name xml:lang="de">G</name>`), ErrCompsStructure},
		{"duplicate group", compsWith("<group><id>g</id><name>H</name></group>"), ErrCompsDuplicate},
		{"duplicate category", compsWith("<category><id>c</id></category><category><id>c</id></category>"), ErrCompsDuplicate},
		{"category without id", compsWith("<category><name>C</name></category>"), ErrCompsID},
		{"bad category id", compsWith("<category><id>c/d</id></category>"), ErrCompsID},
		{"bad environment id", compsWith("<environment><id>e e</id></environment>"), ErrCompsID},
		{"bad groupid", compsWith("<category><id>c</id><grouplist><groupid>a b</groupid></grouplist></category>"), ErrCompsID},
		{"package with slash", pkg("<packagereq>../../etc/x</packagereq>"), ErrCompsPackage},
		{"package with space", pkg("<packagereq>a b</packagereq>"), ErrCompsPackage},
		{"package padded", pkg("<packagereq> a</packagereq>"), ErrCompsPackage},
		{"empty package", pkg("<packagereq></packagereq>"), ErrCompsPackage},
		{"package with macro", pkg("<packagereq>%{x}</packagereq>"), ErrCompsPackage},
		{"package too long", pkg("<packagereq>" + strings.Repeat("p", 129) + "</packagereq>"), ErrCompsPackage},
		{"package type", pkg(`<packagereq type="always">a</packagereq>`), ErrCompsPackage},
		{"conditional requires", pkg(`<packagereq type="conditional" requires="a/b">a</packagereq>`), ErrCompsPackage},
		{"too deep", compsWith(deep), ErrCompsLimit},
		{"text too long", compsWith("<group><id>h</id><name>" + strings.Repeat("n", maxCompsText+1) + "</name></group>"), ErrCompsLimit},
		{"too many groups", many(MaxCompsGroups+1, func(i int) string { return "<group><id>g" + strconv.Itoa(i) + "</id><name>G</name></group>" }), ErrCompsLimit},
		{"too large", compsWith("<!--" + strings.Repeat(" ", MaxCompsSize) + "-->"), ErrCompsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseComps([]byte(tc.in))
			if !errors.Is(err, tc.want) || !errors.Is(err, ErrBadComps) {
				t.Errorf("ParseComps: %v (%+v), want %v", err, c, tc.want)
			}
		})
	}
}

func TestReadCompsFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "comps.xml")
	if err := os.WriteFile(good, []byte(fullComps), 0o644); err != nil {
		t.Fatal(err)
	}
	data, c, err := ReadCompsFile(good)
	if err != nil || string(data) != fullComps || len(c.Groups) != 2 {
		t.Fatalf("ReadCompsFile: %v, %d bytes, %+v", err, len(data), c)
	}
	if _, _, err := ReadCompsFile(dir); !errors.Is(err, ErrBadComps) || !strings.Contains(err.Error(), dir) {
		t.Errorf("a directory: %v", err)
	}
	big := filepath.Join(dir, "big.xml")
	if err := os.WriteFile(big, bytes.Repeat([]byte(" "), MaxCompsSize+10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadCompsFile(big); !errors.Is(err, ErrCompsTooLarge) {
		t.Errorf("an oversized file: %v", err)
	}
	if _, _, err := ReadCompsFile(filepath.Join(dir, "missing.xml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

// TestCompsRecordsWithZstd: in a zstd repository the group records are
// still group (verbatim) and group_gz (gzip), and the rest stays zstd.
func TestCompsRecordsWithZstd(t *testing.T) {
	dir := t.TempDir()
	copyRPMs(t, sharedCorpus(t), dir)
	if _, err := CreateRepo(context.Background(), dir, WithPublishOptions(WithCompression(CompressZstd),
		WithExtraRecords(CompsRecords("comps.xml", []byte(fullComps))...))); err != nil {
		t.Fatal(err)
	}
	md := readRepomd(t, dir)
	var types []string
	for _, r := range md.Records {
		types = append(types, r.Type)
	}
	if !slices.Equal(types, []string{"primary", "filelists", "other", "group", "group_gz"}) {
		t.Fatalf("records %v", types)
	}
	if h := md.Record("primary").Href; !strings.HasSuffix(h, ".xml.zst") {
		t.Errorf("primary %s is not zstd", h)
	}
	g, gz := md.Record("group"), md.Record("group_gz")
	raw, err := os.ReadFile(filepath.Join(dir, g.Href))
	if err != nil || string(raw) != fullComps || !strings.HasSuffix(g.Href, "-comps.xml") || g.OpenChecksum != "" {
		t.Errorf("group %+v: %v, verbatim %v", *g, err, string(raw) == fullComps)
	}
	f, err := os.Open(filepath.Join(dir, gz.Href))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("group_gz %s is not gzip: %v", gz.Href, err)
	}
	open, err := io.ReadAll(zr)
	if err != nil || string(open) != fullComps || !strings.HasSuffix(gz.Href, "-comps.xml.gz") || gz.OpenChecksum != g.Checksum || gz.OpenSize != g.Size {
		t.Errorf("group_gz %+v: %v", *gz, err)
	}
	if _, err := newPublishConfig([]PublishOption{WithExtraRecords(ExtraRecord{Type: "x", Name: "x.xml", Compress: true, Compression: "lz4"})}); !errors.Is(err, ErrBadOption) {
		t.Errorf("an unknown per-record compression: %v", err)
	}
	if _, err := newPublishConfig([]PublishOption{WithExtraRecords(CompsRecords("comps.xml", nil)...), WithExtraRecords(CompsRecords("b.xml", nil)...)}); !errors.Is(err, ErrBadOption) {
		t.Errorf("group records twice in two options: %v", err)
	}
}

// FuzzParseComps: ParseComps never panics, fails only with ErrBadComps,
// and what it accepts holds only ids and package names that are safe to
// use.
func FuzzParseComps(f *testing.F) {
	f.Add([]byte(fullComps))
	f.Add([]byte(testComps))
	f.Add([]byte(compsWith("<x>&foo;</x>")))
	f.Add([]byte(`<!DOCTYPE comps [ <!ENTITY x "y"> ]>` + compsWith("")))
	f.Add([]byte(compsWith("<group><id>g</id><name>H</name></group>")))
	f.Add([]byte("<comps><group><id>g</id><name>G</name><packagelist><packagereq type=\"conditional\" requires=\"b\">a</packagereq></packagelist></group></comps>"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseComps(data)
		if err != nil {
			if !errors.Is(err, ErrBadComps) {
				t.Fatalf("error without ErrBadComps: %v", err)
			}
			return
		}
		if len(c.Groups) == 0 {
			t.Fatal("accepted a file without groups")
		}
		seen := map[string]bool{}
		for _, g := range c.Groups {
			if !compsIDRE().MatchString(g.ID) || seen[g.ID] || g.Name == "" {
				t.Fatalf("accepted group %+v", g)
			}
			seen[g.ID] = true
			for _, p := range g.Packages {
				if nevra.Name(p.Name) != nil || !packagereqTypes[p.Type] {
					t.Fatalf("accepted package %+v", p)
				}
			}
		}
		for _, id := range append(slices.Clone(c.Categories), c.Environments...) {
			if !compsIDRE().MatchString(id) {
				t.Fatalf("accepted id %q", id)
			}
		}
	})
}
