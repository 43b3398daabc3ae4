package repo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repoctl/repoctl/internal/etcdtest"
	"github.com/repoctl/repoctl/internal/s3test"
	kv "github.com/repoctl/repoctl/repo/store"
)

// TestEtcdStockLimitsBurst (issue 11): on an etcd with its stock limits
// (128 operations, 1.5 MiB a transaction) and [store] saying nothing of
// them, one add of 150 packages lands: each once, signed, in the
// repodata, one sign event each, and the hash chain verifies. The batch
// is recorded in parts that fit; the largest transaction is logged (the
// README's figures). With an S3 target, the mirror's state of the 150
// uploads fits too, and the bucket's repodata lists them.
func TestEtcdStockLimitsBurst(t *testing.T) {
	needTools(t, "rpmkeys")
	t.Run("local", func(t *testing.T) { testStockBurst(t, "") })
	t.Run("s3", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
		s3 := s3test.Start(t)
		s3.Bucket("repo")
		testStockBurst(t, s3.Endpoint)
	})
}

func testStockBurst(t *testing.T, s3 string) {
	srv := etcdtest.StartWith(t, etcdtest.Stock)
	root := t.TempDir()
	cfg := fmt.Sprintf(`[signing]
algo = "ed25519"
[routing]
default = "el/9"
[store]
backend = "etcd"
endpoints = [%q]
prefix = "/stock/"
`, srv.Endpoint)
	if s3 != "" {
		cfg += fmt.Sprintf("[publish]\ntarget = \"s3\"\n[publish.s3]\nendpoint = %q\nbucket = \"repo\"\nprefix = \"yum\"\n", s3)
	}
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	const n = 150
	src := t.TempDir()
	var paths []string
	for i := range n {
		paths = append(paths, lcBuild(t, src, fmt.Sprintf("stock%03d", i), "1.0"))
	}
	ctx := context.Background()
	r, err := Open(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	res, err := r.Add(ctx, paths, AddOptions{})
	if err != nil {
		r.Close()
		t.Fatalf("add of %d packages: %v", n, err)
	}
	for _, x := range res {
		if x.Action != ActionAdded || len(x.RepoPaths) != 1 {
			t.Errorf("%s: %s %v %s", x.Path, x.Action, x.RepoPaths, x.Reason)
		}
	}
	largest := kv.EtcdLargestTxn(r.st.db.(*gatedDB).base)
	t.Logf("largest transaction: %d compares, %d writes, about %d bytes", largest.Compares, largest.Writes, largest.Bytes)
	if largest.Compares > etcdtest.Stock.MaxTxnOps || largest.Writes > etcdtest.Stock.MaxTxnOps || largest.Bytes > etcdtest.Stock.MaxRequestBytes || largest.Writes == 0 {
		t.Errorf("largest transaction %+v, beyond the stock limits %+v", largest, etcdtest.Stock)
	}
	list, err := r.List(ctx, ListOptions{})
	if err != nil || len(list) != n {
		t.Fatalf("the store lists %d packages, want %d (%v)", len(list), n, err)
	}
	events, err := r.History(ctx, HistoryOptions{Verify: true})
	if err != nil {
		t.Fatalf("history --verify: %v", err)
	}
	signs := map[string]int{}
	for _, e := range events {
		if e.Action == EventSign {
			signs[e.NEVRA]++
		}
	}
	if len(signs) != n {
		t.Errorf("%d packages have sign events, want %d", len(signs), n)
	}
	for nevra, c := range signs {
		if c != 1 {
			t.Errorf("%s signed %d times", nevra, c)
		}
	}
	if s3 == "" {
		// A key rotation re-signs rotateBatch (256) packages a step: its
		// records go in parts too.
		rot, err := r.RotateKey(ctx, KeyRotateRequest{Algo: "ed25519"})
		if err != nil || rot.Finished == nil || rot.Resigned != n {
			t.Fatalf("key rotation: %+v %v", rot, err)
		}
		if l := kv.EtcdLargestTxn(r.st.db.(*gatedDB).base); l.Writes > etcdtest.Stock.MaxTxnOps {
			t.Errorf("largest transaction after the rotation: %+v", l)
		}
		if _, err := r.History(ctx, HistoryOptions{Verify: true}); err != nil {
			t.Fatalf("history --verify after the rotation: %v", err)
		}
		res, err = r.Add(ctx, paths[:1], AddOptions{}) // for the placements, now re-signed
		if err != nil || len(res) != 1 {
			t.Fatalf("re-add: %+v %v", res, err)
		}
		list, err := r.List(ctx, ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		res = res[:0]
		for _, p := range list {
			if p.KeyID != rot.NewKeyID {
				t.Errorf("%s is signed by %s after the rotation to %s", p.NEVRA, p.KeyID, rot.NewKeyID)
			}
			res = append(res, AddResult{RepoPaths: []string{p.Placements[0].File}})
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(root, "repo", filepath.Dir(res[0].RepoPaths[0]))
	if got := mustPkgs(t, dir); len(got) != n {
		t.Errorf("the repodata of %s lists %d packages, want %d", dir, len(got), n)
	}
	pub, err := os.ReadFile(filepath.Join(root, "repo", PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	db, kf := t.TempDir(), filepath.Join(t.TempDir(), "key.asc")
	if err := os.WriteFile(kf, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("rpmkeys", "--dbpath", db, "--import", kf).CombinedOutput(); err != nil {
		t.Fatalf("rpmkeys --import: %v\n%s", err, out)
	}
	args := []string{"--dbpath", db, "--checksig"}
	for _, x := range res {
		args = append(args, filepath.Join(root, "repo", x.RepoPaths[0]))
	}
	out, err := exec.Command("rpmkeys", args...).CombinedOutput()
	if err != nil || strings.Count(string(out), "digests signatures OK") != n {
		t.Errorf("rpmkeys --checksig of the %d files: %v\n%s", n, err, out)
	}
	if out, stderr, code := runCLI(t, root, "history", "--verify"); code != 0 {
		t.Errorf("repoctl history --verify: exit %d\n%s%s", code, out, stderr)
	}
	if s3 != "" {
		names, err := s3PrimaryNames(s3+"/repo/yum/", filepath.Dir(res[0].RepoPaths[0]))
		if err != nil || len(names) != n {
			t.Errorf("the bucket's primary lists %d packages, want %d (%v)", len(names), n, err)
		}
		if out, stderr, code := runCLI(t, root, "fsck"); code != 0 {
			t.Errorf("repoctl fsck: exit %d\n%s%s", code, out, stderr)
		}
	}
}
