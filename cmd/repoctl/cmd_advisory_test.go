package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestAdvisoryCLI drives `repoctl advisory` as a user does: add prints
// what it did and where it republished, adding it again is "unchanged",
// an invalid advisory (an unknown package, a conflicting one) exits 2 with
// a usage error object under -o json and leaves the repodata alone; list,
// show and completion name it; remove takes it away, and a second remove
// exits 2.
func TestAdvisoryCLI(t *testing.T) {
	c := newConvRoot(t)
	repomd := filepath.Join(c.root, "repo/main/prod/el/9/x86_64/repodata/repomd.xml")
	adv := c.writeFile(t, "adv.toml", convAdvisoryTOML)
	out, stderr, code := runIn(t, c.root, "advisory", "add", adv)
	if code != 0 || !strings.Contains(out, "added CONV-2026-0001 (security, 1 package)") || !strings.Contains(out, "republished main/prod/el/9/x86_64") {
		t.Fatalf("advisory add: exit %d\n%s%s", code, out, stderr)
	}
	before, err := os.ReadFile(repomd)
	if err != nil || !strings.Contains(string(before), `<data type="updateinfo">`) {
		t.Fatalf("prod's repomd.xml has no updateinfo record: %v\n%s", err, before)
	}
	if out, _, code := runIn(t, c.root, "advisory", "add", adv); code != 0 || !strings.Contains(out, "unchanged CONV-2026-0001") {
		t.Errorf("advisory add again: exit %d\n%s", code, out)
	}
	for name, body := range map[string]string{
		"unknown package": strings.Replace(convAdvisoryTOML, convNEVRA, "conv-9-9.el9.noarch", 1),
		"conflict":        strings.Replace(convAdvisoryTOML, "a fix", "another fix", 1),
		"bad type":        strings.Replace(convAdvisoryTOML, `"security"`, `"urgent"`, 1),
	} {
		f := c.writeFile(t, "bad.toml", body)
		out, stderr, code := runIn(t, c.root, "-o", "json", "advisory", "add", f)
		if code != exitUsage || !strings.Contains(stderr, "invalid advisory") {
			t.Errorf("%s: exit %d, want %d\n%s%s", name, code, exitUsage, out, stderr)
		}
		checkErrorJSON(t, name, out, code)
	}
	if after, _ := os.ReadFile(repomd); string(after) != string(before) {
		t.Error("a refused advisory changed prod's repomd.xml")
	}
	out, _, code = runIn(t, c.root, "-o", "json", "advisory", "list")
	var list []struct {
		ID        string   `json:"id"`
		Packages  []string `json:"packages"`
		Published []string `json:"published"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].ID != "CONV-2026-0001" || len(list[0].Published) != 4 {
		t.Errorf("advisory list -o json: exit %d\n%s", code, out)
	}
	if out, _, code := runIn(t, c.root, "advisory", "show", "CONV-2026-0001"); code != 0 || !strings.Contains(out, "package:") ||
		!strings.Contains(out, convNEVRA) || !strings.Contains(out, "published in:  main/prod/el/9/x86_64") {
		t.Errorf("advisory show: exit %d\n%s", code, out)
	}
	comp, _, code := runIn(t, c.root, cobra.ShellCompRequestCmd, "advisory", "remove", "CONV")
	if code != 0 || strings.Split(comp, "\n")[0] != "CONV-2026-0001" {
		t.Errorf("completion of advisory remove: exit %d\n%s", code, comp)
	}
	if out, _, code := runIn(t, c.root, "advisory", "remove", "--dry-run", "CONV-2026-0001"); code != 0 || !strings.Contains(out, "would remove CONV-2026-0001") {
		t.Errorf("advisory remove --dry-run: exit %d\n%s", code, out)
	}
	if out, _, code := runIn(t, c.root, "advisory", "remove", "CONV-2026-0001"); code != 0 || !strings.Contains(out, "removed CONV-2026-0001") {
		t.Errorf("advisory remove: exit %d\n%s", code, out)
	}
	if after, _ := os.ReadFile(repomd); strings.Contains(string(after), "updateinfo") {
		t.Errorf("prod still names updateinfo after the remove:\n%s", after)
	}
	if _, stderr, code := runIn(t, c.root, "advisory", "remove", "CONV-2026-0001"); code != exitUsage || !strings.Contains(stderr, "no such advisory") {
		t.Errorf("second remove: exit %d, want %d\n%s", code, exitUsage, stderr)
	}
}
