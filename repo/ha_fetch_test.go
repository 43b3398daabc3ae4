package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/repoctl/repoctl/repo/target"
)

// TestFetchObjectChecks: a package file a new leader fetches from the
// publish target is kept only if it has the size and sha256 the store
// records; other bytes (a bucket written behind repoctl's back, a wrong
// record) leave no file.
func TestFetchObjectChecks(t *testing.T) {
	ctx := context.Background()
	tgt, err := target.OpenDir(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer tgt.Close()
	body := bytes.Repeat([]byte("package bytes "), 1000)
	sum := func(b []byte) string { h := sha256.Sum256(b); return hex.EncodeToString(h[:]) }
	if err := tgt.Put(ctx, "main/prod/el/9/x86_64/p.rpm", bytes.NewReader(body), int64(len(body)), sum(body), target.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	tm := &treeMirror{tgt: tgt}
	other := bytes.ToUpper(body) // same size, other bytes
	dir := t.TempDir()
	for i, c := range []struct {
		name string
		size int64
		sum  string
		ok   bool
	}{
		{"as recorded", int64(len(body)), sum(body), true},
		{"other bytes of the same size", int64(len(body)), sum(other), false},
		{"shorter than recorded", int64(len(body)) + 1, sum(append(bytes.Clone(body), 'x')), false},
		{"longer than recorded", int64(len(body)) - 1, sum(body[:len(body)-1]), false},
	} {
		dst := filepath.Join(dir, c.name)
		err := fetchObject(ctx, tm, "main/prod/el/9/x86_64/p.rpm", dst, c.size, c.sum)
		got, rerr := os.ReadFile(dst)
		switch {
		case c.ok && (err != nil || rerr != nil || !bytes.Equal(got, body)):
			t.Errorf("%d %s: %v, %v, %d bytes", i, c.name, err, rerr, len(got))
		case !c.ok && (err == nil || !errors.Is(rerr, fs.ErrNotExist)):
			t.Errorf("%d %s: fetched (%v), left a file: %v", i, c.name, err, rerr)
		}
	}
}
