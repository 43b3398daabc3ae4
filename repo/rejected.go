package repo

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/repoctl/repoctl/repo/input"
	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/internal/fsutil"
)

// Events of the rejected/ commands, one per entry.
const (
	// EventRejectedRetry: Path is the entry's name; details outcome
	// (added, unchanged, rejected) and, when rejected again, reason.
	EventRejectedRetry = "rejected.retry"
	// EventRejectedPurge: Path is the entry's name; details code,
	// rejected (when, RFC 3339) and source (the path it came from).
	EventRejectedPurge = "rejected.purge"
)

// Types of a RejectedEntry.
const (
	RejectedFile    = "file"
	RejectedSpecial = "special" // a symlink, FIFO, socket or device moved aside as it was
	RejectedMissing = "missing" // only the .reason is left (the file was taken away by hand)
)

// maxReasonSize bounds how much of a .reason is read: repoctl writes a few
// hundred bytes, and rejected/ is not a place to read arbitrary files from.
const maxReasonSize = 64 << 10

// RejectedEntry is one entry of ROOT/rejected: a file and its NAME.reason.
// Every text field is as the .reason has it, escaped when it was written.
type RejectedEntry struct {
	Name    string `json:"name"`              // the file's name in ROOT/rejected
	Type    string `json:"type"`              // RejectedFile, RejectedSpecial or RejectedMissing
	Size    int64  `json:"size"`              // bytes; 0 when missing
	Code    string `json:"code"`              // reason code (invalid, duplicate-nevra, …); "" without a .reason
	Message string `json:"message,omitempty"` // the rest of the .reason's first line
	Source  string `json:"source,omitempty"`  // the path it came from ("file:")
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel,omitempty"`
	Release string `json:"release,omitempty"` // a release override it was added with
	By      string `json:"by,omitempty"`      // who asked, for requests
	// Time is when it was rejected: the mtime of its .reason (of the file
	// when there is none). Purge's OlderThan compares with it.
	Time time.Time `json:"time"`
	// Reason is the whole .reason (RejectedShow only).
	Reason string `json:"reason,omitempty"`
}

// RejectedRetryRequest runs entries of ROOT/rejected through the pipeline
// again, for instance after fixing one in place.
type RejectedRetryRequest struct {
	Names []string `json:"names"`
	// Repo, Channel and Release override what each .reason says (the
	// repository and channel it was meant for, a release override);
	// empty keeps that, and an entry that names none (fsck's strays)
	// goes where `add` would put it.
	Repo    string `json:"repo,omitempty"`
	Channel string `json:"channel,omitempty"`
	Release string `json:"release,omitempty"`
	Who     string `json:"who,omitempty"`
	DryRun  bool   `json:"dry_run,omitempty"`
}

// RejectedPurgeRequest removes entries of ROOT/rejected.
type RejectedPurgeRequest struct {
	Names []string `json:"names,omitempty"` // only these; default every entry
	// OlderThan keeps entries rejected less long ago than this ("30d",
	// "12h", any Go duration); default: every age.
	OlderThan string `json:"older_than,omitempty"`
	Who       string `json:"who,omitempty"`
	DryRun    bool   `json:"dry_run,omitempty"`
}

// RejectedPurgeResult lists what was (with DryRun: would be) removed.
type RejectedPurgeResult struct {
	Purged    []RejectedEntry `json:"purged"`
	Kept      int             `json:"kept"` // entries left in ROOT/rejected
	OlderThan string          `json:"older_than,omitempty"`
	DryRun    bool            `json:"dry_run,omitempty"`
}

// ParseAge reads an age such as "30d" (days), "12h" or "1h30m" (Go
// durations). It must be positive.
func ParseAge(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n float64
		n, err = strconv.ParseFloat(days, 64)
		if err == nil && n > 0 && n < 1e5 {
			d = time.Duration(n * float64(24*time.Hour))
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: age %q is not a positive duration such as 30d, 12h or 90m", ErrBadOption, s)
	}
	return d, nil
}

// checkRejectedName refuses anything but the plain name of an entry, so
// that no request reaches outside ROOT/rejected.
func checkRejectedName(name string) error {
	if !plainName(name) || strings.HasSuffix(name, ".reason") {
		return fmt.Errorf("%w: %q is not the name of an entry of rejected/ (a plain file name, not its .reason)", ErrBadOption, escapeText(name))
	}
	return nil
}

// RejectedList lists ROOT/rejected, oldest rejection first.
func (r *Repo) RejectedList(ctx context.Context) ([]RejectedEntry, error) {
	return readRejected(r.cfg.Paths.Rejected)
}

// RejectedShow is one entry of ROOT/rejected with its whole .reason.
func (r *Repo) RejectedShow(ctx context.Context, name string) (*RejectedEntry, error) {
	if err := checkRejectedName(name); err != nil {
		return nil, err
	}
	e, err := readRejectedEntry(r.cfg.Paths.Rejected, name, true)
	if err != nil {
		return nil, err
	}
	return e, nil
}

// RejectedRetry runs the named entries through the pipeline again, each
// with the repository, channel and release its .reason names (or those of
// the request). What is added (or found unchanged) leaves ROOT/rejected
// with its .reason; what is rejected again stays under its name with a
// new .reason that still names where it first came from. One result per
// name, in order; one rejected.retry event per name.
func (r *Repo) RejectedRetry(ctx context.Context, req RejectedRetryRequest) ([]AddResult, error) {
	if len(req.Names) == 0 {
		return nil, fmt.Errorf("%w: name the entries of rejected/ to retry", ErrBadOption)
	}
	dir := r.cfg.Paths.Rejected
	type group struct {
		o     AddOptions
		idx   []int
		paths []string
	}
	groups := map[[3]string]*group{}
	var order [][3]string
	dup := map[string]bool{}
	for i, name := range req.Names {
		if err := checkRejectedName(name); err != nil {
			return nil, err
		}
		if dup[name] {
			return nil, fmt.Errorf("%w: %q is named twice", ErrBadOption, name)
		}
		dup[name] = true
		e, err := readRejectedEntry(dir, name, false)
		if err != nil {
			return nil, err
		}
		if e.Type == RejectedMissing {
			return nil, fmt.Errorf("%w: rejected/%s has only its .reason left; `repoctl rejected purge %s` removes it", ErrBadOption, name, name)
		}
		key := [3]string{cmp.Or(req.Repo, e.Repo), cmp.Or(req.Channel, e.Channel), cmp.Or(req.Release, e.Release)}
		g := groups[key]
		if g == nil {
			g = &group{o: AddOptions{Repo: key[0], Channel: key[1], Release: key[2], Who: req.Who,
				Move: true, DryRun: req.DryRun, retry: map[string]string{}}}
			groups[key] = g
			order = append(order, key)
		}
		p := filepath.Join(dir, name)
		g.idx, g.paths = append(g.idx, i), append(g.paths, p)
		g.o.retry[p] = cmp.Or(e.Source, escapeText(p))
	}
	act := r.actor(ctx, req.Who)
	results := make([]AddResult, len(req.Names))
	var events []Event
	var err error
	for _, key := range order {
		g := groups[key]
		var res []AddResult
		res, err = r.Ingest(ctx, g.paths, g.o)
		if err != nil {
			break
		}
		for k, x := range res {
			name := req.Names[g.idx[k]]
			results[g.idx[k]] = x
			if req.DryRun {
				continue
			}
			d := map[string]string{"outcome": x.Action}
			switch x.Action {
			case ActionAdded, ActionUnchanged:
				// The file went in: its .reason is history now (the event
				// log keeps it).
				if rerr := os.Remove(filepath.Join(dir, name+".reason")); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
					err = fmt.Errorf("removing rejected/%s.reason: %w", name, rerr)
				}
			case ActionRejected:
				d["reason"] = x.Reason
			}
			events = append(events, act.stamp(Event{Action: EventRejectedRetry, Repo: key[0], Channel: key[1],
				NEVRA: x.NEVRA, Path: name, Details: d}))
		}
		if err != nil {
			break
		}
	}
	if rerr := r.recordEvents(events); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return nil, err
	}
	return results, nil
}

// RejectedPurge removes entries of ROOT/rejected (the file and its
// .reason), the named ones or all, those rejected longer ago than
// OlderThan; one rejected.purge event per entry removed.
func (r *Repo) RejectedPurge(ctx context.Context, req RejectedPurgeRequest) (*RejectedPurgeResult, error) {
	var age time.Duration
	if req.OlderThan != "" {
		var err error
		if age, err = ParseAge(req.OlderThan); err != nil {
			return nil, err
		}
	}
	only := map[string]bool{}
	for _, n := range req.Names {
		if err := checkRejectedName(n); err != nil {
			return nil, err
		}
		only[n] = true
	}
	act := r.actor(ctx, req.Who)
	// Under r.mu: a batch rejecting a file meanwhile writes the .reason
	// first and then moves the file, and purge must see both or neither.
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	dir := r.cfg.Paths.Rejected
	entries, err := readRejected(dir)
	if err != nil {
		return nil, err
	}
	found := map[string]bool{}
	for _, e := range entries {
		found[e.Name] = true
	}
	for n := range only {
		if !found[n] {
			return nil, fmt.Errorf("%w: no entry %q in rejected/", ErrBadOption, n)
		}
	}
	res := &RejectedPurgeResult{Purged: []RejectedEntry{}, OlderThan: req.OlderThan, DryRun: req.DryRun}
	now := time.Now()
	var events []Event
	for _, e := range entries {
		if (len(only) > 0 && !only[e.Name]) || (age > 0 && now.Sub(e.Time) < age) {
			res.Kept++
			continue
		}
		if !req.DryRun {
			if err = removeRejected(dir, e.Name); err != nil {
				break
			}
			events = append(events, act.stamp(Event{Action: EventRejectedPurge, Path: e.Name, Details: map[string]string{
				"code": e.Code, "rejected": e.Time.UTC().Format(time.RFC3339), "source": e.Source}}))
		}
		res.Purged = append(res.Purged, e)
	}
	if len(events) > 0 {
		if serr := fsutil.SyncDir(dir); serr != nil && err == nil {
			err = serr
		}
		if rerr := r.st.db.Update(func(tx kv.Tx) error {
			for i := range events {
				if err := appendEvent(tx, &events[i]); err != nil {
					return err
				}
			}
			return nil
		}); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

// recordEvents appends events in one transaction.
func (r *Repo) recordEvents(events []Event) error {
	if len(events) == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	return r.st.db.Update(func(tx kv.Tx) error {
		for i := range events {
			if err := appendEvent(tx, &events[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// removeRejected removes an entry: the file first, so that a crash
// leaves at worst a .reason without its file, never a file without why.
func removeRejected(dir, name string) error {
	for _, p := range []string{filepath.Join(dir, name), filepath.Join(dir, name+".reason")} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("purging %q: %w", p, err)
		}
	}
	return nil
}

// readRejected lists the entries of dir, oldest rejection first. Hidden
// names (atomic-write temporaries) and directories are not entries.
func readRejected(dir string) ([]RejectedEntry, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return []RejectedEntry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", dir, err)
	}
	names := map[string]bool{}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") && !e.IsDir() {
			names[e.Name()] = true
		}
	}
	out := []RejectedEntry{}
	for n := range names {
		if base, ok := strings.CutSuffix(n, ".reason"); ok && !names[n+".reason"] {
			// A .reason: listed with its file, or alone if that is gone.
			// (A file whose own name ends in .reason has one beside it.)
			if names[base] || base == "" {
				continue
			}
			n = base
		}
		e, err := readRejectedEntry(dir, n, false)
		if errors.Is(err, ErrBadOption) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Time.Equal(out[j].Time) {
			return out[i].Time.Before(out[j].Time)
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// readRejectedEntry reads the entry name of dir; ErrBadOption if neither
// the file nor its .reason exists.
func readRejectedEntry(dir, name string, withText bool) (*RejectedEntry, error) {
	e := &RejectedEntry{Name: name, Type: RejectedMissing}
	p := filepath.Join(dir, name)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("reading rejected entry %q: %w", p, err)
	case fi.IsDir():
		return nil, fmt.Errorf("%w: rejected/%s is a directory, not an entry", ErrBadOption, name)
	default:
		e.Type, e.Size, e.Time = RejectedFile, fi.Size(), fi.ModTime()
		if !fi.Mode().IsRegular() {
			e.Type = RejectedSpecial
		}
	}
	text, rfi, err := readReason(p + ".reason")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if e.Type == RejectedMissing {
			return nil, fmt.Errorf("%w: no entry %q in rejected/", ErrBadOption, name)
		}
	case err != nil:
		return nil, err
	default:
		e.Time = rfi.ModTime()
		parseReason(text, e)
		if withText {
			e.Reason = text
		}
	}
	return e, nil
}

// readReason reads a .reason without following a symlink or blocking on
// a FIFO, and at most maxReasonSize bytes of it.
func readReason(p string) (string, fs.FileInfo, error) {
	f, err := input.Open(p, true)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil, err
		}
		return "", nil, fmt.Errorf("reading %q: %w", p, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxReasonSize))
	if err != nil {
		return "", nil, fmt.Errorf("reading %q: %w", p, err)
	}
	// Written escaped by repoctl; escaped again in case someone else wrote it.
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	for i, l := range lines {
		lines[i] = escapeText(l)
	}
	return strings.Join(lines, "\n") + "\n", fi, nil
}

// parseReason fills e from the lines of a .reason: "CODE: message", then
// "key: value" lines.
func parseReason(text string, e *RejectedEntry) {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	e.Code, e.Message, _ = strings.Cut(lines[0], ": ")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, ": ")
		switch k {
		case "file":
			e.Source = v
		case "repo":
			e.Repo = v
		case "channel":
			e.Channel = v
		case "release":
			e.Release = v
		case "by":
			e.By = v
		}
	}
}

// Control-socket methods of rejected/.
const (
	apiRejectedList  = "rejected-list"
	apiRejectedShow  = "rejected-show"
	apiRejectedRetry = "rejected-retry"
	apiRejectedPurge = "rejected-purge"
)

type rejectedShowRequest struct {
	Name string `json:"name"`
}

// handleRejected registers the rejected/ methods on the control socket.
func handleRejected(svc socketService, handle func(string, func(context.Context, []byte) (any, error)), decode func([]byte, any) error) {
	handle(apiRejectedList, func(ctx context.Context, body []byte) (any, error) {
		return svc.RejectedList(ctx)
	})
	handle(apiRejectedShow, func(ctx context.Context, body []byte) (any, error) {
		var req rejectedShowRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.RejectedShow(ctx, req.Name)
	})
	handle(apiRejectedRetry, func(ctx context.Context, body []byte) (any, error) {
		var req RejectedRetryRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.RejectedRetry(ctx, req)
	})
	handle(apiRejectedPurge, func(ctx context.Context, body []byte) (any, error) {
		var req RejectedPurgeRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.RejectedPurge(ctx, req)
	})
}

func (c *Client) RejectedList(ctx context.Context) ([]RejectedEntry, error) {
	res := []RejectedEntry{}
	if err := c.call(ctx, apiRejectedList, nil, &res); err != nil {
		return nil, err
	}
	return res, nil
}

func (c *Client) RejectedShow(ctx context.Context, name string) (*RejectedEntry, error) {
	var res RejectedEntry
	if err := c.call(ctx, apiRejectedShow, rejectedShowRequest{Name: name}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) RejectedRetry(ctx context.Context, req RejectedRetryRequest) ([]AddResult, error) {
	var res []AddResult
	if err := c.call(ctx, apiRejectedRetry, req, &res); err != nil {
		return nil, err
	}
	return res, nil
}

func (c *Client) RejectedPurge(ctx context.Context, req RejectedPurgeRequest) (*RejectedPurgeResult, error) {
	var res RejectedPurgeResult
	if err := c.call(ctx, apiRejectedPurge, req, &res); err != nil {
		return nil, err
	}
	if res.Purged == nil {
		res.Purged = []RejectedEntry{}
	}
	return &res, nil
}
