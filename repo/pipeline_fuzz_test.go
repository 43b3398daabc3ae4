package repo

import (
	"strings"

	"context"
	"fmt"
	"github.com/repoctl/repoctl/sign"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/repoctl/repoctl/internal/testrpm"
)

var (
	fuzzOnce sync.Once
	fuzzRepo *Repo
	fuzzErr  error
)

// FuzzAdd feeds arbitrary bytes through the whole pipeline. Whatever the
// input, Add must not fail as a call or panic: the file is added (it was a
// valid package) or rejected with a reason, and the repodata stays
// readable.
func FuzzAdd(f *testing.F) {
	good, err := testrpm.Build(spec("fz", "1", "1.el9", "x86_64"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(good[:120])
	f.Add([]byte{0xed, 0xab, 0xee, 0xdb, 3, 0, 0, 0})
	mut := append([]byte(nil), good...)
	mut[200] ^= 0xff
	f.Add(mut)
	for _, n := range []string{"Archer-3.4.5-6.x86_64.rpm", "empty-0-0.src.rpm"} {
		b, err := os.ReadFile(filepath.Join(corpusDir(f), n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	dir := f.TempDir()
	// Each exec publishes with fsyncs, so this target is slow to fuzz (and
	// slower to minimize); `go test` runs its seeds, and it is there for
	// longer runs: go test -run '^$' -fuzz FuzzAdd -fuzzminimizetime 10x ./repo
	root := filepath.Join(os.TempDir(), fmt.Sprintf("repoctl-fuzzadd-%d", os.Getpid()))
	f.Cleanup(func() {
		if fuzzRepo != nil {
			if err := fuzzRepo.Close(); err != nil {
				f.Error(err)
			}
			fuzzRepo, fuzzOnce = nil, sync.Once{}
		}
		if err := os.RemoveAll(root); err != nil {
			f.Error(err)
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzOnce.Do(func() {
			// One root per fuzzing worker process: each holds its lock.
			if err := os.RemoveAll(root); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(plConfig), 0o644); err != nil {
				t.Fatal(err)
			}
			fuzzRepo, fuzzErr = Open(context.Background(), root)
		})
		if fuzzErr != nil {
			t.Fatal(fuzzErr)
		}
		p := filepath.Join(dir, "in.rpm")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		res, err := fuzzRepo.Add(context.Background(), []string{p}, AddOptions{})
		if err != nil {
			t.Fatalf("Add failed as a call: %v", err)
		}
		switch res[0].Action {
		case ActionAdded, ActionUnchanged:
			// What was added is listed, placed where the result says, and
			// its signature verifies with the repository's key.
			list, err := fuzzRepo.List(context.Background(), ListOptions{Name: strings.SplitN(res[0].NEVRA, "-", 2)[0]})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, rec := range list {
				found = found || rec.NEVRA == res[0].NEVRA
			}
			if !found || len(res[0].RepoPaths) == 0 {
				t.Fatalf("%s %s but not listed (%d records) or not placed", res[0].Action, res[0].NEVRA, len(list))
			}
			for _, rp := range res[0].RepoPaths {
				rep, err := sign.VerifyFile(context.Background(), filepath.Join(fuzzRepo.Config().Paths.Repo, rp), []*sign.Key{fuzzRepo.Key()})
				if err != nil || !rep.OK {
					t.Fatalf("placed %s does not verify: %v %+v", rp, err, rep)
				}
			}
		case ActionRejected:
			if res[0].Reason == "" {
				t.Fatal("rejected without a reason")
			}
		default:
			t.Fatalf("result %+v", res[0])
		}
		for _, d := range []string{"x86_64", "SRPMS"} {
			if _, err := repodataPackages(filepath.Join(fuzzRepo.Config().Paths.Repo, "main/staging/el/9", d)); err != nil {
				t.Fatalf("repodata after %+v: %v", res[0], err)
			}
		}
	})
}
