package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/metadata"
)

// ShowOptions steer Show.
type ShowOptions struct {
	Repo string `json:"repo,omitempty"` // default: default_repo
}

// ShowResult is everything repoctl knows about one package.
type ShowResult struct {
	// PackageRecord is the whole store record (without the rendered
	// repodata entry), so the JSON has the fields `list -o json` gives.
	PackageRecord
	// Published is each placement as a host sees it.
	Published []Publication `json:"published"`
	// Events are the events naming the package, oldest first: its own
	// (add, sign, remove, upgrade steps) and the build events (promote,
	// restore) whose details list it.
	Events []Event `json:"events"`
	// Advisories are the ids of the advisories that list the package.
	Advisories []string `json:"advisories"`
}

// Publication is one placement with its URL and whether the directory's
// served repodata lists the package.
type Publication struct {
	Placement
	URL        string `json:"url,omitempty"`         // of the repository directory; "" without an HTTP address
	PackageURL string `json:"package_url,omitempty"` // of the package file
	// Listed: the directory's current repodata/primary lists the file
	// under its name with the store's checksum, as dnf reads it.
	Listed bool `json:"listed"`
	// Pending: the directory awaits a publish (a batch in flight, or
	// a publish that failed and is retried), which explains a package
	// that is placed but not listed yet.
	Pending bool `json:"pending,omitempty"`
	// Problem says why Listed is false: the repodata is missing or
	// unreadable, does not list the file or lists other bytes, or the
	// placement itself is one repoctl would refuse to touch.
	Problem string `json:"problem,omitempty"`
}

// Show returns the package spec names (a NEVRA; N-V-R.A.rpm and N-E:V-R.A
// too, or any spec promote takes that resolves to one package) in o.Repo.
func (r *Repo) Show(ctx context.Context, spec string, o ShowOptions) (*ShowResult, error) {
	if err := checkSpec(spec); err != nil {
		return nil, fmt.Errorf("showing %q: %w", spec, err)
	}
	repoName, err := r.cfg.checkRepo(o.Repo)
	if err != nil {
		return nil, err
	}
	res := &ShowResult{Published: []Publication{}, Events: []Event{}}
	pending := map[string]bool{}
	err = r.view(func(tx kv.Tx) error {
		p, err := findPackage(tx, repoName, spec, "")
		if err != nil {
			return err
		}
		p.Entry = nil
		res.PackageRecord = *p
		c := tx.Bucket(bucketDirty).Cursor()
		for _, pl := range p.Placements {
			if k, _ := c.Seek([]byte(pl.Dir)); bytes.Equal(k, []byte(pl.Dir)) {
				pending[pl.Dir] = true
			}
		}
		if err := tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			// Rollout steps name no repository.
			if eventNames(&e, p.NEVRA) && (e.Repo == "" || e.Repo == repoName) {
				res.Events = append(res.Events, e)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("reading the event log: %w", err)
		}
		res.Advisories, err = advisoriesNaming(tx, repoName, p.NEVRA)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("showing %q: %w", spec, err)
	}
	if res.Advisories == nil {
		res.Advisories = []string{}
	}
	// Read outside the store's transaction: repodata can be large, and
	// each directory is read once however many placements share it.
	states := map[string]*listedState{}
	for _, pl := range res.Placements {
		pub := Publication{Placement: pl, Pending: pending[pl.Dir]}
		if err := checkPlacement(repoName, pl); err != nil {
			// A record an older repoctl stored; never read outside its
			// directory for it.
			pub.Problem = err.Error()
			res.Published = append(res.Published, pub)
			continue
		}
		if r.cfg.HTTP.PublicURL != "" {
			pub.URL, pub.PackageURL = r.cfg.URL(pl.Dir+"/"), r.cfg.URL(pl.File)
		}
		st := states[pl.Dir]
		if st == nil {
			st = r.readListed(ctx, pl.Dir)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			states[pl.Dir] = st
		}
		pub.Listed, pub.Problem = st.lists(path.Base(pl.File), res.SHA256)
		res.Published = append(res.Published, pub)
	}
	return res, nil
}

// listedState is what one directory's served repodata lists, or why it
// could not be read.
type listedState struct {
	problem string
	pkgs    map[string]metadata.ListedPackage // href (without xml:base) → package
}

// readListed reads the served repodata of dir (relative to ROOT/repo)
// through the tree's os.Root, as fsck does.
func (r *Repo) readListed(ctx context.Context, dir string) *listedState {
	root, err := r.tree.root.OpenRoot(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return &listedState{problem: dir + " does not exist"}
	}
	if err != nil {
		return &listedState{problem: fmt.Sprintf("opening %s: %v", dir, err)}
	}
	defer root.Close()
	st, err := metadata.ReadRepodataState(ctx, root)
	switch {
	case err != nil:
		return &listedState{problem: fmt.Sprintf("reading the repodata of %s: %v", dir, err)}
	case st.Repomd == nil && len(st.Problems) == 0:
		return &listedState{problem: dir + "/repodata/repomd.xml is missing"}
	case st.Packages == nil:
		p := "the repodata of " + dir + " cannot be read"
		if len(st.Problems) > 0 {
			p = dir + ": " + st.Problems[0]
		}
		return &listedState{problem: p}
	}
	out := &listedState{pkgs: map[string]metadata.ListedPackage{}}
	for _, lp := range st.Packages {
		if lp.Base == "" {
			out.pkgs[lp.Href] = lp
		}
	}
	return out
}

// lists reports whether the repodata lists file with checksum sum, and
// if not, why.
func (s *listedState) lists(file, sum string) (bool, string) {
	if s.pkgs == nil {
		return false, s.problem
	}
	lp, ok := s.pkgs[file]
	switch {
	case !ok:
		return false, "the repodata does not list " + file
	case lp.PkgID != sum:
		return false, fmt.Sprintf("the repodata lists %s with checksum %s, the store recorded %s", file, lp.PkgID, sum)
	}
	return true, ""
}
