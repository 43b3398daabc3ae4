package repo

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	kv "github.com/repoctl/repoctl/repo/store"
)

// The store keeps exactly the compressed blocks that current repodata uses:
// a publish reuses them, and blocks nobody uses any more are dropped.
func TestBlockCacheRetention(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	in := t.TempDir()
	var paths []string
	for _, n := range []string{"ba", "bb", "bc"} {
		paths = append(paths, writeSpec(t, in, spec(n, "1", "1.el9", "x86_64")))
	}
	if _, err := r.Add(ctx, paths, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) int {
		t.Helper()
		n := 0
		err := r.st.db.View(func(tx kv.Tx) error {
			live := map[string]bool{}
			if err := tx.Bucket(bucketBlockRefs).ForEach(func(_, v []byte) error {
				for _, k := range strings.Split(string(v), "\n") {
					if k != "" {
						live[k] = true
					}
				}
				return nil
			}); err != nil {
				return err
			}
			b := tx.Bucket(bucketBlocks)
			for k := range live {
				if b.Get([]byte(k)) == nil {
					t.Errorf("%s: referenced block %s missing", when, k)
				}
			}
			return b.ForEach(func(k, _ []byte) error {
				n++
				if !live[string(k)] {
					t.Errorf("%s: block %s kept though unused", when, k)
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := check("after add"); n == 0 {
		t.Fatal("no blocks cached after a publish")
	}
	for _, n := range []string{"ba-1-1.el9.x86_64", "bb-1-1.el9.x86_64", "bc-1-1.el9.x86_64"} {
		if _, err := r.Remove(ctx, n, RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	check("after removing everything")
}
