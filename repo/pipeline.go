package repo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/repoctl/repoctl/internal/fsutil"
	"github.com/repoctl/repoctl/internal/nevra"
	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo/input"
	"github.com/repoctl/repoctl/sign"
)

// failpoint, when set by a test, is called as each journal state is reached;
// a non-nil error makes the pipeline return at once without cleaning up, as
// if the process had died there.
var failpoint func(state string) error

func hit(state string) error {
	if failpoint != nil {
		return failpoint(state)
	}
	return nil
}

// Rejection reason codes: the first word of a .reason file.
const (
	reasonUnreadable = "unreadable"
	reasonInvalid    = "invalid"
	reasonHeader     = "invalid-header"
	reasonUnroutable = "unroutable"
	reasonDuplicate  = "duplicate-nevra"
	reasonSign       = "sign-failed"
	reasonConflict   = "file-conflict"
)

// ingestItem is a journal item plus what only this call needs.
type ingestItem struct {
	*journalItem
	idx  int
	in   *os.File        // passed by a socket client; nil: open Src
	orig *metadata.Entry // header of the input, unsigned
	// content is the sha256 of the input from its main header on: the
	// build itself, whatever signatures it carries. Equal content is the
	// same package; it is what makes re-adding a file someone else signed,
	// or one a crash left signed, a no-op instead of a conflict.
	content    string
	dist       string
	arches     []string
	placements []Placement
	done       bool

	release string    // AddOptions.Release, for the .reason
	seen    *dropSeen // what the watcher saw of a drop-in; nil otherwise
	recv    fs.FileInfo
	// keepAt, origin and internal are for RejectedRetry: a file of
	// ROOT/rejected that is rejected again stays at keepAt with a new
	// .reason naming origin (the source its old one named), and reading
	// it is not refused for being inside the root.
	keepAt   string
	origin   string
	internal bool
}

// Add runs the pipeline on the caller's files, which are copied, never
// changed (unless o.Move). It returns one result per path; a rejected
// file is not an error of the call.
func (r *Repo) Add(ctx context.Context, paths []string, o AddOptions) ([]AddResult, error) {
	return r.Ingest(ctx, paths, o)
}

// AddFiles is Add for files a control-socket client opened and passed as
// descriptors: the daemon reads what the client could read, never a path
// with its own rights. names are what the client called them (for
// messages and events only). The files are not closed.
func (r *Repo) AddFiles(ctx context.Context, files []*os.File, names []string, o AddOptions) ([]AddResult, error) {
	if len(files) != len(names) {
		return nil, fmt.Errorf("%w: %d files for %d names", ErrBadRequest, len(files), len(names))
	}
	o.Move = false
	res, err := r.ingest(ctx, names, files, o)
	r.countIngest(res, o)
	return res, err
}

// Ingest is the batch pipeline: validate → sign → place → publish → record,
// with one publish per affected repository directory for the whole batch.
// The daemon calls it with o.Move for files from drop-in directories; every
// such file ends up in the repository, in ROOT/rejected, or (on error) in
// the journal for Resume.
//
// A fault of the machine rather than of a file (disk full, EIO, out of
// descriptors) fails the call with ErrTransient and rejects nothing: the
// files stay journaled, drop-ins go back to their directory, and a later
// attempt takes them again.
func (r *Repo) Ingest(ctx context.Context, paths []string, o AddOptions) ([]AddResult, error) {
	res, err := r.ingest(ctx, paths, nil, o)
	r.countIngest(res, o)
	return res, err
}

func (r *Repo) ingest(ctx context.Context, paths []string, files []*os.File, o AddOptions) ([]AddResult, error) {
	repoName, err := r.cfg.checkRepo(o.Repo)
	if err != nil {
		return nil, err
	}
	channel, err := r.cfg.checkChannel(o.Channel, r.cfg.DefaultChannel)
	if err != nil {
		return nil, err
	}
	if o.Release != "" {
		if o.Release, err = ParseRelease(o.Release); err != nil {
			return nil, err
		}
	}
	act := r.actor(ctx, o.Who)
	if o.DryRun {
		o.Move = false // a dry run never takes a drop-in
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	r.stages = stageClock{start: time.Now()}
	defer r.logStages(len(paths))
	if err := r.resumeLocked(ctx); err != nil {
		return nil, err
	}
	r.stages.mark("resume")
	results := make([]AddResult, len(paths))
	items := make([]*ingestItem, len(paths))
	now := time.Now().UTC()
	for i, p := range paths {
		results[i] = AddResult{Path: p}
		abs := p
		if files == nil {
			if a, err := filepath.Abs(p); err == nil {
				abs = a
			}
		}
		id := newID()
		items[i] = &ingestItem{idx: i, journalItem: &journalItem{
			ID: id, Src: abs, Spool: filepath.Join(r.cfg.Paths.Spool, id+".rpm"), Move: o.Move,
			Repo: repoName, Channel: channel, Who: act.who, Caller: act.caller, Note: act.note,
			State: stateReceived, Time: now, Owner: r.haNode(),
		}}
		if files != nil {
			items[i].in = files[i]
		}
		it := items[i]
		it.release = o.Release
		if o.drop != nil && o.Move {
			if seen, ok := o.drop.files[abs]; ok {
				it.seen = &seen
			}
		}
		if origin, ok := o.retry[abs]; ok {
			it.keepAt, it.origin, it.internal = abs, origin, true
		}
	}
	if err := r.st.setJournal(journalOf(items)...); err != nil {
		// The first write of an add: what fails here (the store's
		// leadership, its space) is the store's, not the packages'.
		return nil, fmt.Errorf("recording %d incoming package(s) in the store: %w", len(items), err)
	}
	r.stages.mark("journal-received")
	if err := hit(stateReceived); err != nil {
		return nil, err
	}
	var events []Event
	reject := func(it *ingestItem, code, msg string) error {
		res := &results[it.idx]
		msg = strings.ReplaceAll(msg, it.Spool, it.Src)
		if why := r.stillWritten(it, o.drop); why != "" {
			// Judged on bytes that are not final: back to the drop-in
			// directory, to be taken again once it settles.
			if err := r.rollBack(it.journalItem); err != nil {
				return err
			}
			res.Action, res.Reason = ActionDeferred, why+" (it failed as "+code+")"
			it.done = true
			return nil
		}
		res.Action, res.Reason = ActionRejected, code+": "+escapeText(msg)
		it.done = true
		if o.DryRun {
			os.Remove(it.Spool)
			return nil
		}
		if !it.Move {
			// The caller keeps their file and gets the reason: a copy in
			// ROOT/rejected would only pile up (junk.rpm, junk.rpm.1, …).
			os.Remove(it.Spool)
			events = append(events, act.stamp(Event{Action: EventReject, Repo: repoName, Channel: channel,
				NEVRA: res.NEVRA, Path: it.Src, Details: map[string]string{"reason": res.Reason}}))
			return nil
		}
		dst, err := r.rejectFile(it, code, msg)
		if err != nil {
			return err
		}
		res.Rejected = dst
		events = append(events, act.stamp(Event{Action: EventReject, Repo: repoName, Channel: channel,
			NEVRA: res.NEVRA, Path: it.Src, Details: map[string]string{"reason": res.Reason, "kept": dst}}))
		return nil
	}
	// transient fails the batch, leaving every item journaled: Resume
	// returns drop-ins to their directory and drops `add` copies.
	transientErr := func(step string, it *ingestItem, err error) error {
		r.o.log.Warn("transient fault; nothing rejected, the batch will be retried", "step", step, "file", it.Src, "err", err)
		return fmt.Errorf("%w: %s %q: %v", ErrTransient, step, it.Src, err)
	}

	// receive: take a private copy (or the file itself for drop-ins).
	for _, it := range items {
		err := r.receive(ctx, it)
		if err == nil {
			continue
		}
		if it.Move && errors.Is(err, fs.ErrNotExist) {
			// Gone before we took it (removed by whoever dropped it):
			// nothing to keep, nothing to reject.
			results[it.idx].Action = ActionRejected
			results[it.idx].Reason = reasonUnreadable + ": " + escapeText(err.Error())
			it.done = true
			continue
		}
		if ctx.Err() != nil {
			// Interrupted, not a fault: exit 130, not "retry". Every item
			// stays journaled, and the next open rolls them back.
			return nil, fmt.Errorf("receiving %q: %w", it.Src, ctx.Err())
		}
		if isTransient(err) {
			return nil, transientErr("receiving", it, err)
		}
		if it.Move {
			// A drop-in we cannot take (a symlink, a fifo) must leave the
			// directory, or the watcher would offer it forever.
			if err := reject(it, reasonUnreadable, err.Error()); err != nil {
				return nil, err
			}
			continue
		}
		// The caller keeps their file; nothing of it is in the spool.
		os.Remove(it.Spool)
		results[it.idx].Action = ActionRejected
		results[it.idx].Reason = reasonUnreadable + ": " + escapeText(err.Error())
		it.done = true
		events = append(events, act.stamp(Event{Action: EventReject, Repo: repoName, Channel: channel,
			Path: it.Src, Details: map[string]string{"reason": results[it.idx].Reason}}))
	}
	if err := fsutil.SyncDir(r.cfg.Paths.Spool); err != nil {
		return nil, err
	}
	r.stages.mark("receive")

	// validate: read headers with bounded workers.
	r.o.progress.Stage("validating", len(liveItems(items)))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.o.workers)
	verrs := make([]error, len(items))
	herrs := make([]error, len(items)) // header fields that fail nevra.Check
	for _, it := range items {
		if it.done {
			continue
		}
		g.Go(func() error {
			defer r.o.step()
			pkg, err := metadata.ReadFile(gctx, it.Spool)
			if err == nil {
				// Nothing is built from a header field before it passes:
				// not a path, an event, a log line or repodata.
				if herr := nevra.Check(pkg.Name, pkg.Epoch, pkg.Version, pkg.Release, pkg.Arch); herr != nil {
					herrs[it.idx] = herr
					return nil
				}
				it.orig, err = pkg.Entry(filepath.Base(it.Spool), metadata.RenderOptions{ChangelogLimit: r.cfg.Publish.ChangelogLimit})
			}
			if err == nil {
				it.content, err = contentSHA(it.Spool, pkg.HeaderStart)
			}
			if gctx.Err() != nil {
				return gctx.Err()
			}
			verrs[it.idx] = err
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	r.stages.mark("read")
	for _, it := range items {
		if err := verrs[it.idx]; err != nil && isTransient(err) {
			return nil, transientErr("reading", it, err)
		}
	}
	// firstCopy finds an identical copy earlier in the batch: it is signed
	// once, and the later copies share its outcome.
	firstCopy := map[string]*ingestItem{} // NEVRA NUL content → first item
	dupOf := map[*ingestItem]*ingestItem{}
	err = r.st.db.View(func(tx kv.Tx) error {
		for _, it := range items {
			if it.done {
				continue
			}
			if err := herrs[it.idx]; err != nil {
				if err := reject(it, reasonHeader, nevra.Why(err)); err != nil {
					return err
				}
				continue
			}
			if err := verrs[it.idx]; err != nil {
				if err := reject(it, reasonInvalid, err.Error()); err != nil {
					return err
				}
				continue
			}
			e := it.orig
			id := formatNEVRA(e.Name, e.Epoch, e.Version, e.Release, e.Arch)
			results[it.idx].NEVRA = id
			dist, arches, err := r.cfg.RouteTo(o.Release, e.Release, e.Arch, e.Arch == "src")
			if err != nil {
				if err := reject(it, reasonUnroutable, strings.TrimPrefix(err.Error(), ErrUnroutable.Error()+": ")); err != nil {
					return err
				}
				continue
			}
			it.dist, it.arches = dist, arches
			fileName, err := packageFileName(e)
			if err != nil {
				return err
			}
			for _, a := range arches {
				pl, err := newPlacement(repoName, channel, dist, a, fileName)
				if err != nil {
					return err
				}
				it.placements = append(it.placements, pl)
			}
			if other := r.fileOwner(it.placements, id); other != "" {
				msg := fmt.Sprintf("%s would be placed as %s, which %s already uses (they differ only in epoch)", id, fileName, other)
				if err := reject(it, reasonConflict, msg); err != nil {
					return err
				}
				continue
			}
			old, err := getPackage(tx, repoName, id)
			if err != nil {
				return err
			}
			if old != nil {
				if old.OrigSHA256 == e.PkgID || old.SHA256 == e.PkgID || old.ContentSHA256 == it.content {
					r.unchanged(it, old, &results[it.idx], &events)
					continue
				}
				msg := fmt.Sprintf("%s is already in repository %s as a different build (its header and payload differ; input sha256 %s, this file %s); a released package is never replaced: bump the release", id, repoName, old.OrigSHA256, e.PkgID)
				if err := reject(it, reasonDuplicate, msg); err != nil {
					return err
				}
				continue
			}
			if first, ok := firstCopy[id+"\x00"+it.content]; ok {
				dupOf[it] = first
				continue
			}
			firstCopy[id+"\x00"+it.content] = it
			it.State = stateValidated
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// settleCopies gives each identical later copy its first copy's
	// outcome once that is known.
	settleCopies := func() error {
		for dup, first := range dupOf {
			if dup.done {
				continue
			}
			res, f := &results[dup.idx], results[first.idx]
			switch {
			case f.Action == ActionDeferred:
				// Its first copy was still being written: so is it, for
				// all we know.
				if err := r.rollBack(dup.journalItem); err != nil {
					return err
				}
				res.Action, res.Reason = ActionDeferred, "same file as "+strconv.Quote(first.Src)+", which is still being written"
				dup.done = true
				continue
			case f.Action == ActionRejected:
				code, msg, _ := strings.Cut(f.Reason, ": ")
				if err := reject(dup, code, msg+" (same file as "+strconv.Quote(first.Src)+" in this batch)"); err != nil {
					return err
				}
				continue
			case f.Action == ActionWouldAdd:
				res.Action = ActionWouldAdd
			default:
				res.Action = ActionUnchanged
			}
			res.Reason = "same file as " + strconv.Quote(first.Src) + " in this batch"
			res.KeyID, res.SHA256, res.RepoPaths = f.KeyID, f.SHA256, f.RepoPaths
			dup.done = true
			os.Remove(dup.Spool)
		}
		return nil
	}
	if o.DryRun {
		for _, it := range items {
			if !it.done && dupOf[it] == nil {
				res := &results[it.idx]
				res.Action = ActionWouldAdd
				for _, pl := range it.placements {
					res.RepoPaths = append(res.RepoPaths, pl.File)
				}
				it.done = true
			}
		}
		if err := settleCopies(); err != nil {
			return nil, err
		}
		for _, it := range items {
			os.Remove(it.Spool)
		}
		return results, r.journalStep(items, nil) // records nothing
	}
	live := signable(items, dupOf)
	// Validated and received items roll back alike (Resume), so the step
	// is only worth a transaction when it decided something: a rejection
	// or an unchanged file leaves the journal with its event.
	if len(events) > 0 || len(live)+len(dupOf) < len(items) {
		if err := r.journalStep(items, events); err != nil {
			return nil, err
		}
	}
	events = nil
	r.stages.mark("validate")
	if err := hit(stateValidated); err != nil {
		return nil, err
	}
	if len(live) == 0 {
		return results, nil
	}

	// sign the private copies, durable as a batch.
	r.o.progress.Stage("signing", len(live))
	spools := make([]string, len(live))
	for i, it := range live {
		spools[i] = it.Spool
	}
	sres, err := r.signFiles(ctx, spools)
	if err == nil && len(sres) != len(live) {
		err = fmt.Errorf("signer returned %d results for %d files", len(sres), len(live))
	}
	if err == nil {
		err = ctx.Err() // a cancelled batch must not reject what it did not finish
	}
	if err != nil {
		// Unsigned items stay journaled as validated; the next Ingest or
		// Resume returns drop-ins to their directory.
		r.o.log.Error("signing batch failed", "err", err)
		if isTransient(err) {
			return nil, fmt.Errorf("%w: signing batch: %v", ErrTransient, err)
		}
		return nil, fmt.Errorf("signing batch: %w", err)
	}
	for i, it := range live {
		if err := sres[i].Err; err != nil && isTransient(err) {
			return nil, transientErr("signing", it, err)
		}
	}
	r.stages.mark("sign")
	// Copies of one NEVRA with different content were all signed; the
	// first that signed wins, so one copy's failure is only its own.
	winner := map[string]*ingestItem{} // NEVRA → copy that is added
	fileOf := map[string]string{}      // placed file → NEVRA, within this batch
	// The signer made what it wrote durable; a file it left as it was
	// (already signed by our key) or one rejected now may not be.
	needSync := false
	for i, it := range live {
		if a := sres[i].Action; sres[i].Err != nil || (a != sign.ActionSigned && a != sign.ActionReplaced) {
			needSync = true
		}
		if sres[i].Err != nil {
			if err := reject(it, reasonSign, sres[i].Err.Error()); err != nil {
				return nil, err
			}
			continue
		}
		id := results[it.idx].NEVRA
		if first, ok := winner[id]; ok {
			msg := fmt.Sprintf("%s appears twice in this batch with different content (%q and %q); the first that signed was added, not this copy", id, first.Src, it.Src)
			if err := reject(it, reasonDuplicate, msg); err != nil {
				return nil, err
			}
			continue
		}
		if other := batchFileOwner(fileOf, it.placements, id); other != "" {
			msg := fmt.Sprintf("%s would be placed as %s, which %s in this batch uses (they differ only in epoch)", id, path.Base(it.placements[0].File), other)
			if err := reject(it, reasonConflict, msg); err != nil {
				return nil, err
			}
			continue
		}
		winner[id] = it
		for _, pl := range it.placements {
			fileOf[pl.File] = id
		}
		pkg, err := metadata.ReadFile(ctx, it.Spool)
		if err != nil {
			return nil, fmt.Errorf("re-reading signed %q: %w", it.Src, err)
		}
		e := it.orig
		fileName := path.Base(it.placements[0].File)
		entry, err := pkg.Entry(fileName, metadata.RenderOptions{ChangelogLimit: r.cfg.Publish.ChangelogLimit})
		if err != nil {
			return nil, fmt.Errorf("rendering signed %q: %w", it.Src, err)
		}
		keyID := sres[i].KeyID
		if keyID == "" {
			keyID = r.key.KeyID()
		}
		it.Record = &PackageRecord{
			Repo: repoName, NEVRA: id, Name: e.Name, Epoch: e.Epoch, Version: e.Version,
			Release: e.Release, Arch: e.Arch, FileName: fileName,
			OrigSHA256: e.PkgID, OrigSize: e.Size, ContentSHA256: it.content, SHA256: entry.PkgID, Size: entry.Size, KeyID: keyID,
			Dist: it.dist, Added: now, AddedBy: act.who, Entry: entry, Placements: it.placements,
		}
		it.State = stateSigned
	}
	live = signable(items, dupOf)
	r.stages.mark("reread")
	if needSync || len(events) > 0 {
		if err := r.syncSpool(); err != nil {
			return nil, err
		}
	}
	r.stages.mark("syncfs")
	if err := r.journalStep(items, events); err != nil {
		return nil, err
	}
	events = nil
	r.stages.mark("journal-signed")
	if err := hit(stateSigned); err != nil {
		return nil, err
	}
	backlog := 0 // > 0: leave the publish to a later batch
	if r.mayDefer(o, len(live)) {
		backlog = o.drop.more
	}
	if err := r.commitItems(ctx, journalOf(live), nil, backlog); err != nil {
		return nil, err
	}
	for _, it := range live {
		it.done = true
		res := &results[it.idx]
		res.Action = ActionAdded
		res.KeyID = it.Record.KeyID
		res.SHA256 = it.Record.SHA256
		for _, pl := range it.Record.Placements {
			res.RepoPaths = append(res.RepoPaths, pl.File)
		}
	}
	if len(dupOf) > 0 {
		if err := settleCopies(); err != nil {
			return nil, err
		}
		if err := r.journalStep(items, events); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// signable is the items still in the pipeline, less identical later
// copies, which wait for their first copy's outcome.
func signable(items []*ingestItem, dupOf map[*ingestItem]*ingestItem) []*ingestItem {
	var out []*ingestItem
	for _, it := range items {
		if !it.done && dupOf[it] == nil {
			out = append(out, it)
		}
	}
	return out
}

// batchFileOwner is the NEVRA other than id that an earlier copy in this
// batch places at one of pls' files.
func batchFileOwner(fileOf map[string]string, pls []Placement, id string) string {
	for _, pl := range pls {
		if n, ok := fileOf[pl.File]; ok && n != id {
			return n
		}
	}
	return ""
}

func (r *Repo) unchanged(it *ingestItem, old *PackageRecord, res *AddResult, events *[]Event) {
	res.Action = ActionUnchanged
	if !old.InChannel(it.Channel) {
		res.Reason = fmt.Sprintf("already in %s as %s, not in channel %s: `repoctl promote` places it there",
			old.Repo, strings.Join(old.Channels(), ","), it.Channel)
	}
	res.KeyID = old.KeyID
	res.SHA256 = old.SHA256
	for _, pl := range old.Placements {
		res.RepoPaths = append(res.RepoPaths, pl.File)
	}
	it.done = true
	os.Remove(it.Spool)
	*events = append(*events, it.actor().stamp(Event{Action: EventUnchanged, Repo: it.Repo, Channel: it.Channel,
		NEVRA: old.NEVRA, Path: it.Src}))
}

// journalStep saves the state of the live items, drops decided ones and
// records their events, in one transaction (one commit per pipeline step)
// when the store's transactions hold it. Otherwise in parts, the events
// first: a decided item's file is gone from the spool already (rejected/,
// removed), so a crash between the parts makes Resume drop its journal
// item without taking it again, and its event is recorded once.
func (r *Repo) journalStep(items []*ingestItem, events []Event) error {
	return kv.UpdateInParts(r.st.db, len(events)+len(items), func(tx kv.Tx, lo, hi int) error {
		for i := lo; i < hi; i++ {
			if i < len(events) {
				if err := appendEvent(tx, &events[i]); err != nil {
					return err
				}
				continue
			}
			it := items[i-len(events)]
			var err error
			if it.done {
				err = tx.Bucket(bucketJournal).Delete([]byte(it.ID))
			} else {
				err = putJournal(tx, it.journalItem)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func liveItems(items []*ingestItem) []*ingestItem {
	var out []*ingestItem
	for _, it := range items {
		if !it.done {
			out = append(out, it)
		}
	}
	return out
}

func journalOf(items []*ingestItem) []*journalItem {
	out := make([]*journalItem, len(items))
	for i, it := range items {
		out[i] = it.journalItem
	}
	return out
}

// coalesceMaxPackages bounds, beside [daemon] max_publish_lag, how many
// packages coalesced publishes may leave out of a directory's repodata.
// A variable for tests.
var coalesceMaxPackages = 50000

// coalesceNow is the clock of max_publish_lag; tests move it.
var coalesceNow = time.Now

// deferredPublish is what batches recorded without publishing (under
// r.mu): the directories, marked dirty in the store too, so that a crash
// publishes them at the next start (resumeDirty).
type deferredPublish struct {
	dirs  map[string]bool
	since time.Time // when the first of them was left unpublished
	pkgs  int       // packages recorded since
	last  time.Time // when the last batch left its publish
}

// mayDefer reports whether a batch of n packages may leave its publish to
// a later batch: only drop-ins, while more ready ones wait behind it, and
// within the bounds (max_publish_lag since the first unpublished batch,
// coalesceMaxPackages).
func (r *Repo) mayDefer(o AddOptions, n int) bool {
	if o.drop == nil || o.drop.more <= 0 || !o.Move {
		return false
	}
	lag := r.cfg.maxPublishLag()
	if lag <= 0 {
		return false
	}
	d := &r.deferred
	if len(d.dirs) > 0 && coalesceNow().Sub(d.since) >= lag {
		return false
	}
	return d.pkgs+n < coalesceMaxPackages
}

// publishedDir forgets a directory's deferred publish once it is done.
func (r *Repo) publishedDir(dir string) {
	d := &r.deferred
	if !d.dirs[dir] {
		return
	}
	delete(d.dirs, dir)
	if len(d.dirs) == 0 {
		*d = deferredPublish{}
	}
}

// FlushDeferred publishes the directories that coalescing batches left
// unpublished, if the last of them is at least idle old; it returns at
// once (false) while a batch runs, which publishes them itself when the
// backlog is gone. The daemon calls it on a ticker, for a backlog that
// vanished (its files removed) before a batch could end it, and at stop.
func (r *Repo) FlushDeferred(ctx context.Context, idle time.Duration, wait bool) (bool, error) {
	if wait {
		r.mu.Lock()
	} else if !r.mu.TryLock() {
		return false, nil
	}
	defer r.mu.Unlock()
	if r.closed || len(r.deferred.dirs) == 0 || coalesceNow().Sub(r.deferred.last) < idle {
		return false, nil
	}
	return true, r.publishDirty(ctx, sortedKeys(r.deferred.dirs), actor{who: r.o.who, caller: self()})
}

// commit places, publishes and records items that are signed. It is the
// part of the pipeline that Resume rolls forward.
func (r *Repo) commit(ctx context.Context, items []*journalItem, extra []Event) error {
	return r.commitItems(ctx, items, extra, 0)
}

// commitItems is commit; with a backlog (files waiting behind this batch)
// it records the items with their directories marked dirty instead of
// publishing them. Without, it also publishes what earlier batches left.
func (r *Repo) commitItems(ctx context.Context, items []*journalItem, extra []Event, backlog int) error {
	if len(items) == 0 {
		return nil
	}
	deferPub := backlog > 0
	r.o.progress.Stage("placing", len(items))
	dirs := map[string]bool{}
	for _, it := range items {
		for _, pl := range it.Record.Placements {
			if err := checkPlacement(it.Record.Repo, pl); err != nil {
				return fmt.Errorf("placing %s: %w", it.Record.NEVRA, err)
			}
		}
		place := func(pl Placement) error { return r.tree.linkIn(it.Spool, pl) }
		if _, err := os.Stat(it.Spool); err == nil {
			// Served files get the tree's mode ([publish] file_mode, 0644:
			// Apache/nginx read the tree); placements are links to it.
			if err := os.Chmod(it.Spool, r.tree.filePerm()); err != nil {
				return fmt.Errorf("placing %s: %w", it.Record.NEVRA, err)
			}
		} else {
			// Resume after a crash past placement: any placed copy will do.
			src := ""
			for _, pl := range it.Record.Placements {
				if r.tree.exists(pl.File) {
					src = pl.File
					break
				}
			}
			if src == "" {
				return fmt.Errorf("placing %s: neither %q nor a placed copy exists", it.Record.NEVRA, it.Spool)
			}
			place = func(pl Placement) error { return r.tree.linkWithin(src, pl) }
		}
		for _, pl := range it.Record.Placements {
			if err := place(pl); err != nil {
				return fmt.Errorf("placing %s into %q: %w", it.Record.NEVRA, pl.Dir, err)
			}
			dirs[pl.Dir] = true
		}
		// Not journaled, nor is published below: Resume rolls every
		// signed item forward the same way (placing what is not placed
		// yet, publishing, recording), so a transaction each would only
		// add two fsyncs to every batch, one before its publish.
		it.State = statePlaced
		r.o.step()
	}
	for d := range dirs {
		if err := r.tree.syncDir(d); err != nil {
			return err
		}
	}
	r.stages.mark("place")
	if err := hit(statePlaced); err != nil {
		return err
	}
	var events []Event
	var flushed []string // dirs earlier batches left, published now
	if !deferPub {
		pending := map[string][]*metadata.Entry{}
		for _, it := range items {
			for _, pl := range it.Record.Placements {
				pending[pl.Dir] = append(pending[pl.Dir], it.Record.Entry)
			}
		}
		flushed = sortedKeys(r.deferred.dirs)
		pub := maps.Clone(dirs)
		for _, d := range flushed {
			pub[d] = true
		}
		var err error
		if events, err = r.publishDirs(ctx, sortedKeys(pub), pending, items[0].actor()); err != nil {
			return err
		}
		r.stages.mark("publish")
		for _, it := range items {
			it.State = statePublished
		}
		if err := hit(statePublished); err != nil {
			return err
		}
	}
	if err := r.uploadBeforeRecord(ctx, items); err != nil {
		return err
	}
	// One transaction when the store holds it; on an etcd whose limits
	// it exceeds, consecutive parts of the batch, each its packages'
	// records, events and journal items (and a channel version), so that
	// a burst lands on a stock etcd. A crash between parts leaves the
	// later parts' items journaled as signed: Resume places, publishes and
	// records them, as after a crash before this transaction. The dirty
	// marks of a deferred publish go first, the publish's events and the
	// clearing of what earlier batches left last.
	err := kv.UpdateInParts(r.st.db, len(items), func(tx kv.Tx, lo, hi int) error {
		if deferPub && lo == 0 {
			if err := markDirty(tx, sortedKeys(dirs)); err != nil {
				return err
			}
		}
		last := hi == len(items)
		if last {
			for _, d := range flushed {
				if err := tx.Bucket(bucketDirty).Delete([]byte(d)); err != nil {
					return err
				}
			}
		}
		cc := newChanChanges()
		var cause *Event
		for _, it := range items[lo:hi] {
			rec := it.Record
			if err := putPackageTracked(tx, cc, rec); err != nil {
				return err
			}
			a := it.actor()
			ev := []Event{
				a.stamp(Event{Action: EventSign, Repo: rec.Repo, NEVRA: rec.NEVRA, Path: it.Src,
					Details: signDetails(rec, it.Owner)}),
				a.stamp(Event{Action: EventAdd, Repo: rec.Repo, Channel: it.Channel, NEVRA: rec.NEVRA, Path: it.Src,
					Details: map[string]string{"orig_sha256": rec.OrigSHA256, "files": strings.Join(placedFiles(rec.Placements), " ")}}),
			}
			for i := range ev {
				if err := appendEvent(tx, &ev[i]); err != nil {
					return err
				}
			}
			if cause == nil {
				cause = &ev[1]
			}
			if err := tx.Bucket(bucketJournal).Delete([]byte(it.ID)); err != nil {
				return err
			}
		}
		if last {
			for _, evs := range [][]Event{events, extra} {
				for i := range evs {
					if err := appendEvent(tx, &evs[i]); err != nil {
						return err
					}
				}
			}
		}
		if err := cc.record(tx, cause); err != nil {
			return err
		}
		return r.expireVersions(tx, cc)
	})
	if err != nil {
		return fmt.Errorf("recording batch: %w", err)
	}
	r.stages.mark("record")
	for _, it := range items {
		r.indexAdd(it.Record, it.Record.Placements)
		os.Remove(it.Spool)
	}
	r.countAdded(len(items))
	if deferPub {
		d := &r.deferred
		now := coalesceNow()
		if len(d.dirs) == 0 {
			d.dirs, d.since = map[string]bool{}, now
		}
		for dir := range dirs {
			d.dirs[dir] = true
		}
		d.pkgs += len(items)
		d.last = now
		r.o.log.Info("publish coalesced", "backlog", backlog, "dirs", sortedKeys(dirs), "packages", len(items),
			"unpublished_packages", d.pkgs, "since", now.Sub(d.since).Round(time.Millisecond))
	}
	// A batch may bring a new release or arch: the other channels and
	// repositories get its (empty) repodata. The batch is recorded; a
	// failure here is retried by the next Resume.
	if err := r.fillReleases(ctx, false, items[0].actor()); err != nil {
		r.o.log.Warn("publishing repodata for new releases; retried on the next batch", "err", err)
	}
	byRepo := map[string]map[string]bool{}
	for _, it := range items {
		if byRepo[it.Record.Repo] == nil {
			byRepo[it.Record.Repo] = map[string]bool{}
		}
		for _, pl := range it.Record.Placements {
			byRepo[it.Record.Repo][pl.Channel] = true
		}
	}
	for repo, chs := range byRepo {
		r.applyRetention(ctx, items[0].actor(), repo, sortedKeys(chs))
	}
	r.stages.mark("after")
	return nil
}

// stageClock times the steps of one ingest batch, for the debug log
// (where a drop's latency goes: issue 13).
type stageClock struct {
	start time.Time
	last  time.Time
	attrs []any
}

func (c *stageClock) mark(name string) {
	if c.start.IsZero() {
		return
	}
	now := time.Now()
	if c.last.IsZero() {
		c.last = c.start
	}
	c.attrs = append(c.attrs, name, now.Sub(c.last).Round(10*time.Microsecond).String())
	c.last = now
}

func (r *Repo) logStages(files int) {
	c := &r.stages
	r.o.log.Debug("ingest stages", append([]any{"files", files, "took", time.Since(c.start).Round(10 * time.Microsecond).String()}, c.attrs...)...)
	*c = stageClock{}
}

// publishDirs writes repodata for each dir from the index plus pending
// entries not yet in the store, and returns one publish event per dir.
func (r *Repo) publishDirs(ctx context.Context, dirs []string, pending map[string][]*metadata.Entry, a actor, extra ...metadata.PublishOption) ([]Event, error) {
	var events []Event
	r.o.progress.Stage("publishing", len(dirs))
	for _, d := range dirs {
		// Publish sorts by file name itself, as createrepo_c does.
		// Pointers, not copies: the publisher only reads them.
		idx := r.dirs[d]
		entries := make([]*metadata.Entry, 0, len(idx)+len(pending[d]))
		for _, e := range idx {
			entries = append(entries, e)
		}
		for _, e := range pending[d] {
			if _, dup := idx[formatNEVRA(e.Name, e.Epoch, e.Version, e.Release, e.Arch)]; !dup {
				entries = append(entries, e)
			}
		}
		start := time.Now()
		pr, err := r.tree.publishRefs(ctx, d, entries, append(r.publishOptions(d, r.key.DetachSignArmored), extra...)...)
		r.freeAfterLoad()
		if err != nil {
			return nil, fmt.Errorf("publishing %q: %w", d, err)
		}
		r.publishedDir(d)
		r.o.log.Info("published", "dir", d, "packages", len(entries), "changed", pr.Changed,
			"blocks_reused", pr.BlocksReused, "blocks_compressed", pr.BlocksCompressed, "took", time.Since(start))
		events = append(events, a.stamp(Event{Action: EventPublish, Path: d,
			Details: map[string]string{"packages": strconv.Itoa(len(entries))}}))
		r.o.step()
		// Crash tests die here, between two directories of one change.
		if err := hit("publish.dir"); err != nil {
			return nil, err
		}
	}
	return events, nil
}

func placedFiles(pls []Placement) []string {
	out := make([]string, len(pls))
	for i, pl := range pls {
		out[i] = pl.File
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// contentSHA hashes path from offset start (the main header) to the end.
func contentSHA(path string, start int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if start <= 0 {
		return "", fmt.Errorf("%w: no main header offset", metadata.ErrMalformed)
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func insideDir(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func (r *Repo) inDropIn(p string) bool {
	for _, d := range r.cfg.DropIns {
		if real, err := filepath.EvalSymlinks(d.Dir); err == nil && insideDir(real, p) {
			return true
		}
	}
	return false
}

// fileOwner returns the NEVRA other than id that the store already
// publishes under one of pls' file names: two packages under one href are
// impossible.
func (r *Repo) fileOwner(pls []Placement, id string) string {
	for _, pl := range pls {
		if n, ok := r.hrefs[pl.Dir][path.Base(pl.File)]; ok && n != id {
			return n
		}
	}
	return ""
}

// receive puts the input into the private spool: a rename for drop-ins
// (same filesystem, atomic), otherwise a copy, so the caller's file is
// untouched. Whatever is received is checked on an open descriptor, never
// stat-then-open, and opened non-blocking, so a FIFO cannot wedge us.
func (r *Repo) receive(ctx context.Context, it *ingestItem) error {
	switch {
	case it.in != nil:
		// A descriptor a socket client passed: what the client can read.
		return input.Copy(ctx, it.in, it.Spool)
	case it.Move:
		if err := os.Rename(it.Src, it.Spool); err != nil {
			if !errors.Is(err, syscall.EXDEV) {
				return err
			}
			f, err := input.Open(it.Src, true)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := input.Copy(ctx, f, it.Spool); err != nil {
				return err
			}
			if err := fsutil.SyncFile(it.Spool); err != nil { // before the original goes
				return err
			}
			return os.Remove(it.Src)
		}
		// The spool is private: nobody can swap what we renamed, so an
		// lstat is enough, and a device is never opened.
		fi, err := os.Lstat(it.Spool)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return input.NotRegular(fi.Mode())
		}
		it.recv = fi
		return nil
	}
	// The CLI without a daemon: the caller's own rights. Still, never copy
	// repoctl's own files (the private key, the store) into a repository.
	real, err := filepath.EvalSymlinks(it.Src)
	if err != nil {
		return err
	}
	if insideDir(r.cfg.Root, real) && !r.inDropIn(real) && !(it.internal && insideDir(r.cfg.Paths.Rejected, real)) {
		return fmt.Errorf("%q is inside repoctl's root %q; copy it elsewhere or drop it into a drop-in directory", it.Src, r.cfg.Root)
	}
	f, err := input.Open(it.Src, it.internal)
	if err != nil {
		return err
	}
	defer f.Close()
	return input.Copy(ctx, f, it.Spool)
}

// syncSpool makes every spool file durable with one syncfs, so that a
// batch of copies and signatures costs one flush instead of one per file.
func (r *Repo) syncSpool() error {
	d, err := os.Open(r.cfg.Paths.Spool)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncing spool %q: %w", r.cfg.Paths.Spool, err)
	}
	return nil
}

// rejectFile keeps the bytes in ROOT/rejected/NAME with NAME.reason beside.
// The .reason is written first, so a file in rejected/ always has one once
// the move is done.
func (r *Repo) rejectFile(it *ingestItem, code, msg string) (string, error) {
	// The name in rejected/ is the input's, made tame: a name with a
	// newline or an escape sequence must not trip whoever lists the
	// directory. The exact name is in the .reason file, escaped.
	base := safeFileName(filepath.Base(it.Src))
	if strings.HasSuffix(base, ".reason") {
		base += "_" // or it would read as the .reason of another entry
	}
	dst := filepath.Join(r.cfg.Paths.Rejected, base)
	for i := 1; it.keepAt == ""; i++ {
		_, e1 := os.Lstat(dst)
		_, e2 := os.Lstat(dst + ".reason")
		if errors.Is(e1, os.ErrNotExist) && (errors.Is(e2, os.ErrNotExist) || orphanReasonFor(dst+".reason", it.Src)) {
			break
		}
		dst = filepath.Join(r.cfg.Paths.Rejected, fmt.Sprintf("%s.%d", base, i))
	}
	source := escapeText(it.Src)
	if it.keepAt != "" {
		// Rejected again by RejectedRetry: it keeps its name, and its
		// .reason keeps naming where it first came from.
		dst, source = it.keepAt, it.origin
	}
	reason := fmt.Sprintf("%s: %s\nfile: %s\nrepo: %s\nchannel: %s\n",
		code, escapeText(oneLine(msg)), source, it.Repo, it.Channel)
	if it.release != "" {
		reason += "release: " + it.release + "\n"
	}
	reason += "time: " + time.Now().UTC().Format(time.RFC3339) + "\n"
	if c := it.Caller; c != nil {
		reason += "by: " + escapeText(c.String()) + "\n"
	}
	if err := fsutil.WriteFileAtomic(dst+".reason", []byte(reason), 0o644); err != nil {
		return "", err
	}
	if _, err := os.Lstat(it.Spool); err == nil {
		if err := os.Rename(it.Spool, dst); err != nil {
			return "", fmt.Errorf("moving rejected %q: %w", it.Src, err)
		}
	}
	return dst, fsutil.SyncDir(r.cfg.Paths.Rejected)
}

// orphanReasonFor reports whether reasonPath is a .reason that a crash
// left without its file (written first, then killed before the move) for
// the same input. Reusing its slot keeps one .reason per rejected file
// instead of an orphan beside a NAME.1 copy.
func orphanReasonFor(reasonPath, src string) bool {
	b, err := os.ReadFile(reasonPath)
	if err != nil || len(b) > 64<<10 {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "file: "); ok {
			return v == escapeText(src)
		}
	}
	return false
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}

// packageFileName is the name a package is placed as, N-V-R.A.rpm, from
// header fields that passed nevra.Check.
func packageFileName(e *metadata.Entry) (string, error) {
	fn, err := nevra.FileName(e.Name, e.Version, e.Release, e.Arch)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrEscape, err)
	}
	return fn, nil
}

// formatNEVRA is name-[epoch:]version-release.arch, epoch only when not 0.
func formatNEVRA(name, epoch, version, release, arch string) string {
	if epoch != "" && epoch != "0" {
		return fmt.Sprintf("%s-%s:%s-%s.%s", name, epoch, version, release, arch)
	}
	return fmt.Sprintf("%s-%s-%s.%s", name, version, release, arch)
}

// Resume finishes what the ingest journal says was in flight: items that
// were signed are placed, published and recorded; earlier ones are rolled
// back (a drop-in goes back to its directory, an `add` copy is dropped).
func (r *Repo) Resume(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return r.resumeLocked(ctx)
}

func (r *Repo) resumeLocked(ctx context.Context) error {
	if led, err := r.ledElsewhere(ctx); err != nil || led {
		return err
	}
	if err := sign.Recover(ctx, signJournalDir(r.cfg)); err != nil {
		return fmt.Errorf("recovering interrupted signatures: %w", err)
	}
	items, err := r.st.journal()
	if err != nil {
		return err
	}
	var forward []*journalItem
	var back []string
	for _, it := range items {
		if it.Owner != r.haNode() {
			continue // another daemon's disk holds it (ha.go)
		}
		switch it.State {
		case stateReceived, stateValidated:
			if err := r.rollBack(it); err != nil {
				return err
			}
			back = append(back, it.ID)
		default:
			if it.Record == nil {
				return fmt.Errorf("journal item %s in state %s has no record", it.ID, it.State)
			}
			forward = append(forward, it)
		}
	}
	if len(back) > 0 {
		ev := Event{Who: r.o.who, Action: EventResume, Details: map[string]string{"rolled_back": strconv.Itoa(len(back))}}
		// The event, then the items (in parts if need be): the files are
		// back already, so a crash in between only repeats the event.
		err := kv.UpdateInParts(r.st.db, 1+len(back), func(tx kv.Tx, lo, hi int) error {
			for i := lo; i < hi; i++ {
				if i == 0 {
					if err := appendEvent(tx, &ev); err != nil {
						return err
					}
					continue
				}
				if err := tx.Bucket(bucketJournal).Delete([]byte(back[i-1])); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		r.o.log.Info("resume: rolled back unsigned items", "count", len(back))
	}
	if len(forward) > 0 {
		ev := Event{Who: r.o.who, Action: EventResume, Details: map[string]string{"rolled_forward": strconv.Itoa(len(forward))}}
		if err := r.commit(ctx, forward, []Event{ev}); err != nil {
			return fmt.Errorf("resuming %d signed items: %w", len(forward), err)
		}
		r.o.log.Info("resume: finished signed items", "count", len(forward))
	}
	if err := r.resumeDirty(ctx); err != nil {
		return err
	}
	if err := r.fillReleases(ctx, true, actor{who: r.o.who, caller: self()}); err != nil {
		r.o.log.Warn("publishing repodata for known releases; retried on the next batch", "err", err)
	}
	// A command on an etcd store catches up the pending directories only:
	// its tree may be older than what another node mirrored since.
	r.mirrorCatchUp(ctx, r.offline == nil)
	return r.cleanSpool()
}

// resumeDirty republishes directories whose repodata a crash left behind
// the store (promote, restore, remove), then deletes package files there
// that nothing in the store places any more.
func (r *Repo) resumeDirty(ctx context.Context) error {
	all, err := r.st.dirtyDirs()
	if err != nil {
		return err
	}
	// Directories this process's coalesced batches left are no crash's
	// leftovers: the batch that ends the backlog publishes them.
	var dirs []string
	for _, d := range all {
		if !r.deferred.dirs[d] {
			dirs = append(dirs, d)
		}
	}
	if len(dirs) == 0 {
		return nil
	}
	if err := r.publishDirty(ctx, dirs, actor{who: r.o.who, caller: self()}); err != nil {
		return fmt.Errorf("republishing %v after a crash: %w", dirs, err)
	}
	for _, d := range dirs {
		known := map[string]bool{}
		r.idxMu.RLock()
		for _, e := range r.dirs[d] {
			known[e.Href] = true
		}
		r.idxMu.RUnlock()
		ents, err := r.tree.readDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".rpm") && !known[e.Name()] {
				r.tree.remove(d + "/" + e.Name())
			}
		}
	}
	r.o.log.Info("resume: republished directories", "dirs", dirs)
	return nil
}

// rollBack undoes an item that never got signed.
func (r *Repo) rollBack(it *journalItem) error {
	if _, err := os.Stat(it.Spool); err != nil {
		return nil // never received, or already moved to rejected/
	}
	if !it.Move {
		return os.Remove(it.Spool)
	}
	dst := it.Src
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, os.ErrNotExist) {
			break
		}
		ext := filepath.Ext(it.Src)
		dst = fmt.Sprintf("%s.resumed%d%s", strings.TrimSuffix(it.Src, ext), i, ext)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.Rename(it.Spool, dst); err != nil {
		return fmt.Errorf("returning %q to %q: %w", it.Spool, dst, err)
	}
	return fsutil.SyncDir(filepath.Dir(dst))
}

// cleanSpool removes spool files that no journal item refers to (left by a
// crash after recording).
func (r *Repo) cleanSpool() error {
	items, err := r.st.journal()
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, it := range items {
		keep[it.Spool] = true
	}
	ents, err := os.ReadDir(r.cfg.Paths.Spool)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(r.cfg.Paths.Spool, e.Name())
		if e.Type().IsRegular() && !keep[p] && strings.HasSuffix(e.Name(), ".rpm") {
			os.Remove(p)
		}
	}
	return nil
}
