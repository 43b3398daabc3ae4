package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `make man` writes a page per command that man(1) renders: NAME,
// SYNOPSIS and the command's own flags, and groff has nothing to warn
// about.
func TestMakeMan(t *testing.T) {
	requireTools(t, "make", "man", "groff")
	dir := filepath.Join(t.TempDir(), "man")
	cmd := exec.Command("make", "-C", "../..", "man", "MANDIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make man: %v\n%s", err, out)
	}
	for _, page := range []string{"repoctl.1", "repoctl-add.1", "repoctl-daemon.1", "repoctl-key-rotate.1", "repoctl-version.1"} {
		if _, err := os.Stat(filepath.Join(dir, page)); err != nil {
			t.Errorf("make man did not write %s: %v", page, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "repoctl-gen-man.1")); err == nil {
		t.Error("make man wrote a page for the hidden gen-man command")
	}

	page := filepath.Join(dir, "repoctl-add.1")
	man := exec.Command("man", "-l", page)
	man.Env = append(os.Environ(), "MANPAGER=cat", "PAGER=cat", "MANWIDTH=100", "LANG=C.UTF-8")
	var stdout, stderr bytes.Buffer
	man.Stdout, man.Stderr = &stdout, &stderr
	if err := man.Run(); err != nil {
		t.Fatalf("man -l %s: %v\n%s", page, err, stderr.String())
	}
	text := stdout.String()
	for _, want := range []string{"NAME", "repoctl-add - ", "SYNOPSIS", "repoctl add", "--channel", "--release", "OPTIONS INHERITED FROM PARENT COMMANDS", "--root", "SEE ALSO", "repoctl(1)"} {
		if !strings.Contains(text, want) {
			t.Errorf("man -l repoctl-add.1 lacks %q:\n%s", want, text)
		}
	}
	groff := exec.Command("groff", "-man", "-Tutf8", "-ww", "-z", page)
	if out, err := groff.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("groff -man -ww on repoctl-add.1: %v\n%s", err, out)
	}
	root, err := os.ReadFile(filepath.Join(dir, "repoctl.1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(root, []byte("repoctl-version(1)")) {
		t.Error("repoctl.1 does not list repoctl-version(1) under SEE ALSO")
	}
}
