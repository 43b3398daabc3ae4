package repo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// lifecycleCrashHelper runs in a child process: it opens the root, arms a
// failpoint that SIGKILLs the process at state, and runs a rollback of
// prod to version 1 or a prune of prod to one version.
func lifecycleCrashHelper(state string) {
	root, op := os.Getenv("REPOCTL_LC_ROOT"), os.Getenv("REPOCTL_LC_OP")
	r, err := Open(context.Background(), root)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	failpoint = func(s string) error {
		if s == state {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
		}
		return nil
	}
	switch op {
	case "rollback":
		_, err = r.ChannelRollback(context.Background(), ChannelRollbackRequest{Channel: "prod", To: 1})
	case "prune":
		keep := 1
		_, err = r.Prune(context.Background(), PruneRequest{Channel: "prod", Keep: &keep})
	}
	fmt.Println("not killed:", err)
	os.Exit(1)
}

// TestKilledMidRollbackOrPrune kills a real process with SIGKILL after a
// rollback or prune is recorded and before anything is published, and
// between the two directories it publishes (a noarch package is in both
// arch directories). After a restart every directory of prod lists exactly
// the channel's current version.
func TestKilledMidRollbackOrPrune(t *testing.T) {
	for _, tc := range []struct{ op, state string }{
		{"rollback", EventRollback + ".recorded"}, {"rollback", "publish.dir"},
		{"prune", EventPrune + ".recorded"}, {"prune", "publish.dir"},
	} {
		t.Run(tc.op+"@"+tc.state, func(t *testing.T) {
			ctx := context.Background()
			root := filepath.Join(t.TempDir(), "root")
			r := openPL(t, root)
			in := t.TempDir()
			for _, v := range []string{"1.0", "2.0"} {
				s := helloSpec("lib")
				s.Version, s.Release, s.Arch = v, "1.el9", "noarch"
				p := writeSpec(t, in, s)
				if _, err := r.Add(ctx, []string{p}, AddOptions{}); err != nil {
					t.Fatal(err)
				}
				if _, err := r.Promote(ctx, PromoteRequest{Package: "lib-" + v + "-1.el9.noarch"}); err != nil {
					t.Fatal(err)
				}
			}
			r.Close()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "REPOCTL_LC_CRASH_AT="+tc.state, "REPOCTL_LC_ROOT="+root, "REPOCTL_LC_OP="+tc.op)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("helper was not killed at %s: %v\n%s", tc.state, err, out)
			}
			dirs := []string{"repo/main/prod/el/9/x86_64", "repo/main/prod/el/9/aarch64"}
			if tc.state == "publish.dir" {
				// The kill landed between the two: one lists the new set.
				a, b := keys(mustPkgs(t, filepath.Join(root, dirs[0]))), keys(mustPkgs(t, filepath.Join(root, dirs[1])))
				if slices.Equal(a, b) {
					t.Fatalf("killed between directories, yet both list %v", a)
				}
			}
			r = openPL(t, root)
			cur, err := r.ChannelShow(ctx, ChannelShowOptions{Channel: "prod"})
			if err != nil {
				t.Fatal(err)
			}
			if cur.Cause != tc.op || !slices.Equal(cur.NEVRAs, []string{"lib-1.0-1.el9.noarch"}) && tc.op == "rollback" ||
				!slices.Equal(cur.NEVRAs, []string{"lib-2.0-1.el9.noarch"}) && tc.op == "prune" {
				t.Errorf("current prod version: %+v", cur)
			}
			for _, d := range dirs {
				if got := keys(mustPkgs(t, filepath.Join(root, d))); !slices.Equal(got, cur.NEVRAs) {
					t.Errorf("after restart %s lists %v, the current version %d holds %v", d, got, cur.Version, cur.NEVRAs)
				}
			}
			if _, err := r.History(ctx, HistoryOptions{Verify: true}); err != nil {
				t.Error(err)
			}
			if rep, err := r.Fsck(ctx, FsckOptions{}); err != nil || rep.Err() != nil {
				t.Errorf("fsck: %+v %v", rep, err)
			}
		})
	}
}
