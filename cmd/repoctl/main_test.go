package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// repoctlBin is the real binary, built once for every CLI test in this
// package: the tests check what a user sees (output, exit codes), which
// only a separate process shows.
var repoctlBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "repoctl-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	repoctlBin = filepath.Join(dir, "repoctl")
	if out, err := exec.Command("go", "build", "-o", repoctlBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireTools fails the test, never skips it, when a peer it runs is
// missing: .ci/install-test-deps is what installs them.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required: %v", tool, err)
		}
	}
}

// runBin runs the real binary with args in dir ("" for the test's own)
// and returns stdout, stderr and the exit status.
func runBin(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(repoctlBin, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// runIn is runBin with --root root.
func runIn(t *testing.T, root string, args ...string) (string, string, int) {
	t.Helper()
	return runBin(t, "", append([]string{"--root", root}, args...)...)
}
