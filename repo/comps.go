package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/metadata"
)

// Comps groups: one comps file per repository, kept in the store and
// published into every repository directory of that repository (every
// channel, release and arch) as createrepo_c -g publishes it: "group", the
// file as given, and "group_gz" (metadata.CompsRecords). dnf reads
// group_gz, so the records are the same in zstd and gz repositories.

// Event actions of comps changes.
const (
	EventCompsSet    = "comps.set"
	EventCompsRemove = "comps.remove"
)

// compsFileName is the base name of the published group file, whatever
// the name of the file the caller set it from.
const compsFileName = "comps.xml"

// Actions of a CompsResult.
const (
	CompsActionSet       = "set"
	CompsActionUnchanged = "unchanged" // the same bytes were set already
	CompsActionRemoved   = "removed"
)

// CompsInfo is what the store keeps of a repository's comps file.
type CompsInfo struct {
	Repo         string   `json:"repo"`
	Size         int64    `json:"size"`
	SHA256       string   `json:"sha256"`
	Groups       []string `json:"groups"`       // group ids, in file order
	Categories   []string `json:"categories"`   // category ids
	Environments []string `json:"environments"` // environment ids
	// Set is when it was set, Who and Caller by whom (as events name
	// the actor).
	Set    time.Time `json:"set"`
	Who    string    `json:"who"`
	Caller *Caller   `json:"caller,omitempty"`
	// XML is the file as given, published verbatim. CompsShow returns
	// it; results of a change leave it out.
	XML []byte `json:"xml,omitempty"`
}

// CompsSetRequest stores XML as the comps file of Repo (default:
// default_repo).
type CompsSetRequest struct {
	Repo   string `json:"repo,omitempty"`
	XML    []byte `json:"xml"`
	Who    string `json:"who,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// CompsShowRequest names the repository whose comps file to show.
type CompsShowRequest struct {
	Repo string `json:"repo,omitempty"`
}

// CompsRemoveRequest drops the comps file of Repo.
type CompsRemoveRequest struct {
	Repo   string `json:"repo,omitempty"`
	Who    string `json:"who,omitempty"`
	DryRun bool   `json:"dry_run,omitempty"`
}

// CompsResult says what a comps change did (or, DryRun, would do).
type CompsResult struct {
	Repo   string `json:"repo"`
	Action string `json:"action"` // CompsActionSet, CompsActionUnchanged or CompsActionRemoved
	// Comps is the comps file now set (set, unchanged) or the one
	// removed, without its XML.
	Comps *CompsInfo `json:"comps"`
	// PreviousSHA256 is the file a set replaced; "" if there was none.
	PreviousSHA256 string `json:"previous_sha256,omitempty"`
	// Dirs are the repository directories republished (or that would
	// be), relative to ROOT/repo.
	Dirs   []string `json:"dirs"`
	DryRun bool     `json:"dry_run,omitempty"`
}

func getComps(tx kv.Tx, repo string) (*CompsInfo, error) {
	var c CompsInfo
	ok, err := getJSON(tx.Bucket(bucketComps), []byte(repo), &c)
	if err != nil || !ok {
		return nil, err
	}
	return &c, nil
}

// compsRecords are the group and group_gz records of dir's repository
// (the first element of dir), none if it has no comps file.
func (r *Repo) compsRecords(dir string) ([]metadata.ExtraRecord, error) {
	repoName, _, _ := strings.Cut(dir, "/")
	var c *CompsInfo
	err := r.st.db.View(func(tx kv.Tx) error {
		var err error
		c, err = getComps(tx, repoName)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the comps file of %q: %w", repoName, err)
	}
	if c == nil {
		return nil, nil
	}
	// The store is a file someone may edit: publish only what was set.
	if sum := sha256.Sum256(c.XML); hex.EncodeToString(sum[:]) != c.SHA256 {
		return nil, fmt.Errorf("the stored comps file of %q does not match its sha256 %s", repoName, c.SHA256)
	}
	return metadata.CompsRecords(compsFileName, c.XML), nil
}

// CompsSet stores req.XML as the comps file of a repository and
// republishes every repository directory of it. The XML must pass
// metadata.ParseComps (errors wrap metadata.ErrBadComps); the same bytes
// again change nothing.
func (r *Repo) CompsSet(ctx context.Context, req CompsSetRequest) (*CompsResult, error) {
	repoName, err := r.cfg.checkRepo(req.Repo)
	if err != nil {
		return nil, err
	}
	parsed, err := metadata.ParseComps(req.XML)
	if err != nil {
		return nil, fmt.Errorf("setting the comps file of %q: %w", repoName, err)
	}
	sum := sha256.Sum256(req.XML)
	act := r.actor(ctx, req.Who)
	info := &CompsInfo{Repo: repoName, Size: int64(len(req.XML)), SHA256: hex.EncodeToString(sum[:]),
		Groups: parsed.GroupIDs(), Categories: parsed.Categories, Environments: parsed.Environments,
		Set: time.Now().UTC(), Who: act.who, Caller: act.caller, XML: req.XML}
	return r.changeComps(ctx, repoName, info, act, req.DryRun)
}

// CompsRemove drops the comps file of a repository and republishes its
// directories without group records. ErrNoComps if it has none.
func (r *Repo) CompsRemove(ctx context.Context, req CompsRemoveRequest) (*CompsResult, error) {
	repoName, err := r.cfg.checkRepo(req.Repo)
	if err != nil {
		return nil, err
	}
	return r.changeComps(ctx, repoName, nil, r.actor(ctx, req.Who), req.DryRun)
}

// changeComps sets (info) or removes (nil) the comps file of repoName:
// the record, the dirty marks of every directory of the repository and the
// event in one transaction, then the publish, so that a crash in between
// is finished by Resume.
func (r *Repo) changeComps(ctx context.Context, repoName string, info *CompsInfo, act actor, dryRun bool) (*CompsResult, error) {
	what := "setting"
	if info == nil {
		what = "removing"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var old *CompsInfo
	err := r.st.db.View(func(tx kv.Tx) error {
		var err error
		old, err = getComps(tx, repoName)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s the comps file of %q: %w", what, repoName, err)
	}
	res := &CompsResult{Repo: repoName, DryRun: dryRun, Dirs: []string{}}
	switch {
	case info == nil && old == nil:
		return nil, fmt.Errorf("%s the comps file of %q: %w", what, repoName, ErrNoComps)
	case info == nil:
		res.Action, res.Comps = CompsActionRemoved, withoutXML(old)
	case old != nil && old.SHA256 == info.SHA256:
		res.Action, res.Comps = CompsActionUnchanged, withoutXML(old)
		return res, nil
	default:
		res.Action, res.Comps = CompsActionSet, withoutXML(info)
		if old != nil {
			res.PreviousSHA256 = old.SHA256
		}
	}
	dirs, err := r.republishTargets([]string{repoName})
	if err != nil {
		return nil, fmt.Errorf("%s the comps file of %q: %w", what, repoName, err)
	}
	res.Dirs = dirs
	if dryRun {
		return res, nil
	}
	var ev Event
	if info == nil {
		ev = Event{Action: EventCompsRemove, Repo: repoName, Details: map[string]string{
			"sha256": old.SHA256, "dirs": strconv.Itoa(len(dirs))}}
	} else {
		ev = Event{Action: EventCompsSet, Repo: repoName, Details: map[string]string{
			"sha256": info.SHA256, "size": strconv.FormatInt(info.Size, 10), "groups": eventIDs(info.Groups),
			"dirs": strconv.Itoa(len(dirs))}}
		if old != nil {
			ev.Details["previous_sha256"] = old.SHA256
		}
	}
	events := []Event{act.stamp(ev)}
	err = r.st.db.Update(func(tx kv.Tx) error {
		b := tx.Bucket(bucketComps)
		var err error
		if info == nil {
			err = b.Delete([]byte(repoName))
		} else {
			err = putJSON(b, []byte(repoName), info)
		}
		if err != nil {
			return err
		}
		if err := markDirty(tx, dirs); err != nil {
			return err
		}
		return appendEvents(tx, events)
	})
	if err != nil {
		return nil, fmt.Errorf("%s the comps file of %q: recording: %w", what, repoName, err)
	}
	if err := hit("comps.recorded"); err != nil {
		return nil, err
	}
	if err := r.publishDirty(ctx, dirs, act); err != nil {
		return nil, fmt.Errorf("%s the comps file of %q: %w", what, repoName, err)
	}
	return res, nil
}

func withoutXML(c *CompsInfo) *CompsInfo {
	cp := *c
	cp.XML = nil
	return &cp
}

// eventIDs lists ids for an event: the first 32, then how many more, so
// that a file of thousands of groups does not make one huge event.
func eventIDs(ids []string) string {
	const max = 32
	if len(ids) <= max {
		return strings.Join(ids, " ")
	}
	return strings.Join(ids[:max], " ") + " (+" + strconv.Itoa(len(ids)-max) + " more)"
}

// CompsShow returns the comps file of a repository with its XML;
// ErrNoComps if it has none.
func (r *Repo) CompsShow(ctx context.Context, req CompsShowRequest) (*CompsInfo, error) {
	repoName, err := r.cfg.checkRepo(req.Repo)
	if err != nil {
		return nil, err
	}
	var c *CompsInfo
	err = r.view(func(tx kv.Tx) error {
		var err error
		c, err = getComps(tx, repoName)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("showing the comps file of %q: %w", repoName, err)
	}
	if c == nil {
		return nil, fmt.Errorf("showing the comps file of %q: %w", repoName, ErrNoComps)
	}
	return c, nil
}

// Control-socket methods of comps.
const (
	apiCompsSet    = "comps-set"
	apiCompsShow   = "comps-show"
	apiCompsRemove = "comps-remove"
)

// handleComps registers the comps methods on the control socket.
func handleComps(svc socketService, handle func(string, func(context.Context, []byte) (any, error)), decode func([]byte, any) error) {
	handle(apiCompsSet, func(ctx context.Context, body []byte) (any, error) {
		var req CompsSetRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.CompsSet(ctx, req)
	})
	handle(apiCompsShow, func(ctx context.Context, body []byte) (any, error) {
		var req CompsShowRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.CompsShow(ctx, req)
	})
	handle(apiCompsRemove, func(ctx context.Context, body []byte) (any, error) {
		var req CompsRemoveRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.CompsRemove(ctx, req)
	})
}

func (c *Client) CompsSet(ctx context.Context, req CompsSetRequest) (*CompsResult, error) {
	if len(req.XML) > metadata.MaxCompsSize {
		// Refused here: the daemon would not read a request this large.
		return nil, fmt.Errorf("setting the comps file: %w: more than %d bytes", metadata.ErrCompsTooLarge, metadata.MaxCompsSize)
	}
	var res CompsResult
	if err := c.call(ctx, apiCompsSet, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) CompsShow(ctx context.Context, req CompsShowRequest) (*CompsInfo, error) {
	var res CompsInfo
	if err := c.call(ctx, apiCompsShow, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) CompsRemove(ctx context.Context, req CompsRemoveRequest) (*CompsResult, error) {
	var res CompsResult
	if err := c.call(ctx, apiCompsRemove, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
