package sign

import (
	"bufio"
	"bytes"
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

const crashHelperEnv = "REPOCTL_SIGN_CRASH_HELPER"

// TestMain runs this binary as the crash helper when TestKill9MidBatch
// started it as one, so that no test passes by doing nothing.
func TestMain(m *testing.M) {
	if os.Getenv(crashHelperEnv) == "1" {
		crashHelperProcess()
	}
	os.Exit(m.Run())
}

// crashHelperProcess is the child of TestKill9MidBatch (TestMain
// dispatches on crashHelperEnv): it signs the files named in the
// environment, slowly, so that the parent can kill it mid-write.
func crashHelperProcess() {
	k, err := LoadKeyFile(os.Getenv("CRASH_KEY"), nil)
	if err != nil {
		os.Exit(10)
	}
	s, err := NewSigner(k, WithWorkers(2))
	if err != nil {
		os.Exit(11)
	}
	var once sync.Once
	s.patchHook = func() {
		once.Do(func() { os.Stdout.WriteString("patching\n") })
		time.Sleep(2 * time.Millisecond)
	}
	if _, err := s.SignFiles(context.Background(), strings.Split(os.Getenv("CRASH_FILES"), ",")); err != nil {
		os.Exit(12)
	}
	os.Stdout.WriteString("done\n")
	os.Exit(0)
}

// TestKill9MidBatch kills a signing process at random points, many times,
// and checks that after Recover every package is either its original bytes
// or completely signed and accepted by rpm.
func TestKill9MidBatch(t *testing.T) {
	a, b := testKey(t, "ed25519"), testKey(t, "rsa3072")
	keyFile := filepath.Join(t.TempDir(), "b.asc")
	if err := b.WritePrivateFile(keyFile); err != nil {
		t.Fatal(err)
	}
	// 24 packages already signed by a (with reserved space: in-place path)
	// and 6 unsigned rpmpack packages (rewrite path).
	src := t.TempDir()
	paths, err := testrpm.Corpus(context.Background(), src, 30)
	if err != nil {
		t.Fatal(err)
	}
	signAll(t, a, paths[:24])
	orig := map[string][]byte{}
	for _, p := range paths {
		orig[filepath.Base(p)] = readAll(t, p)
	}
	db := newRPMDB(t, pubOf(t, b))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	const rounds = 16
	midPatch, recovered, mixed := 0, 0, 0
	for round := 0; round < rounds; round++ {
		dir := t.TempDir()
		var files []string
		for name, data := range orig {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, p)
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), crashHelperEnv+"=1", "CRASH_KEY="+keyFile, "CRASH_FILES="+strings.Join(files, ","))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 4)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		if round%2 == 0 {
			// Kill while in-place writes are under way.
			select {
			case l := <-lines:
				if l == "patching" {
					midPatch++
				}
			case <-time.After(30 * time.Second):
				t.Fatal("helper never started patching")
			}
			time.Sleep(time.Duration(rng.Intn(40)) * time.Millisecond)
		} else {
			// Kill at a random moment anywhere in the run.
			time.Sleep(time.Duration(rng.Intn(400)) * time.Millisecond)
		}
		cmd.Process.Kill() // SIGKILL
		cmd.Wait()
		for range lines {
		}

		journals, err := filepath.Glob(filepath.Join(dir, journalPrefix+"*"+journalSuffix))
		if err != nil {
			t.Fatal(err)
		}
		if len(journals) > 0 {
			recovered++
		}
		if err := Recover(context.Background(), dir); err != nil {
			t.Fatalf("round %d: Recover: %v", round, err)
		}
		left, err := filepath.Glob(filepath.Join(dir, ".*"))
		if err != nil {
			t.Fatal(err)
		}
		if len(left) > 0 {
			t.Errorf("round %d: left behind: %v", round, left)
		}
		var signed []string
		for _, p := range files {
			got := readAll(t, p)
			if bytes.Equal(got, orig[filepath.Base(p)]) {
				continue
			}
			rep, err := VerifyFile(context.Background(), p, []*Key{b})
			if err != nil || !rep.OK {
				t.Fatalf("round %d: %s is neither original nor validly signed: %v %+v", round, p, err, rep)
			}
			signed = append(signed, p)
		}
		if len(signed) > 0 && len(signed) < len(files) {
			mixed++
		}
		if len(signed) > 0 {
			args := append([]string{"--dbpath", db.dir, "--checksig"}, signed...)
			o, err := exec.Command("rpmkeys", args...).CombinedOutput()
			if err != nil {
				t.Fatalf("round %d: rpmkeys: %v\n%s", round, err, o)
			}
			if n := strings.Count(string(o), ": digests signatures OK"); n != len(signed) {
				t.Fatalf("round %d: rpmkeys OK for %d of %d\n%s", round, n, len(signed), o)
			}
		}
	}
	t.Logf("%d rounds: %d killed mid-patch, %d left a journal, %d left a mix of original and signed files", rounds, midPatch, recovered, mixed)
	if midPatch == 0 || recovered == 0 {
		t.Fatalf("no kill landed mid-patch (mid %d, journals %d): the test proved nothing", midPatch, recovered)
	}
}
