package repo

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo/target"
)

// Kinds of FsckFinding about the publish target ([publish] target = "s3").
const (
	// FsckTargetMissing: the bucket lacks an object the directory is made
	// of (a package the store places there, a file its repomd.xml names,
	// repomd.xml, its signature or RPM-GPG-KEY-repoctl).
	FsckTargetMissing = "target-missing"
	// FsckTargetModified: the bucket holds such an object with another
	// size or sha256 than the store and repomd.xml say.
	FsckTargetModified = "target-modified"
	// FsckTargetPending: the directory's last sync to the bucket failed
	// and awaits its retry.
	FsckTargetPending = "target-pending"
)

// fsckTarget checks the bucket against the store for the directories of
// res: one stat per object (repomd.xml and its signature are read whole),
// never a listing. Packages are expected with the size and sha256 of
// their store records; repodata with what the local repomd.xml names,
// which fsckDir checks against the store.
func (r *Repo) fsckTarget(ctx context.Context, res *fsckResult) ([]FsckFinding, error) {
	tm := r.tree.mirror
	if tm == nil {
		return nil, nil
	}
	var out []FsckFinding
	pending, err := tm.m.Pending()
	if err != nil {
		return nil, err
	}
	isPending := map[string]bool{}
	for _, p := range pending {
		if inScope(res.scope, p.Dir) {
			isPending[p.Dir] = true
			out = append(out, FsckFinding{Kind: FsckTargetPending, Dir: p.Dir, Repairable: true,
				Message: fmt.Sprintf("%s: the last sync to %s failed (since %s): %s", p.Dir, tm.tgt, p.Since.Format("2006-01-02T15:04:05Z"), p.Error),
				Repair:  "sync " + p.Dir + " to " + tm.tgt.String()})
		}
	}
	var mans []target.DirManifest
	for _, d := range res.dirs {
		if isPending[d] || !r.tree.hasRepodata(d) {
			continue
		}
		var entries []metadata.Entry
		for _, rec := range res.expect[d] {
			entries = append(entries, *rec.Entry)
		}
		dr, err := r.tree.root.OpenRoot(d)
		if err != nil {
			continue
		}
		man, err := dirManifest(d, dr, entries)
		dr.Close()
		if err != nil {
			continue // fsckDir reports the repodata
		}
		mans = append(mans, man)
	}
	var files []target.Object
	if res.scope == nil {
		if b, err := r.tree.readSmall(PublicKeyFile); err == nil {
			files = append(files, bytesObject(PublicKeyFile, b))
		}
	}
	probs, err := tm.m.Check(ctx, mans, files)
	if err != nil {
		return nil, err
	}
	for _, p := range probs {
		f := FsckFinding{Kind: FsckTargetMissing, File: p.Key, Message: tm.strip(p.Message), Repairable: true}
		if p.Kind == "modified" {
			f.Kind = FsckTargetModified
		}
		if p.Key != PublicKeyFile {
			f.Dir = ownerDir(mans, p.Key)
		}
		f.Repair = "upload " + p.Key + " to " + tm.tgt.String() + " again"
		out = append(out, f)
	}
	return out, nil
}

func ownerDir(mans []target.DirManifest, key string) string {
	for _, m := range mans {
		if strings.HasPrefix(key, m.Dir+"/") {
			return m.Dir
		}
	}
	return path.Dir(key)
}

// repairTarget makes the mirror forget the objects found missing or
// modified and syncs their directories (and the key file) again. The
// caller holds r.mu.
func (r *Repo) repairTarget(ctx context.Context, res *fsckResult, record func(Event) error) error {
	tm := r.tree.mirror
	if tm == nil {
		return nil
	}
	var keys []string
	dirs := map[string]bool{}
	key := false
	for _, f := range res.findings {
		switch f.Kind {
		case FsckTargetMissing, FsckTargetModified:
			keys = append(keys, f.File)
			if f.File == PublicKeyFile {
				key = true
			} else {
				dirs[f.Dir] = true
			}
		case FsckTargetPending:
			dirs[f.Dir] = true
		}
	}
	if len(keys) == 0 && len(dirs) == 0 {
		return nil
	}
	if err := tm.m.Forget(keys); err != nil {
		return err
	}
	failed := map[string]error{}
	if key {
		if err := tm.syncKey(ctx); err != nil {
			failed[""] = err
		}
	}
	for _, d := range sortedKeys(dirs) {
		if err := r.syncDirLocked(ctx, d); err != nil {
			failed[d] = err
		}
	}
	for i := range res.findings {
		f := &res.findings[i]
		switch f.Kind {
		case FsckTargetMissing, FsckTargetModified, FsckTargetPending:
		default:
			continue
		}
		d := f.Dir
		if f.File == PublicKeyFile {
			d = ""
		}
		if err := failed[d]; err != nil {
			f.Repair = "not repaired: " + tm.strip(err.Error())
			continue
		}
		what := f.File
		if what == "" {
			what = f.Dir
		}
		f.Repair = "synced " + what + " to " + tm.tgt.String()
		if err := record(Event{Action: EventFsckRepair, Path: what, Details: map[string]string{"kind": f.Kind, "target": tm.tgt.String()}}); err != nil {
			return err
		}
	}
	return nil
}
