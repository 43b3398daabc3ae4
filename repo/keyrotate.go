package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/sign"
)

// A rotation moves every served signature from the old key to a new one
// without a moment in which a host that imported RPM-GPG-KEY-repoctl cannot
// verify what it downloads:
//
//  1. install: the new key is written to ROOT/keys, the old private key is
//     kept in ROOT/keys/old, the keyring (both public keys, new first) and
//     the rotation are recorded in one transaction, RPM-GPG-KEY-repoctl is
//     rewritten with both keys, and only then the new key file replaces the
//     active one. New packages are signed with the new key from here on.
//  2. packages: in steps of rotateBatch packages, each package's file is
//     re-signed once (hard links in several channels are one inode), in
//     place through the sign journal or by atomic rewrite; after a rewrite
//     every other placement is re-linked to the new inode by link+rename.
//     The records (checksum, size, key id, rendered entry) and the dirty
//     mark of their directories are written in one transaction, then the
//     directories are published.
//  3. repodata: every repository directory whose repomd.xml.asc is not by
//     the new key (one whose packages did not change, an empty one) is
//     republished with a new revision, which re-signs it.
//  4. done: the rotation record goes, the old key stays served until
//     RetireKey.
//
// Every step is idempotent, so an interrupted rotation resumes where it
// stopped: the daemon does that when it starts, `repoctl key rotate
// --resume` does it without a daemon. A file signed before the crash is
// "unchanged" to the signer and only its record is completed.

// rotateBatch is how many packages one step re-signs, records and
// publishes together. Tests lower it.
var rotateBatch = 256

// maxImportKey bounds a key passed to RotateKey; real keys are a few KiB.
const maxImportKey = 1 << 20

// RotateKey makes (or, with req.Import, takes) a new signing key and
// rotates the store to it (see above); with req.Resume it only finishes an
// unfinished rotation. It returns when the rotation is done, or with the
// state reached when it fails or ctx ends (the rotation then stays
// unfinished and resumable). One rotation runs at a time: a second call
// waits for the first.
func (r *Repo) RotateKey(ctx context.Context, req KeyRotateRequest) (*KeyRotation, error) {
	if req.Resume && (req.Algo != "" || len(req.Import) > 0) {
		return nil, fmt.Errorf("%w: --resume finishes the unfinished rotation and takes no new key", ErrBadRequest)
	}
	if len(req.Import) > maxImportKey {
		return nil, fmt.Errorf("%w: imported key is larger than %d bytes", ErrBadRequest, maxImportKey)
	}
	switch req.Algo {
	case "", "rsa4096", "rsa3072", "ed25519":
	default:
		return nil, fmt.Errorf("%w: key algorithm %q (want rsa4096, rsa3072 or ed25519)", ErrBadRequest, req.Algo)
	}
	act := r.actor(ctx, req.Who)
	if !req.Resume {
		// Say so at once rather than wait for the rotation under way
		// (the daemon's resume) and then start another.
		if rot := r.currentRotation(); rot != nil {
			return nil, fmt.Errorf("%w: from %s to %s (%d of %d packages re-signed, phase %s); run `repoctl key rotate --resume`",
				ErrRotationUnfinished, rot.OldKeyID, rot.NewKeyID, rot.Resigned, rot.Packages, rot.Phase)
		}
	}
	asked := time.Now()
	select {
	case r.rotSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.rotSem }()
	if req.Resume && req.DryRun {
		rot := r.currentRotation()
		if rot != nil {
			rot.DryRun = true
		}
		return rot, nil
	}
	if !req.Resume {
		rot, err := r.startRotation(ctx, req, act)
		if err != nil || req.DryRun {
			return rot, err
		}
	}
	rot, err := r.runRotation(ctx, act)
	if last := r.lastRotation; rot == nil && err == nil && last != nil && last.Finished != nil && last.Finished.After(asked) {
		// Another caller (the daemon resuming) finished it while this
		// one waited: that is the answer to this --resume too.
		rot = last
	}
	return rot, err
}

// rotationPending reports whether an unfinished rotation is recorded.
func (r *Repo) rotationPending() bool {
	pending := false
	r.view(func(tx kv.Tx) error {
		rot, err := getRotation(tx)
		pending = rot != nil
		return err
	})
	return pending
}

// startRotation is step 1.
func (r *Repo) startRotation(ctx context.Context, req KeyRotateRequest, act actor) (*KeyRotation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var ring *keyRing
	var rot *KeyRotation
	total := 0
	err := r.st.db.View(func(tx kv.Tx) (err error) {
		if ring, err = getKeyRing(tx); err != nil {
			return err
		}
		if rot, err = getRotation(tx); err != nil {
			return err
		}
		total = tx.Bucket(bucketPackages).Stats().KeyN
		return nil
	})
	if err != nil {
		return nil, err
	}
	if rot != nil {
		return nil, fmt.Errorf("%w: from %s to %s (%d of %d packages re-signed, phase %s); run `repoctl key rotate --resume`",
			ErrRotationUnfinished, rot.OldKeyID, rot.NewKeyID, rot.Resigned, rot.Packages, rot.Phase)
	}
	if ring == nil {
		return nil, errors.New("rotating the key: the store has no keyring (reopen the repository)")
	}
	if r.cfg.Signing.Key != "" {
		return nil, fmt.Errorf("%w: [signing] key names %q, a key file repoctl does not manage: put the new key there (or point [signing] key at it), then restart the daemon or run `repoctl key rotate --resume`, and repoctl rotates to it",
			ErrBadConfig, r.cfg.Signing.Key)
	}
	old := r.key
	algo := req.Algo
	if algo == "" {
		algo = r.cfg.Signing.Algo
	}
	var nk *sign.Key
	switch {
	case len(req.Import) > 0:
		pass, err := r.keyPassphrase()
		if err != nil {
			return nil, err
		}
		if nk, err = sign.ReadKey(bytes.NewReader(req.Import), pass); err != nil {
			return nil, fmt.Errorf("importing the new key: %w", err)
		}
		if !nk.CanSign() {
			return nil, fmt.Errorf("importing the new key: %w", sign.ErrNoPrivateKey)
		}
		algo = nk.Algorithm()
	case req.DryRun:
		// Generating an RSA key only to say what would happen takes
		// seconds and shows nothing.
	default:
		if nk, err = sign.GenerateKey(algo, r.cfg.Signing.Name, r.cfg.Signing.Email); err != nil {
			return nil, fmt.Errorf("generating the new %s key: %w", algo, err)
		}
	}
	if nk != nil && nk.KeyID() == old.KeyID() {
		return nil, fmt.Errorf("%w: key %s is already the signing key", ErrBadRequest, nk.KeyID())
	}
	plan := &KeyRotation{OldKeyID: old.KeyID(), OldFingerprint: old.Fingerprint(), NewAlgorithm: algo, Reason: reasonRotate,
		Started: time.Now().UTC(), By: act.who, Phase: phaseInstall, Packages: total}
	if nk != nil {
		plan.NewKeyID, plan.NewFingerprint = nk.KeyID(), nk.Fingerprint()
	}
	if req.DryRun {
		plan.DryRun = true
		dirs, err := r.publishedDirs()
		if err != nil {
			return nil, err
		}
		plan.Dirs = len(dirs)
		return plan, nil
	}

	keysDir := filepath.Dir(r.cfg.KeyPath())
	plan.Pending = "signing-" + nk.KeyID() + ".asc"
	pending := filepath.Join(keysDir, plan.Pending)
	err = nk.WritePrivateFile(pending)
	if errors.Is(err, sign.ErrKeyExists) {
		// Left by a rotate that died before recording anything (only an
		// import of the same key can name the same file again).
		os.Remove(pending)
		err = nk.WritePrivateFile(pending)
	}
	if err != nil {
		return nil, fmt.Errorf("writing the new key: %w", err)
	}
	if err := archiveKey(old, filepath.Join(keysDir, "old")); err != nil {
		os.Remove(pending)
		return nil, err
	}
	rk, err := ringKeyOf(nk)
	if err != nil {
		return nil, err
	}
	ring.activate(rk)
	err = r.st.db.Update(func(tx kv.Tx) error {
		if err := putJSON(tx.Bucket(bucketMeta), metaKeyRing, ring); err != nil {
			return err
		}
		if err := putRotation(tx, plan); err != nil {
			return err
		}
		ev := act.stamp(rotationEvent(plan, "started", map[string]string{"algorithm": algo}))
		return appendEvent(tx, &ev)
	})
	if err != nil {
		os.Remove(pending)
		return nil, fmt.Errorf("recording the key rotation: %w", err)
	}
	// From here on the rotation is recorded: a crash is finished by the
	// next Open (finishKeyInstall), never undone.
	if err := r.writeServedKeys(ring); err != nil {
		return nil, err
	}
	if err := hit("rotate.install"); err != nil {
		return nil, err
	}
	if err := r.installKeyFile(pending); err != nil {
		return nil, err
	}
	plan.Phase, plan.Pending = phasePackages, ""
	if err := r.st.db.Update(func(tx kv.Tx) error { return putRotation(tx, plan) }); err != nil {
		return nil, err
	}
	if err := r.setKey(nk); err != nil {
		return nil, err
	}
	r.o.log.Info("signing key rotated; re-signing", "old_key_id", plan.OldKeyID, "new_key_id", plan.NewKeyID, "packages", total)
	return plan, nil
}

// archiveKey keeps a copy of k's private key (0600, refused if it already
// exists) and its public key in dir, outside the served tree.
func archiveKey(k *sign.Key, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %q: %w", dir, err)
	}
	err := k.WritePrivateFile(filepath.Join(dir, k.KeyID()+".asc"))
	if err != nil && !errors.Is(err, sign.ErrKeyExists) {
		return fmt.Errorf("keeping the old key: %w", err)
	}
	return k.WritePublicFile(filepath.Join(dir, k.KeyID()+".pub.asc"))
}

// rotationRun is what one runRotation call remembers between steps.
type rotationRun struct {
	after   []byte            // store key of the last package looked at in this pass
	found   bool              // this pass found packages to re-sign
	counted bool              // Packages recounted at the start of this pass
	failed  map[string]string // store key → why it could not be re-signed
}

// runRotation runs steps 2–4 until the rotation is done, ctx ends or a
// step fails. It returns nil, nil when no rotation is unfinished.
func (r *Repo) runRotation(ctx context.Context, act actor) (*KeyRotation, error) {
	run := &rotationRun{failed: map[string]string{}}
	started := false
	for {
		if err := ctx.Err(); err != nil {
			return r.currentRotation(), err
		}
		rot, done, err := r.rotationStep(ctx, act, run, !started)
		if err != nil {
			if rot == nil {
				rot = r.currentRotation()
			}
			return rot, err
		}
		started = true
		if done {
			return rot, nil
		}
	}
}

func (r *Repo) currentRotation() *KeyRotation {
	var rot *KeyRotation
	r.view(func(tx kv.Tx) (err error) { rot, err = getRotation(tx); return })
	return rot
}

// rotationStep does one step under r.mu, so ingest, promote and remove
// run between steps: a batch of packages, or the repodata phase and the
// finish. done is true when nothing is left (rot is then the finished
// rotation, or nil if there was none).
func (r *Repo) rotationStep(ctx context.Context, act actor, run *rotationRun, first bool) (*KeyRotation, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, false, ErrClosed
	}
	// Finish interrupted ingests first: a package signed with the old key
	// that is still in the journal must be in the store to be re-signed.
	if err := r.resumeLocked(ctx); err != nil {
		return nil, false, err
	}
	var rot *KeyRotation
	if err := r.st.db.View(func(tx kv.Tx) (err error) { rot, err = getRotation(tx); return }); err != nil {
		return nil, false, err
	}
	if rot == nil {
		return nil, true, nil
	}
	if first {
		r.o.log.Info("key rotation", "old_key_id", rot.OldKeyID, "new_key_id", rot.NewKeyID, "phase", rot.Phase,
			"resigned", rot.Resigned, "packages", rot.Packages)
	}
	if rot.Phase == phaseInstall || r.key.KeyID() != rot.NewKeyID {
		return rot, false, fmt.Errorf("key rotation to %s: the signing key in use is %s; reopen the repository to finish installing the new key",
			rot.NewKeyID, r.key.KeyID())
	}
	switch rot.Phase {
	case phasePackages:
		if !run.counted {
			n, err := r.countToResign(rot.NewKeyID, run.failed)
			if err != nil {
				return rot, false, err
			}
			rot.Packages = rot.Resigned + n
			run.counted = true
		}
		batch, err := r.rotationBatch(rot.NewKeyID, run)
		if err != nil {
			return rot, false, err
		}
		if len(batch) > 0 {
			run.found = true
			return rot, false, r.resignBatch(ctx, rot, batch, run, act)
		}
		if run.found {
			// A finished ingest may have put a package signed with the
			// old key before the cursor: look again from the start,
			// until a pass finds nothing.
			run.after, run.counted, run.found = nil, false, false
			return rot, false, nil
		}
		if len(run.failed) > 0 {
			var why []string
			for k, v := range run.failed {
				why = append(why, strings.ReplaceAll(k, "\x00", "/")+": "+v)
			}
			sort.Strings(why)
			rot.Failed = why
			return rot, false, fmt.Errorf("key rotation to %s: %d packages could not be re-signed (the rotation stays unfinished; fix or remove them and run `repoctl key rotate --resume`): %s",
				rot.NewKeyID, len(why), strings.Join(why, "; "))
		}
		rot.Phase = phaseRepodata
		if err := r.st.db.Update(func(tx kv.Tx) error { return putRotation(tx, rot) }); err != nil {
			return rot, false, err
		}
		return rot, false, nil
	case phaseRepodata:
		if err := r.resignRepodata(ctx, rot, act); err != nil {
			return rot, false, err
		}
		now := time.Now().UTC()
		err := r.st.db.Update(func(tx kv.Tx) error {
			if err := putRotation(tx, nil); err != nil {
				return err
			}
			ev := act.stamp(rotationEvent(rot, "finished", map[string]string{
				"packages": strconv.Itoa(rot.Resigned), "in_place": strconv.Itoa(rot.InPlace),
				"rewritten": strconv.Itoa(rot.Rewritten), "dirs": strconv.Itoa(rot.Dirs),
				"republished": strconv.Itoa(rot.Republished)}))
			return appendEvent(tx, &ev)
		})
		if err != nil {
			return rot, false, fmt.Errorf("recording the finished key rotation: %w", err)
		}
		rot.Phase, rot.Finished = phaseDone, &now
		r.lastRotation = rot
		r.o.log.Info("key rotation finished", "old_key_id", rot.OldKeyID, "new_key_id", rot.NewKeyID,
			"packages", rot.Resigned, "in_place", rot.InPlace, "rewritten", rot.Rewritten, "dirs", rot.Dirs)
		return rot, true, nil
	}
	return rot, false, fmt.Errorf("key rotation in unknown phase %q", rot.Phase)
}

// countToResign counts the packages not yet signed by key id.
func (r *Repo) countToResign(id string, failed map[string]string) (int, error) {
	n := 0
	err := r.st.db.View(func(tx kv.Tx) error {
		return eachKeyID(tx, func(k []byte, keyID string) error {
			if _, bad := failed[string(k)]; keyID != id && !bad {
				n++
			}
			return nil
		})
	})
	return n, err
}

// rotationBatch returns up to rotateBatch packages after run.after that
// are not signed by key id and did not fail, and moves the cursor on.
func (r *Repo) rotationBatch(id string, run *rotationRun) ([]*PackageRecord, error) {
	var out []*PackageRecord
	err := r.st.db.View(func(tx kv.Tx) error {
		c := tx.Bucket(bucketPackages).Cursor()
		k, v := c.First()
		if run.after != nil {
			k, v = c.Seek(run.after)
			if k != nil && bytes.Equal(k, run.after) {
				k, v = c.Next()
			}
		}
		for ; k != nil && len(out) < rotateBatch; k, v = c.Next() {
			run.after = append(run.after[:0], k...)
			var light struct {
				KeyID string `json:"key_id"`
			}
			if err := json.Unmarshal(v, &light); err != nil {
				return fmt.Errorf("decoding package %q: %w", k, err)
			}
			if _, bad := run.failed[string(k)]; light.KeyID == id || bad {
				continue
			}
			p, err := decodePackage(tx, k, v)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// resignBatch is one step of phase 2 for recs.
func (r *Repo) resignBatch(ctx context.Context, rot *KeyRotation, recs []*PackageRecord, run *rotationRun, act actor) error {
	type job struct {
		rec *PackageRecord
		src string // placed file that is signed; the others are linked to it
		abs string
	}
	var jobs []job
	fail := func(p *PackageRecord, why string) {
		run.failed[string(pkgKey(p.Repo, p.NEVRA))] = why
		r.o.log.Error("key rotation: cannot re-sign package", "repo", p.Repo, "nevra", p.NEVRA, "why", why)
	}
	for _, p := range recs {
		src := ""
		for _, pl := range p.Placements {
			if checkPlacement(p.Repo, pl) != nil {
				fail(p, fmt.Sprintf("placement %q is not valid", pl.File))
				src = ""
				break
			}
			if src == "" && r.tree.exists(pl.File) {
				src = pl.File
			}
		}
		if _, bad := run.failed[string(pkgKey(p.Repo, p.NEVRA))]; bad {
			continue
		}
		if src == "" {
			fail(p, "no placed copy of it exists")
			continue
		}
		jobs = append(jobs, job{rec: p, src: src, abs: filepath.Join(r.tree.dir, filepath.FromSlash(src))})
	}
	if len(jobs) == 0 {
		return nil
	}
	paths := make([]string, len(jobs))
	for i, j := range jobs {
		paths[i] = j.abs
	}
	sres, err := r.signFiles(ctx, paths)
	if err == nil && len(sres) != len(jobs) {
		err = fmt.Errorf("signer returned %d results for %d files", len(sres), len(jobs))
	}
	if err != nil {
		if isTransient(err) {
			return fmt.Errorf("%w: re-signing: %v", ErrTransient, err)
		}
		return fmt.Errorf("re-signing: %w", err)
	}
	if err := hit("rotate.signed"); err != nil {
		return err
	}
	dirs := map[string]bool{}
	var done []*PackageRecord
	var events []Event
	inPlace, rewritten := 0, 0
	for i, j := range jobs {
		p := j.rec
		if err := sres[i].Err; err != nil {
			if isTransient(err) {
				return fmt.Errorf("%w: re-signing %q: %v", ErrTransient, j.src, err)
			}
			fail(p, err.Error())
			continue
		}
		for _, pl := range p.Placements {
			if pl.File != j.src {
				if err := r.tree.relink(j.src, pl); err != nil {
					return fmt.Errorf("re-linking %q to %q: %w", pl.File, j.src, err)
				}
			}
			dirs[pl.Dir] = true
		}
		pkg, err := metadata.ReadFile(ctx, j.abs)
		if err != nil {
			return fmt.Errorf("re-reading re-signed %q: %w", j.src, err)
		}
		if got := formatNEVRA(pkg.Name, pkg.Epoch, pkg.Version, pkg.Release, pkg.Arch); got != p.NEVRA {
			fail(p, fmt.Sprintf("the placed file %q is %s", j.src, got))
			continue
		}
		entry, err := pkg.Entry(p.FileName, metadata.RenderOptions{ChangelogLimit: r.cfg.Publish.ChangelogLimit})
		if err != nil {
			return fmt.Errorf("rendering re-signed %q: %w", j.src, err)
		}
		how := "unchanged" // signed before a crash; only the record was missing
		switch {
		case sres[i].Action == sign.ActionUnchanged:
		case sres[i].InPlace:
			how = "in place"
			inPlace++
		default:
			how = "rewritten"
			rewritten++
		}
		events = append(events, act.stamp(Event{Action: EventSign, Repo: p.Repo, NEVRA: p.NEVRA, Path: j.src,
			Details: map[string]string{"key_id": sres[i].KeyID, "old_key_id": p.KeyID, "sha256": entry.PkgID,
				"old_sha256": p.SHA256, "rotation": rot.OldKeyID + ".." + rot.NewKeyID, "how": how}}))
		p.SHA256, p.Size, p.KeyID, p.Entry = entry.PkgID, entry.Size, sres[i].KeyID, entry
		done = append(done, p)
	}
	if len(done) == 0 {
		return nil
	}
	for d := range dirs {
		if err := r.tree.syncDir(d); err != nil {
			return err
		}
	}
	dirList := sortedKeys(dirs)
	rot.Resigned += len(done)
	rot.InPlace += inPlace
	rot.Rewritten += rewritten
	// In parts if etcd's limits want it (rotateBatch records are more
	// than a stock etcd takes at once), each package with its sign event
	// (events[i] is done[i]'s): the directories are marked dirty with the
	// first part, the rotation's progress goes with the last; a crash
	// between leaves the rest recorded as signed by the old key, and the
	// next step re-signs them (their files are already: "unchanged").
	err = kv.UpdateInParts(r.st.db, len(done), func(tx kv.Tx, lo, hi int) error {
		if lo == 0 {
			if err := markDirty(tx, dirList); err != nil {
				return err
			}
		}
		for _, p := range done[lo:hi] {
			if err := putPackage(tx, p); err != nil {
				return err
			}
		}
		if err := appendEvents(tx, events[lo:hi]); err != nil {
			return err
		}
		if hi < len(done) {
			return nil
		}
		return putRotation(tx, rot)
	})
	if err != nil {
		return fmt.Errorf("recording re-signed packages: %w", err)
	}
	for _, p := range done {
		r.indexAdd(p, p.Placements)
	}
	if err := hit("rotate.recorded"); err != nil {
		return err
	}
	if err := r.publishDirty(ctx, dirList, act); err != nil {
		return fmt.Errorf("publishing re-signed packages: %w", err)
	}
	return nil
}

// resignRepodata is phase 3: every repository directory ends with a
// repomd.xml.asc by the new key.
func (r *Repo) resignRepodata(ctx context.Context, rot *KeyRotation, act actor) error {
	dirs, err := r.publishedDirs()
	if err != nil {
		return err
	}
	keys := []*sign.Key{r.key}
	rot.Dirs = 0
	var events []Event
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		repomd, asc, rerr := r.tree.readRepomd(d)
		if rerr == nil && asc != nil {
			if _, err := sign.VerifyDetached(repomd, asc, keys); err == nil {
				rot.Dirs++
				continue
			}
		}
		r.idxMu.RLock()
		idx := r.dirs[d]
		entries := make([]metadata.Entry, 0, len(idx))
		for _, e := range idx {
			entries = append(entries, *e)
		}
		r.idxMu.RUnlock()
		if errors.Is(rerr, fs.ErrNotExist) && len(entries) == 0 {
			continue // never published, nothing to sign
		}
		// A new revision makes an unchanged repository re-sign.
		pr, err := r.tree.publish(ctx, d, entries,
			append(r.publishOptions(d, r.key.DetachSignArmored), metadata.WithRevision(nextRevision(repomd)))...)
		if err != nil {
			return fmt.Errorf("re-signing the repodata of %q: %w", d, err)
		}
		r.o.log.Info("re-signed repodata", "dir", d, "packages", len(entries), "revision", pr.Revision)
		events = append(events, act.stamp(Event{Action: EventPublish, Path: d,
			Details: map[string]string{"packages": strconv.Itoa(len(entries)), "key_id": rot.NewKeyID, "revision": pr.Revision}}))
		rot.Dirs++
		rot.Republished++
	}
	if err := hit("rotate.repodata"); err != nil {
		return err
	}
	return r.st.db.Update(func(tx kv.Tx) error {
		if err := putRotation(tx, rot); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
}

// relink makes pl.File the same file as the in-tree file srcFile,
// atomically: a link under a hidden name renamed over the old one, so a
// client always finds either the old or the new file.
func (t *tree) relink(srcFile string, pl Placement) error {
	src, err := t.root.Lstat(srcFile)
	if err != nil {
		return err
	}
	if cur, err := t.root.Lstat(pl.File); err == nil && os.SameFile(src, cur) {
		return nil
	}
	tmp := pl.Dir + "/." + path.Base(pl.File) + ".repoctl-relink"
	t.root.Remove(tmp)
	if err := t.root.Link(srcFile, tmp); err != nil {
		if errors.Is(err, syscall.EXDEV) || errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EMLINK) {
			return t.linkWithin(srcFile, pl) // copies, still by rename
		}
		return err
	}
	if err := t.root.Rename(tmp, pl.File); err != nil {
		t.root.Remove(tmp)
		return err
	}
	return nil
}

// sysStat is the device and inode of fi.
func sysStat(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{dev: uint64(st.Dev), ino: st.Ino}, true
}

// resumeRotation is the daemon finishing an unfinished rotation. A step
// that fails for a transient fault is retried with the ingest back-off;
// any other failure is logged and waits for `repoctl key rotate --resume`.
func resumeRotation(ctx context.Context, r *Repo, log *slog.Logger) {
	for failures := 0; ; failures++ {
		rot, err := r.RotateKey(ctx, KeyRotateRequest{Resume: true, Who: "daemon"})
		if err == nil {
			if rot != nil {
				log.Info("resumed key rotation finished", "old_key_id", rot.OldKeyID, "new_key_id", rot.NewKeyID, "packages", rot.Resigned)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		if !isTransient(err) {
			log.Error("key rotation stopped; both keys stay served", "err", err)
			return
		}
		delay := min(time.Second<<min(failures, 6), time.Minute)
		log.Warn("key rotation: transient fault, retrying", "err", err, "in", delay)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return
		}
	}
}
