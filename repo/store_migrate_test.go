package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"time"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/metadata"
)

// storeRecords reads every package record of the store at path, with
// its fragments.
func storeRecords(t *testing.T, path string) map[string]*PackageRecord {
	t.Helper()
	st, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	out := map[string]*PackageRecord{}
	err = st.db.View(func(tx kv.Tx) error {
		return eachPackage(tx, "", func(p *PackageRecord) error {
			out[p.Repo+"/"+p.NEVRA] = p
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// downgradeToV2 rewrites a schema-3 store as repoctl at schema 2 left it:
// every record one JSON value with its whole Entry, no fragments bucket.
func downgradeToV2(t *testing.T, path string) {
	t.Helper()
	db, err := kv.OpenBolt(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx kv.Tx) error {
		var recs []*PackageRecord
		if err := eachPackage(tx, "", func(p *PackageRecord) error { recs = append(recs, p); return nil }); err != nil {
			return err
		}
		for _, p := range recs {
			if err := putJSON(tx.Bucket(bucketPackages), pkgKey(p.Repo, p.NEVRA), p); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bucketFragments); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put([]byte("schema"), []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestStoreMigrateV2 opens a store that repoctl at schema 2 left: a
// migration that fails (as a crash would) at any stage leaves the old
// file as it was, a leftover unfinished copy is thrown away, and the
// finished migration keeps every record, fragments included, and the
// event log's chain.
func TestStoreMigrateV2(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	ctx := context.Background()
	r := openPL(t, root)
	src := t.TempDir()
	var paths []string
	for _, n := range []string{"alpha", "beta", "gamma"} {
		paths = append(paths, writeSpec(t, src, spec(n, "1.0", "1.el9", "x86_64")))
	}
	if res, err := r.Add(ctx, paths, AddOptions{}); err != nil || len(res) != 3 {
		t.Fatalf("add: %+v %v", res, err)
	}
	if _, err := r.Promote(ctx, PromoteRequest{Package: "beta"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(root, "repoctl.db")
	want := storeRecords(t, db)
	if len(want) != 3 {
		t.Fatalf("%d records before the downgrade", len(want))
	}
	for k, p := range want {
		if p.Entry == nil || !bytes.HasPrefix(p.Entry.Primary, []byte("<package")) || len(p.Entry.Filelists) == 0 || len(p.Entry.Other) == 0 {
			t.Fatalf("%s: record without its fragments: %+v", k, p.Entry)
		}
	}
	downgradeToV2(t, db)
	old := fileSum(t, db)

	for _, stage := range []string{"batch", "rename"} {
		injected := errors.New("injected crash at " + stage)
		migrateHook = func(s string) error {
			if s == stage {
				return injected
			}
			return nil
		}
		_, err := openStore(db)
		migrateHook = func(string) error { return nil }
		if !errors.Is(err, injected) {
			t.Fatalf("migration failing at %s: %v", stage, err)
		}
		if fileSum(t, db) != old {
			t.Fatalf("a migration failing at %s changed the old store", stage)
		}
	}
	// The rename stage left a finished copy, as a crash just before the
	// rename would; an unfinished one would be garbage. Either is redone.
	if _, err := os.Stat(db + ".migrate"); err != nil {
		t.Fatalf("the copy a crash before the rename leaves: %v", err)
	}
	if err := os.WriteFile(db+".migrate", []byte("half a bbolt file"), 0o600); err != nil {
		t.Fatal(err)
	}

	got := storeRecords(t, db)
	if _, err := os.Stat(db + ".migrate"); !os.IsNotExist(err) {
		t.Errorf("the unfinished copy is still there: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		for k := range want {
			if !reflect.DeepEqual(got[k], want[k]) {
				t.Errorf("%s after migration:\n got %+v\nwant %+v", k, got[k], want[k])
			}
		}
		t.Fatalf("records differ after migration")
	}
	bdb, err := kv.OpenBolt(db, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.View(func(tx kv.Tx) error {
		if v := tx.Bucket(bucketMeta).Get([]byte("schema")); string(v) != schemaVersion {
			t.Errorf("schema %q after migration, want %q", v, schemaVersion)
		}
		if n := tx.Bucket(bucketFragments).Stats().KeyN; n != 3 {
			t.Errorf("%d fragments values, want 3", n)
		}
		return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
			if bytes.Contains(v, []byte(`"primary"`)) || bytes.Contains(v, []byte(`"pkgid"`)) {
				t.Errorf("record %q still holds its Entry: %s", k, v)
			}
			return nil
		})
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkDB(t, db)

	r = openPL(t, root)
	if _, err := r.History(ctx, HistoryOptions{Verify: true}); err != nil {
		t.Errorf("the event log after migration: %v", err)
	}
	rep, err := r.Fsck(ctx, FsckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rep.Err(); err != nil {
		t.Errorf("fsck after migration: %v\n%+v", err, rep.Findings)
	}
	if res, err := r.Add(ctx, []string{writeSpec(t, src, spec("delta", "1.0", "1.el9", "x86_64"))}, AddOptions{}); err != nil || res[0].Action != ActionAdded {
		t.Fatalf("add after migration: %+v %v", res, err)
	}
	if _, err := r.Republish(ctx, RepublishOptions{}); err != nil {
		t.Fatalf("republish after migration: %v", err)
	}
}

// TestStoreHostileFragments: a fragments value is input. Lengths past
// the cap fail before anything is allocated, a truncated or foreign
// value fails, and the error names the package's key.
func TestStoreHostileFragments(t *testing.T) {
	e := &metadata.Entry{Primary: []byte("<package>p</package>\n"), Filelists: []byte("<package>f</package>\n"), Other: []byte("<package>o</package>\n")}
	good := encodeFragments(e)
	var back metadata.Entry
	if err := decodeFragments(good, &back); err != nil || string(back.Primary) != string(e.Primary) ||
		string(back.Filelists) != string(e.Filelists) || string(back.Other) != string(e.Other) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	huge := []byte{fragCodecZstd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0, 0}
	for name, v := range map[string][]byte{
		"empty":     nil,
		"codec":     append([]byte{9}, good[1:]...),
		"truncated": good[:len(good)-3],
		"huge":      huge,
		"lengths":   append([]byte{fragCodecZstd, 1, 1, 1}, good[4:]...),
		"nolen":     {fragCodecZstd, 0x80},
	} {
		if err := decodeFragments(v, &back); !errors.Is(err, errBadFragments) {
			t.Errorf("%s: %v, want errBadFragments", name, err)
		}
	}

	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	p := writeSpec(t, t.TempDir(), spec("alpha", "1.0", "1.el9", "x86_64"))
	if _, err := r.Add(context.Background(), []string{p}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	err := r.st.db.Update(func(tx kv.Tx) error {
		return tx.Bucket(bucketFragments).Put(pkgKey("main", "alpha-1.0-1.el9.x86_64"), huge)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.st.db.View(func(tx kv.Tx) error {
		_, err := getPackage(tx, "main", "alpha-1.0-1.el9.x86_64")
		return err
	})
	if !errors.Is(err, errBadFragments) || !strings.Contains(err.Error(), `alpha-1.0-1.el9.x86_64`) {
		t.Errorf("a hostile fragments value: %v", err)
	}
	if b, _ := json.Marshal(err.Error()); len(b) > 400 {
		t.Errorf("error too long: %s", b)
	}
}

// TestStoreLightPutKeepsFragments: a record read without its fragments
// (eachPackageLight) and written back keeps the stored fragments, and a
// light record that has none stored is refused rather than stored empty.
func TestStoreLightPutKeepsFragments(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	r := openPL(t, root)
	if _, err := r.Add(context.Background(), []string{writeSpec(t, t.TempDir(), spec("alpha", "1.0", "1.el9", "x86_64"))}, AddOptions{}); err != nil {
		t.Fatal(err)
	}
	var full *PackageRecord
	err := r.st.db.Update(func(tx kv.Tx) error {
		var err error
		if full, err = getPackage(tx, "main", "alpha-1.0-1.el9.x86_64"); err != nil || full == nil {
			return fmt.Errorf("reading the record: %v %v", full, err)
		}
		var light *PackageRecord
		if err := eachPackageLight(tx, "", func(p *PackageRecord) error { light = p; return nil }); err != nil {
			return err
		}
		if light.Entry == nil || light.Entry.Primary != nil || light.Entry.PkgID != full.Entry.PkgID || light.Entry.MTime != full.Entry.MTime {
			return fmt.Errorf("light record: %+v", light.Entry)
		}
		light.AddedBy = "someone else"
		if err := putPackage(tx, light); err != nil {
			return err
		}
		orphan := *light
		orphan.NEVRA = "beta-1.0-1.el9.x86_64"
		if err := putPackage(tx, &orphan); !errors.Is(err, errBadFragments) {
			return fmt.Errorf("a light record without stored fragments: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.st.db.View(func(tx kv.Tx) error {
		p, err := getPackage(tx, "main", "alpha-1.0-1.el9.x86_64")
		if err != nil {
			return err
		}
		if p.AddedBy != "someone else" || !bytes.Equal(p.Entry.Primary, full.Entry.Primary) || !bytes.Equal(p.Entry.Other, full.Entry.Other) {
			return fmt.Errorf("after writing the light record back: %+v", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
