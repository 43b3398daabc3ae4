package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/internal/fsutil"
	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/sign"
)

// The keyring is the store's word on which public keys the served
// RPM-GPG-KEY-repoctl holds: the active signing key first, then older keys
// that served files may still need. A key leaves it only by RetireKey, once
// nothing served needs it. The file is rewritten from the keyring at every
// Open, so a crash between a store change and the file is repaired then.
//
// Private keys: the active one is cfg.KeyPath(). A rotation keeps the key
// it replaces as ROOT/keys/old/KEYID.asc (0600, beside KEYID.pub.asc),
// outside the served tree; retiring a key leaves its private file there.
var (
	metaKeyRing  = []byte("keyring")      // keyRing JSON
	metaRotation = []byte("key.rotation") // KeyRotation JSON while a rotation is unfinished
)

// Event actions of key rotation.
const (
	EventKeyRotate = "key.rotate" // details: phase (started, finished), old_key_id, new_key_id, reason …
	EventKeyRetire = "key.retire" // details: key_id, fingerprint
)

// Rotation phases, in order; "done" only appears in results.
const (
	phaseInstall  = "install"  // keyring and rotation recorded; the new key file is not yet the active one
	phasePackages = "packages" // re-signing packages
	phaseRepodata = "repodata" // re-signing every repomd.xml.asc
	phaseDone     = "done"
)

// Why a rotation was started.
const (
	reasonRotate = "rotate" // `repoctl key rotate`
	reasonConfig = "config" // the configured signing key changed between two Opens
)

type ringKey struct {
	KeyID       string    `json:"key_id"`
	Fingerprint string    `json:"fingerprint"`
	Algorithm   string    `json:"algorithm"`
	UserID      string    `json:"user_id"`
	Created     time.Time `json:"created"`
	Added       time.Time `json:"added"`
	Public      string    `json:"public"` // armored
}

type keyRing struct {
	Active string    `json:"active"` // key id of the signing key
	Keys   []ringKey `json:"keys"`   // active first
}

func ringKeyOf(k *sign.Key) (ringKey, error) {
	pub, err := k.PublicArmored()
	if err != nil {
		return ringKey{}, fmt.Errorf("exporting public key %s: %w", k.KeyID(), err)
	}
	return ringKey{KeyID: k.KeyID(), Fingerprint: k.Fingerprint(), Algorithm: k.Algorithm(), UserID: k.UserID(),
		Created: k.Created().UTC(), Added: time.Now().UTC(), Public: string(pub)}, nil
}

func (kr *keyRing) find(id string) int {
	for i, k := range kr.Keys {
		if k.KeyID == id {
			return i
		}
	}
	return -1
}

// activate puts k first and makes it the signing key; a key that was
// there already keeps its entry (and when it was added).
func (kr *keyRing) activate(k ringKey) {
	if i := kr.find(k.KeyID); i >= 0 {
		k = kr.Keys[i]
		kr.Keys = append(kr.Keys[:i], kr.Keys[i+1:]...)
	}
	kr.Keys = append([]ringKey{k}, kr.Keys...)
	kr.Active = k.KeyID
}

// served is the content of RPM-GPG-KEY-repoctl: every key's armored block,
// one after the other. rpm --import, rpmkeys and dnf's gpgkey= import each
// block of such a file (EL's RPM-GPG-KEY-redhat-release has this form).
func (kr *keyRing) served() []byte {
	var b bytes.Buffer
	for _, k := range kr.Keys {
		b.WriteString(k.Public)
		if !strings.HasSuffix(k.Public, "\n") {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func getKeyRing(tx kv.Tx) (*keyRing, error) {
	var kr keyRing
	ok, err := getJSON(tx.Bucket(bucketMeta), metaKeyRing, &kr)
	if err != nil || !ok {
		return nil, err
	}
	return &kr, nil
}

func getRotation(tx kv.Tx) (*KeyRotation, error) {
	var rot KeyRotation
	ok, err := getJSON(tx.Bucket(bucketMeta), metaRotation, &rot)
	if err != nil || !ok {
		return nil, err
	}
	return &rot, nil
}

func putRotation(tx kv.Tx, rot *KeyRotation) error {
	if rot == nil {
		return tx.Bucket(bucketMeta).Delete(metaRotation)
	}
	return putJSON(tx.Bucket(bucketMeta), metaRotation, rot)
}

// ServedKey is one public key of ROOT/repo/RPM-GPG-KEY-repoctl.
type ServedKey struct {
	KeyID       string    `json:"key_id"`
	Fingerprint string    `json:"fingerprint"`
	Algorithm   string    `json:"algorithm"`
	UserID      string    `json:"user_id"`
	Created     time.Time `json:"created"`
	Added       time.Time `json:"added"` // when repoctl started serving it
	Active      bool      `json:"active"`
	Packages    int       `json:"packages"` // packages of the store signed by it
}

// KeyStatus is what KeyStatus reports.
type KeyStatus struct {
	Active string      `json:"active"` // key id of the signing key
	Keys   []ServedKey `json:"keys"`   // as served, active first
	// Rotation is the unfinished rotation, if any.
	Rotation *KeyRotation `json:"rotation,omitempty"`
	// Unknown counts packages signed by a key that is not served (a key
	// changed by an older repoctl whose public key could not be found).
	Unknown map[string]int `json:"unknown,omitempty"`
}

// KeyRotation is the state of a rotation, as the store keeps it while it
// is unfinished and as RotateKey reports it.
type KeyRotation struct {
	OldKeyID       string    `json:"old_key_id"`
	NewKeyID       string    `json:"new_key_id"`
	OldFingerprint string    `json:"old_fingerprint,omitempty"`
	NewFingerprint string    `json:"new_fingerprint,omitempty"`
	NewAlgorithm   string    `json:"new_algorithm,omitempty"`
	Reason         string    `json:"reason"` // "rotate" or "config" (the configured key changed)
	Started        time.Time `json:"started"`
	By             string    `json:"by"`
	// Phase is install, packages, repodata or (in results) done.
	Phase string `json:"phase"`
	// Pending is the new private key's file name in ROOT/keys during the
	// install phase.
	Pending string `json:"pending,omitempty"`
	// Packages is how many packages need the new signature in all (it
	// grows if an interrupted ingest signed with the old key is finished
	// meanwhile); Resigned how many have it.
	Packages  int `json:"packages"`
	Resigned  int `json:"resigned"`
	InPlace   int `json:"in_place"`  // signature area patched
	Rewritten int `json:"rewritten"` // too little reserved space: rewritten and re-linked
	// Dirs is how many repository directories have a repomd.xml.asc by
	// the new key at the end; Republished how many of them the repodata
	// phase had to re-sign (the others were republished with their
	// re-signed packages).
	Dirs        int        `json:"dirs"`
	Republished int        `json:"republished"`
	Finished    *time.Time `json:"finished,omitempty"`
	// Failed names packages this run could not re-sign; the rotation stays
	// unfinished until they are fixed or removed.
	Failed []string `json:"failed,omitempty"`
	DryRun bool     `json:"dry_run,omitempty"`
}

// KeyRotateRequest asks RotateKey for a rotation.
type KeyRotateRequest struct {
	// Algo is the new key's algorithm: rsa4096, rsa3072 or ed25519;
	// default signing.algo of the config.
	Algo string `json:"algo,omitempty"`
	// Import is a private key (armored or binary) to rotate to instead of
	// generating one. A passphrase-protected key must open with the
	// configured passphrase (signing.passphrase_file or
	// REPOCTL_KEY_PASSPHRASE), which the next start uses.
	Import []byte `json:"import,omitempty"`
	// Resume only finishes an unfinished rotation.
	Resume bool   `json:"resume,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
	Who    string `json:"who,omitempty"`
}

// KeyRetireRequest names a served key to drop.
type KeyRetireRequest struct {
	// KeyID is the key's 16-hex-digit id, its fingerprint, or the 8-digit
	// short id rpm shows in gpg-pubkey-XXXXXXXX.
	KeyID  string `json:"key_id"`
	DryRun bool   `json:"dry_run,omitempty"`
	Who    string `json:"who,omitempty"`
}

// KeyRetireResult tells what RetireKey dropped.
type KeyRetireResult struct {
	KeyID       string   `json:"key_id"`
	Fingerprint string   `json:"fingerprint"`
	Served      []string `json:"served"` // key ids still in RPM-GPG-KEY-repoctl
	DryRun      bool     `json:"dry_run,omitempty"`
}

// keyPassphrase is the passphrase of the configured key, if any.
func (r *Repo) keyPassphrase() ([]byte, error) {
	cfg := r.cfg
	if cfg.Signing.PassphraseFile != "" {
		b, err := os.ReadFile(cfg.Signing.PassphraseFile)
		if err != nil {
			return nil, fmt.Errorf("reading passphrase file %q: %w", cfg.Signing.PassphraseFile, err)
		}
		return bytes.TrimRight(b, "\r\n"), nil
	}
	if v := os.Getenv("REPOCTL_KEY_PASSPHRASE"); v != "" {
		return []byte(v), nil
	}
	return nil, nil
}

// signSteps counts each signed file as a step of the "signing" stage.
type signSteps struct{ o *options }

func (signSteps) Start(int)          {}
func (p signSteps) Done(sign.Result) { p.o.step() }

// setKey makes key the signing key of r. Writers hold r.mu; keyMu is for
// the readers that do not (Status, Key).
func (r *Repo) setKey(key *sign.Key) error {
	signOpts := []sign.SignerOption{sign.WithJournalDir(signJournalDir(r.cfg))}
	if r.cfg.Signing.Legacy {
		signOpts = append(signOpts, sign.WithLegacy(true))
	}
	if _, ok := r.o.progress.(StepProgress); ok {
		signOpts = append(signOpts, sign.WithProgress(signSteps{&r.o}))
	}
	s, err := sign.NewSigner(key, signOpts...)
	if err != nil {
		return fmt.Errorf("creating signer: %w", err)
	}
	r.keyMu.Lock()
	r.key, r.signer = key, s
	r.keyMu.Unlock()
	return nil
}

// finishKeyInstall completes the last step of `key rotate` that a crash
// interrupted: the new key file, written and recorded, becomes the active
// key file. It runs before the key is loaded.
func (r *Repo) finishKeyInstall() error {
	var rot *KeyRotation
	if err := r.st.db.View(func(tx kv.Tx) (err error) { rot, err = getRotation(tx); return }); err != nil {
		return err
	}
	if rot == nil || rot.Phase != phaseInstall || rot.Pending == "" {
		return nil
	}
	if !plainName(rot.Pending) {
		return fmt.Errorf("%w: pending key file %q of the key rotation", ErrEscape, rot.Pending)
	}
	pending := filepath.Join(r.cfg.Paths.Keys, rot.Pending)
	if _, err := os.Lstat(pending); errors.Is(err, fs.ErrNotExist) {
		return nil // renamed before the crash; syncKeyring checks the key
	}
	return r.installKeyFile(pending)
}

// installKeyFile makes the private key file pending the active key file,
// atomically, and puts its public key beside it.
func (r *Repo) installKeyFile(pending string) error {
	dst := r.cfg.KeyPath()
	if err := os.Rename(pending, dst); err != nil {
		return fmt.Errorf("installing the new signing key %q as %q: %w", pending, dst, err)
	}
	if err := fsutil.SyncDir(filepath.Dir(dst)); err != nil {
		return err
	}
	pub, err := sign.ExportPublic(dst)
	if err != nil {
		return fmt.Errorf("exporting the new public key: %w", err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(filepath.Dir(dst), "signing.pub.asc"), pub, 0o644)
}

// syncKeyring runs at Open once the key is loaded. It creates the keyring
// of a store an older repoctl made, notices when the configured key
// changed since the last Open (and then starts a rotation to it, keeping
// the old public key served), and writes RPM-GPG-KEY-repoctl from the
// keyring.
func (r *Repo) syncKeyring(ctx context.Context) error {
	cur := r.key
	var notice string
	var ring *keyRing
	err := r.st.db.Update(func(tx kv.Tx) error {
		var err error
		ring, err = getKeyRing(tx)
		if err != nil {
			return err
		}
		rot, err := getRotation(tx)
		if err != nil {
			return err
		}
		changed := false
		if rot != nil && rot.Phase == phaseInstall {
			if cur.KeyID() != rot.NewKeyID {
				return fmt.Errorf("an unfinished key rotation from %s to %s: the signing key file %q holds %s and the new key's file %q is missing",
					rot.OldKeyID, rot.NewKeyID, r.cfg.KeyPath(), cur.KeyID(), filepath.Join(r.cfg.Paths.Keys, rot.Pending))
			}
			rot.Phase, rot.Pending = phasePackages, ""
			changed = true
		}
		me, err := ringKeyOf(cur)
		if err != nil {
			return err
		}
		var events []Event
		switch {
		case ring == nil:
			// A store from before keyrings served only the current key.
			// Packages signed by another key mean the configured key was
			// changed: find that key's public part where an older repoctl
			// left it, and rotate.
			ring = &keyRing{Active: me.KeyID, Keys: []ringKey{me}}
			changed = true
			others, err := otherSigners(tx, me.KeyID)
			if err != nil {
				return err
			}
			if len(others) > 0 && rot == nil {
				for _, k := range r.findPublicKeys(others) {
					rk, err := ringKeyOf(k)
					if err != nil {
						return err
					}
					ring.Keys = append(ring.Keys, rk)
				}
				old := mostUsed(others)
				rot = r.newRotation(old, cur, reasonConfig, actor{who: r.o.who, caller: self()})
				if i := ring.find(old); i >= 0 {
					rot.OldFingerprint = ring.Keys[i].Fingerprint
				} else {
					notice = fmt.Sprintf("%d packages are signed by key %s, whose public key was not found (not in %s nor in %s); hosts cannot verify them until they are re-signed",
						others[old], old, filepath.Join(r.cfg.Paths.Repo, PublicKeyFile), r.cfg.Paths.Keys)
				}
				events = append(events, rotationEvent(rot, "started", nil))
			}
		case ring.Active != me.KeyID:
			// The configured key changed since the last Open.
			old := ring.Active
			oldFP := ""
			if i := ring.find(old); i >= 0 {
				oldFP = ring.Keys[i].Fingerprint
			}
			ring.activate(me)
			changed = true
			if rot != nil && rot.NewKeyID != me.KeyID {
				events = append(events, rotationEvent(rot, "superseded", map[string]string{"by_key_id": me.KeyID}))
			}
			rot = r.newRotation(old, cur, reasonConfig, actor{who: r.o.who, caller: self()})
			rot.OldFingerprint = oldFP
			events = append(events, rotationEvent(rot, "started", nil))
		}
		if !changed {
			return nil
		}
		if err := putJSON(tx.Bucket(bucketMeta), metaKeyRing, ring); err != nil {
			return err
		}
		if err := putRotation(tx, rot); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return fmt.Errorf("reading the keyring: %w", err)
	}
	if notice != "" {
		r.o.log.Warn(notice)
		if r.o.notify != nil {
			r.o.notify(notice)
		}
	}
	if err := r.writeServedKeys(ring); err != nil {
		return err
	}
	var rot *KeyRotation
	if err := r.st.db.View(func(tx kv.Tx) (err error) { rot, err = getRotation(tx); return }); err != nil {
		return err
	}
	if rot != nil && !r.o.resume {
		return nil // the daemon resumes it itself
	}
	if rot != nil && r.o.notify != nil {
		r.o.notify(fmt.Sprintf("a signing-key rotation from %s to %s is unfinished (%d of %d packages re-signed); both keys stay served: run `repoctl key rotate --resume` or start the daemon to finish it",
			rot.OldKeyID, rot.NewKeyID, rot.Resigned, rot.Packages))
	}
	return nil
}

func (r *Repo) newRotation(old string, k *sign.Key, reason string, a actor) *KeyRotation {
	return &KeyRotation{OldKeyID: old, NewKeyID: k.KeyID(), NewFingerprint: k.Fingerprint(), NewAlgorithm: k.Algorithm(),
		Reason: reason, Started: time.Now().UTC(), By: a.who, Phase: phasePackages}
}

func rotationEvent(rot *KeyRotation, phase string, extra map[string]string) Event {
	d := map[string]string{"phase": phase, "old_key_id": rot.OldKeyID, "new_key_id": rot.NewKeyID, "reason": rot.Reason}
	if rot.NewFingerprint != "" {
		d["new_fingerprint"] = rot.NewFingerprint
	}
	if rot.OldFingerprint != "" {
		d["old_fingerprint"] = rot.OldFingerprint
	}
	for k, v := range extra {
		d[k] = v
	}
	return Event{Who: rot.By, Action: EventKeyRotate, Details: d}
}

// writeServedKeys writes RPM-GPG-KEY-repoctl from ring if it differs.
func (r *Repo) writeServedKeys(ring *keyRing) error {
	b := ring.served()
	served := filepath.Join(r.cfg.Paths.Repo, PublicKeyFile)
	if old, err := os.ReadFile(served); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := fsutil.WriteFileAtomic(served, b, r.tree.filePerm()); err != nil {
		return fmt.Errorf("writing %q: %w", served, err)
	}
	return nil
}

// otherSigners counts the packages of the store by signing key, less
// except.
func otherSigners(tx kv.Tx, except string) (map[string]int, error) {
	out := map[string]int{}
	err := eachKeyID(tx, func(_ []byte, id string) error {
		if id != "" && id != except {
			out[id]++
		}
		return nil
	})
	return out, err
}

func mostUsed(m map[string]int) string {
	best := ""
	for id, n := range m {
		if best == "" || n > m[best] || n == m[best] && id < best {
			best = id
		}
	}
	return best
}

// eachKeyID calls fn with every package's store key and signing key id,
// without decoding the rest of the record (its Entry can be large).
func eachKeyID(tx kv.Tx, fn func(k []byte, keyID string) error) error {
	return tx.Bucket(bucketPackages).ForEach(func(k, v []byte) error {
		var p struct {
			KeyID string `json:"key_id"`
		}
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decoding package %q: %w", k, err)
		}
		return fn(k, p.KeyID)
	})
}

// findPublicKeys looks for the public keys with the given ids where an
// older repoctl or the admin left them: the served key file, and every
// key file in ROOT/keys and ROOT/keys/old.
func (r *Repo) findPublicKeys(ids map[string]int) []*sign.Key {
	var out []*sign.Key
	seen := map[string]bool{}
	take := func(ks []*sign.Key) {
		for _, k := range ks {
			if _, want := ids[k.KeyID()]; want && !seen[k.KeyID()] {
				seen[k.KeyID()] = true
				out = append(out, k)
			}
		}
	}
	if f, err := os.Open(filepath.Join(r.cfg.Paths.Repo, PublicKeyFile)); err == nil {
		ks, _ := sign.ReadKeyring(f)
		f.Close()
		take(ks)
	}
	for _, dir := range []string{r.cfg.Paths.Keys, filepath.Join(r.cfg.Paths.Keys, "old")} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.asc"))
		for _, p := range files {
			pub, err := sign.ExportPublic(p)
			if err != nil {
				continue
			}
			ks, _ := sign.ReadKeyring(bytes.NewReader(pub))
			take(ks)
		}
	}
	return out
}

// KeyStatus reports the served keys, how many packages each signs, and an
// unfinished rotation. It never waits for a running batch or rotation.
func (r *Repo) KeyStatus(ctx context.Context) (*KeyStatus, error) {
	st := &KeyStatus{Keys: []ServedKey{}}
	err := r.view(func(tx kv.Tx) error {
		ring, err := getKeyRing(tx)
		if err != nil {
			return err
		}
		if st.Rotation, err = getRotation(tx); err != nil {
			return err
		}
		counts, err := otherSigners(tx, "")
		if err != nil {
			return err
		}
		if ring == nil {
			return nil
		}
		st.Active = ring.Active
		for _, k := range ring.Keys {
			st.Keys = append(st.Keys, ServedKey{KeyID: k.KeyID, Fingerprint: k.Fingerprint, Algorithm: k.Algorithm,
				UserID: k.UserID, Created: k.Created, Added: k.Added, Active: k.KeyID == ring.Active, Packages: counts[k.KeyID]})
			delete(counts, k.KeyID)
		}
		if len(counts) > 0 {
			st.Unknown = counts
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// matchKey finds the served key that spec names: a key id, a fingerprint
// or rpm's 8-digit short id, any case, with or without 0x.
func matchKey(ring *keyRing, spec string) (int, error) {
	s := strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(spec), "0x"), "0X"))
	if len(s) != 8 && len(s) != 16 && len(s) != 40 || strings.Trim(s, "0123456789abcdef") != "" {
		return -1, fmt.Errorf("%w: %q is not a key id (16 hex digits), fingerprint (40) or short id (8)", ErrUnknownKey, spec)
	}
	found := -1
	for i, k := range ring.Keys {
		if k.KeyID == s || k.Fingerprint == s || strings.HasSuffix(k.KeyID, s) && len(s) == 8 {
			if found >= 0 {
				return -1, fmt.Errorf("%w: %q matches keys %s and %s; give the full key id", ErrUnknownKey, spec, ring.Keys[found].KeyID, k.KeyID)
			}
			found = i
		}
	}
	if found < 0 {
		var ids []string
		for _, k := range ring.Keys {
			ids = append(ids, k.KeyID)
		}
		return -1, fmt.Errorf("%w: %q; served keys: %s", ErrUnknownKey, spec, strings.Join(ids, ", "))
	}
	return found, nil
}

// RetireKey drops an old public key from RPM-GPG-KEY-repoctl. It refuses
// (ErrKeyInUse) the active key, any key while a rotation is unfinished,
// and a key that a served file still needs: a package of the store or in
// flight recorded as signed by it, a placed package file whose signature
// header names it, or a repomd.xml.asc it made.
func (r *Repo) RetireKey(ctx context.Context, req KeyRetireRequest) (*KeyRetireResult, error) {
	act := r.actor(ctx, req.Who)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var ring *keyRing
	var rot *KeyRotation
	err := r.st.db.View(func(tx kv.Tx) (err error) {
		if ring, err = getKeyRing(tx); err == nil {
			rot, err = getRotation(tx)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if ring == nil {
		return nil, fmt.Errorf("%w: %q (no keyring)", ErrUnknownKey, req.KeyID)
	}
	i, err := matchKey(ring, req.KeyID)
	if err != nil {
		return nil, err
	}
	k := ring.Keys[i]
	if k.KeyID == ring.Active {
		return nil, fmt.Errorf("%w: %s is the active signing key; rotate first (`repoctl key rotate`)", ErrKeyInUse, k.KeyID)
	}
	if rot != nil {
		return nil, fmt.Errorf("%w: %s: %w (from %s to %s, %d of %d packages re-signed); finish it with `repoctl key rotate --resume`",
			ErrKeyInUse, k.KeyID, ErrRotationUnfinished, rot.OldKeyID, rot.NewKeyID, rot.Resigned, rot.Packages)
	}
	if uses, err := r.keyUses(ctx, k.KeyID); err != nil {
		return nil, err
	} else if len(uses) > 0 {
		more := ""
		if len(uses) > 5 {
			more = fmt.Sprintf(" and %d more", len(uses)-5)
			uses = uses[:5]
		}
		return nil, fmt.Errorf("%w: %s still signs %s%s", ErrKeyInUse, k.KeyID, strings.Join(uses, ", "), more)
	}
	res := &KeyRetireResult{KeyID: k.KeyID, Fingerprint: k.Fingerprint, DryRun: req.DryRun}
	rest := &keyRing{Active: ring.Active, Keys: append(append([]ringKey(nil), ring.Keys[:i]...), ring.Keys[i+1:]...)}
	for _, o := range rest.Keys {
		res.Served = append(res.Served, o.KeyID)
	}
	if req.DryRun {
		return res, nil
	}
	err = r.st.db.Update(func(tx kv.Tx) error {
		if err := putJSON(tx.Bucket(bucketMeta), metaKeyRing, rest); err != nil {
			return err
		}
		ev := act.stamp(Event{Action: EventKeyRetire, Details: map[string]string{"key_id": k.KeyID, "fingerprint": k.Fingerprint,
			"served": strings.Join(res.Served, " ")}})
		return appendEvent(tx, &ev)
	})
	if err != nil {
		return nil, fmt.Errorf("retiring key %s: %w", k.KeyID, err)
	}
	if err := r.writeServedKeys(rest); err != nil {
		return nil, err
	}
	r.o.log.Info("retired key", "key_id", k.KeyID, "served", res.Served)
	return res, nil
}

// keyUses lists what served still needs key id: packages the store or the
// ingest journal records as signed by it, placed files whose signature
// header names it, and repomd.xml.asc files it made. Package files are
// judged by their headers only (the payload is not read).
func (r *Repo) keyUses(ctx context.Context, id string) ([]string, error) {
	var uses []string
	var files []string
	err := r.st.db.View(func(tx kv.Tx) error {
		if err := eachPackageLight(tx, "", func(p *PackageRecord) error {
			if p.KeyID == id {
				uses = append(uses, "package "+p.Repo+"/"+p.NEVRA)
			}
			for _, pl := range p.Placements {
				files = append(files, pl.File)
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketJournal).ForEach(func(k, v []byte) error {
			var it journalItem
			if err := json.Unmarshal(v, &it); err != nil {
				return fmt.Errorf("decoding journal item %q: %w", k, err)
			}
			if it.Record != nil && it.Record.KeyID == id {
				uses = append(uses, "in-flight package "+it.Record.NEVRA)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	seen := map[fileKey]bool{}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fk, ok := r.tree.fileKey(f)
		if !ok || seen[fk] {
			continue
		}
		seen[fk] = true
		signers, err := r.tree.signers(f)
		if err != nil {
			uses = append(uses, fmt.Sprintf("file %s (unreadable signatures: %v)", f, err))
			continue
		}
		for _, s := range signers {
			if s == id {
				uses = append(uses, "file "+f)
			}
		}
	}
	dirs, err := r.publishedDirs()
	if err != nil {
		return nil, err
	}
	for _, d := range dirs {
		repomd, asc, err := r.tree.readRepomd(d)
		if err != nil || asc == nil {
			continue
		}
		if signer, _ := sign.VerifyDetached(repomd, asc, nil); signer == id {
			uses = append(uses, d+"/repodata/repomd.xml.asc")
		}
	}
	return uses, nil
}

// fileKey names a file by device and inode, so hard links count once.
type fileKey struct{ dev, ino uint64 }

func (t *tree) fileKey(file string) (fileKey, bool) {
	fi, err := t.root.Lstat(file)
	if err != nil || !fi.Mode().IsRegular() {
		return fileKey{}, false
	}
	st, ok := sysStat(fi)
	if !ok {
		return fileKey{}, false
	}
	return st, true
}

// signers lists the key ids of the signatures in a placed file's header.
func (t *tree) signers(file string) ([]string, error) {
	f, err := t.root.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return sign.PackageSigners(f)
}

// readRepomd returns dir's repodata/repomd.xml and repomd.xml.asc (nil
// when absent); a directory without repomd.xml is an error.
func (t *tree) readRepomd(dir string) (repomd, asc []byte, err error) {
	repomd, err = t.readSmall(dir + "/" + metadata.RepodataDir + "/repomd.xml")
	if err != nil {
		return nil, nil, err
	}
	asc, err = t.readSmall(dir + "/" + metadata.RepodataDir + "/repomd.xml.asc")
	if errors.Is(err, fs.ErrNotExist) {
		return repomd, nil, nil
	}
	return repomd, asc, err
}

// maxRepomd bounds what is read of repomd.xml and its signature: real ones
// are a few KiB.
const maxRepomd = 4 << 20

func (t *tree) readSmall(name string) ([]byte, error) {
	f, err := t.root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxRepomd {
		return nil, fmt.Errorf("%q: not a regular file of at most %d bytes", name, maxRepomd)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil && fi.Size() > 0 {
		return nil, err
	}
	return b, nil
}

// publishedDirs lists the repository directories (relative to ROOT/repo)
// that have packages in the store or a published repodata/repomd.xml, in
// the layout repo/channel/release.../arch of configured repositories and
// channels.
func (r *Repo) publishedDirs() ([]string, error) {
	set := map[string]bool{}
	r.idxMu.RLock()
	for d, m := range r.dirs {
		if len(m) > 0 {
			set[d] = true
		}
	}
	r.idxMu.RUnlock()
	repos, channels := map[string]bool{}, map[string]bool{}
	for _, x := range r.cfg.Repos {
		repos[x] = true
	}
	for _, x := range r.cfg.Channels {
		channels[x] = true
	}
	const maxDepth = 12
	err := fs.WalkDir(r.tree.root.FS(), ".", func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			if p == "." {
				return err
			}
			return nil // vanished or unreadable: not ours to judge here
		}
		if !de.IsDir() {
			return nil
		}
		parts := strings.Split(p, "/")
		switch {
		case p == ".":
			return nil
		case strings.HasPrefix(de.Name(), ".") || len(parts) > maxDepth:
			return fs.SkipDir
		case len(parts) == 1 && !repos[parts[0]], len(parts) == 2 && !channels[parts[1]]:
			return fs.SkipDir
		case de.Name() == metadata.RepodataDir:
			dir := path.Dir(p)
			if len(parts) >= 5 && releaseRE().MatchString(strings.Join(parts[2:len(parts)-2], "/")) && r.tree.exists(p+"/repomd.xml") {
				set[dir] = true
			}
			return fs.SkipDir
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing repository directories: %w", err)
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out, nil
}

// nextRevision is a repomd revision that differs from the one published
// in repomd: the current unix time, or one more than the published
// revision when that is not older.
func nextRevision(repomd []byte) string {
	now := time.Now().Unix()
	if md, err := metadata.ParseRepomd(repomd); err == nil {
		if n, err := strconv.ParseInt(md.Revision, 10, 64); err == nil && n >= now {
			return strconv.FormatInt(n+1, 10)
		}
	}
	return strconv.FormatInt(now, 10)
}

// Control-socket methods of key rotation.
const (
	apiKeyRotate = "key-rotate"
	apiKeyRetire = "key-retire"
	apiKeyStatus = "key-status"
)

// handleKeys registers the key methods on the control socket.
func handleKeys(svc socketService, handle func(string, func(context.Context, []byte) (any, error)), decode func([]byte, any) error) {
	handle(apiKeyRotate, func(ctx context.Context, body []byte) (any, error) {
		var req KeyRotateRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.RotateKey(ctx, req)
	})
	handle(apiKeyRetire, func(ctx context.Context, body []byte) (any, error) {
		var req KeyRetireRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.RetireKey(ctx, req)
	})
	handle(apiKeyStatus, func(ctx context.Context, body []byte) (any, error) {
		return svc.KeyStatus(ctx)
	})
}
