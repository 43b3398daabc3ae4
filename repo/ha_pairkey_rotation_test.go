package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/repoctl/repoctl/internal/etcdtest"
	kv "github.com/repoctl/repoctl/repo/store"
	"github.com/repoctl/repoctl/sign"
)

// TestHAPairKeyDuringRotation: while the pair rotates its key, a daemon
// holding the key the rotation installs may start, one holding any other
// key may not.
func TestHAPairKeyDuringRotation(t *testing.T) {
	srv := etcdtest.Start(t)
	first := openHARepo(t, srv, "r1")
	first.campaignForTest(t)
	withKey := func(node string, k *sign.Key) error {
		root := t.TempDir()
		cfg := fmt.Sprintf("[signing]\nalgo = \"ed25519\"\n[store]\nbackend = \"etcd\"\nendpoints = [%q]\nprefix = \"/ha/fence/\"\nnode = %q\nmax_txn_ops = %d\nmax_request_bytes = %d\n",
			srv.Endpoint, node, etcdtest.MaxTxnOps, etcdtest.MaxRequestBytes)
		if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, "keys"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := k.WritePrivateFile(filepath.Join(root, "keys", "signing.asc")); err != nil {
			t.Fatal(err)
		}
		r, err := Open(context.Background(), root, WithResume(false), withPair())
		if err == nil {
			r.Close()
		}
		return err
	}
	gen := func(name string) *sign.Key {
		k, err := sign.GenerateKey("ed25519", name, name+"@example.com")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	next, stranger := gen("next"), gen("stranger")
	if err := first.st.db.Update(func(tx kv.Tx) error {
		return putRotation(tx, &KeyRotation{OldKeyID: first.Key().KeyID(), NewKeyID: next.KeyID()})
	}); err != nil {
		t.Fatal(err)
	}
	if err := withKey("r2", next); err != nil {
		t.Errorf("a daemon with the key the rotation installs: %v", err)
	}
	if err := withKey("r3", stranger); !errors.Is(err, ErrPairKey) {
		t.Errorf("a daemon with a third key during the rotation: %v, want ErrPairKey", err)
	}
}
