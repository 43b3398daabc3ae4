package repo

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	kv "github.com/repoctl/repoctl/repo/store"

	"github.com/repoctl/repoctl/metadata"
)

// routeOff in routing.default or routing.noarch rejects packages without a
// dist tag instead of routing them.
const routeOff = "off"

// shortReleaseRE is the dist-tag spelling of a release, "el9" or "fc40".
var shortReleaseRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^([a-z]+)([0-9][0-9A-Za-z_+]*)$`) })

// ParseRelease turns a release as a user types it, "el/9" or "el9", into
// its directory form "el/9". It fails with ErrBadOption for anything that
// is not a release directory.
func ParseRelease(s string) (string, error) {
	if !strings.Contains(s, "/") {
		if m := shortReleaseRE().FindStringSubmatch(s); m != nil {
			s = m[1] + "/" + m[2]
		}
	}
	if !releaseRE().MatchString(s) || len(s) > 64 {
		return "", fmt.Errorf("%w: release %q is not a release directory such as el/9 (or el9)", ErrBadOption, s)
	}
	return s, nil
}

// listenURL is the base URL of an HTTP listen address. A wildcard host is
// reachable on loopback; set http.public_url for other hosts.
func listenURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/", nil
}

// setServedAddr records the address the daemon's HTTP server bound. Unless
// the config file set http.public_url, the public URL becomes that address,
// so that `status`, `repofile` and promote results name the port really
// served (a --listen flag or port 0 included). The daemon calls it before
// any request is served: nothing reads the config concurrently yet.
func (c *Config) setServedAddr(addr string) error {
	c.servedAddr = addr
	if c.publicURLSet {
		return nil
	}
	u, err := listenURL(addr)
	if err != nil {
		return fmt.Errorf("bound HTTP address %q: %w", addr, err)
	}
	c.HTTP.PublicURL = u
	return nil
}

// allArches is every binary arch of any configured release, default arches
// first: what the shared release must offer.
func (c *Config) allArches() []string {
	out := slices.Clone(c.Routing.DefaultArches)
	var more []string
	for rel, rc := range c.Releases {
		if rel == CommonRelease {
			continue
		}
		for _, a := range rc.Arches {
			if !slices.Contains(out, a) && !slices.Contains(more, a) {
				more = append(more, a)
			}
		}
	}
	sort.Strings(more)
	return append(out, more...)
}

// configuredReleases are the release directories the config can route a
// package to without one having arrived: [releases], the routing defaults,
// [[route]] targets and drop-in overrides.
func (c *Config) configuredReleases() []string {
	set := map[string]bool{}
	for rel := range c.Releases {
		set[rel] = true
	}
	for _, rel := range []string{c.Routing.Default, c.Routing.Noarch} {
		if rel != "" && rel != routeOff {
			set[rel] = true
		}
	}
	for _, r := range c.routes {
		set[r.release] = true
	}
	for _, d := range c.DropIns {
		if d.Release != "" {
			set[d.Release] = true
		}
	}
	return sortedKeys(set)
}

// splitRepoDir splits a repository directory relative to ROOT/repo,
// REPO/CHANNEL/<release…>/ARCH, into its parts.
func splitRepoDir(dir string) (repo, channel, release, arch string, ok bool) {
	parts := strings.Split(dir, "/")
	if len(parts) < 4 {
		return "", "", "", "", false
	}
	return parts[0], parts[1], strings.Join(parts[2:len(parts)-1], "/"), parts[len(parts)-1], true
}

// releaseSet maps a release directory to its arch directories.
type releaseSet map[string]map[string]bool

func (s releaseSet) add(rel string, arches ...string) {
	m := s[rel]
	if m == nil {
		m = map[string]bool{}
		s[rel] = m
	}
	for _, a := range arches {
		m[a] = true
	}
}

// knownReleases is every release a host may be pointed at, with every arch
// directory it must have: the configured releases, every release a package
// was placed in (in any repository or channel), and, with disk, every
// release directory with repodata in the served tree (a release whose
// packages were all removed keeps its URLs). Each gets its configured
// arches and SRPMS.
func (r *Repo) knownReleases(disk bool) releaseSet {
	set := releaseSet{}
	for _, rel := range r.cfg.configuredReleases() {
		set.add(rel)
	}
	r.idxMu.RLock()
	for dir := range r.dirs {
		if _, _, rel, arch, ok := splitRepoDir(dir); ok {
			set.add(rel, arch)
		}
	}
	r.idxMu.RUnlock()
	if disk {
		for _, dir := range r.servedRepoDirs() {
			if _, _, rel, arch, ok := splitRepoDir(dir); ok {
				set.add(rel, arch)
			}
		}
	}
	for rel := range set {
		set.add(rel, append(slices.Clone(r.cfg.Arches(rel)), "SRPMS")...)
	}
	return set
}

// servedRepoDirs lists the repository directories of the configured
// repositories and channels that have repodata on disk, relative to
// ROOT/repo. It stats each directory's repodata/repomd.xml before
// descending, so it never lists a directory of packages.
func (r *Repo) servedRepoDirs() []string {
	var out []string
	for _, repo := range r.cfg.Repos {
		for _, ch := range r.cfg.Channels {
			base := path.Join(repo, ch)
			fs.WalkDir(r.tree.root.FS(), base, func(p string, d fs.DirEntry, err error) error {
				if err != nil || !d.IsDir() {
					return nil
				}
				if p != base && strings.HasPrefix(d.Name(), ".") {
					return fs.SkipDir
				}
				if r.tree.hasRepodata(p) {
					if strings.Count(p, "/") >= 3 {
						out = append(out, p)
					}
					return fs.SkipDir
				}
				if strings.Count(p, "/") >= 6 {
					return fs.SkipDir
				}
				return nil
			})
		}
	}
	sort.Strings(out)
	return out
}

// hasRepodata reports whether the repository directory dir (relative to
// ROOT/repo) has a published repomd.xml.
func (t *tree) hasRepodata(dir string) bool {
	fi, err := t.root.Stat(filepath.Join(dir, "repodata", "repomd.xml"))
	return err == nil && fi.Mode().IsRegular()
}

// fillReleases publishes signed, empty repodata into every directory of
// every known release, repository and channel that has none, so that no
// URL of a .repo file 404s: a $releasever/$basearch baseurl expands to any
// known release and arch, and a host fails (skip_if_unavailable=False, the
// EL and Fedora default) on a single missing repomd.xml. Such a directory
// fills when packages are placed or promoted into it. disk also scans the
// served tree for releases the store no longer places anything in.
// Callers hold r.mu.
func (r *Repo) fillReleases(ctx context.Context, disk bool, a actor) error {
	set := r.knownReleases(disk)
	rels := make([]string, 0, len(set))
	for rel := range set {
		rels = append(rels, rel)
	}
	sort.Strings(rels)
	var missing []string
	for _, rel := range rels {
		for _, arch := range sortedKeys(set[rel]) {
			for _, repo := range r.cfg.Repos {
				for _, ch := range r.cfg.Channels {
					if d := RepoDir(repo, ch, rel, arch); !r.tree.hasRepodata(d) {
						missing = append(missing, d)
					}
				}
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	// Not through publishDirs: these publishes are no stage of the batch
	// the caller reports progress for.
	var events []Event
	for _, d := range missing {
		// Usually empty; a directory whose repodata someone deleted gets
		// its packages back.
		entries := make([]metadata.Entry, 0, len(r.dirs[d]))
		for _, e := range r.dirs[d] {
			entries = append(entries, *e)
		}
		// The options of every publish of d: its comps and advisory
		// records too, or fsck would find the new directory out of date.
		_, err := r.tree.publish(ctx, d, entries, r.publishOptions(d, r.key.DetachSignArmored)...)
		if err != nil {
			return fmt.Errorf("publishing empty repodata for %q: %w", d, err)
		}
		events = append(events, a.stamp(Event{Action: EventPublish, Path: d,
			Details: map[string]string{"packages": strconv.Itoa(len(entries)), "why": "every known release and arch has repodata"}}))
	}
	r.o.log.Info("published repodata for known releases", "dirs", missing)
	return r.st.db.Update(func(tx kv.Tx) error { return appendEvents(tx, events) })
}

// majorFallback maps a request for REPO/CHANNEL/DIST/MAJOR.MINOR/… that
// does not exist onto REPO/CHANNEL/DIST/MAJOR/… when that does: a host
// whose $releasever is pinned to a minor release ("9.4") is served its
// major release, which is what its dist tag (.el9, .el9_4) routes to.
// dnf before 4.18 has no $releasever_major to ask for it itself.
func majorFallback(root *os.Root, urlPath string) (string, bool) {
	segs := strings.Split(strings.TrimPrefix(path.Clean(urlPath), "/"), "/")
	if len(segs) < 4 {
		return "", false
	}
	major, _, ok := strings.Cut(segs[3], ".")
	if !ok || major == "" || strings.Trim(major, "0123456789") != "" {
		return "", false
	}
	if _, err := root.Stat(path.Join(segs[:4]...)); err == nil {
		return "", false
	}
	if fi, err := root.Stat(path.Join(append(segs[:3:3], major)...)); err != nil || !fi.IsDir() {
		return "", false
	}
	segs[3] = major
	p := "/" + path.Join(segs...)
	if strings.HasSuffix(urlPath, "/") {
		p += "/"
	}
	return p, true
}
