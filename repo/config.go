package repo

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo/dropwatch"
	"github.com/repoctl/repoctl/repo/target"
)

// ConfigFileName is the config file looked up in ROOT when --config is not
// given. The file is optional: everything has an embedded default.
const ConfigFileName = "repoctl.toml"

// PublicKeyFile is where Open writes the public signing key, inside the
// served tree so that Apache/nginx in front of ROOT/repo serve it too.
const PublicKeyFile = "RPM-GPG-KEY-repoctl"

// CommonRelease is the release directory shared by every host: packages
// without a dist tag go there by default (routing.default, routing.noarch),
// and every .repo file RepoFile writes includes it, whatever the host's
// dist and release.
const CommonRelease = "common"

// Config is ROOT/repoctl.toml (or the file ConfigPath finds).
// testdata/repoctl.example.toml documents every key with its default. Paths
// are relative to Root unless absolute. The [upgrade] section belongs to
// package upgrade, which parses File itself; LoadConfig only checks that its
// keys are known (config_strict.go), as it does for every other key.
type Config struct {
	Root string `toml:"-"` // absolute
	File string `toml:"-"` // config file read, "" if none

	Repos          []string `toml:"repos"`           // repository names; default ["main"]
	DefaultRepo    string   `toml:"default_repo"`    // default: first of Repos
	Channels       []string `toml:"channels"`        // default ["staging", "prod"]; order = promotion order
	DefaultChannel string   `toml:"default_channel"` // where new packages land; default first channel

	Paths    PathsConfig              `toml:"paths"`
	HTTP     HTTPConfig               `toml:"http"`
	Signing  SigningConfig            `toml:"signing"`
	Publish  PublishConfig            `toml:"publish"`
	Store    StoreConfig              `toml:"store"` // config_store.go
	Routing  RoutingConfig            `toml:"routing"`
	Routes   []RouteRule              `toml:"route"`
	Releases map[string]ReleaseConfig `toml:"releases"`
	DropIns  []DropIn                 `toml:"dropin"`
	Daemon   DaemonConfig             `toml:"daemon"`
	Metrics  MetricsConfig            `toml:"metrics"`
	// Retention is [retention] (config_retention.go).
	Retention RetentionConfig `toml:"retention"`

	routes []compiledRoute
	// publicURLSet is whether the config file set http.public_url; if not,
	// the daemon replaces the default with the address it bound.
	publicURLSet bool
	// servedAddr is the HTTP address the daemon bound, "" otherwise.
	servedAddr string
}

// PathsConfig places the store and the working directories.
type PathsConfig struct {
	Repo     string `toml:"repo"`     // served tree; default "repo"
	DB       string `toml:"db"`       // default "repoctl.db"
	Spool    string `toml:"spool"`    // default "spool"
	Rejected string `toml:"rejected"` // default "rejected"
	Keys     string `toml:"keys"`     // default "keys"
	Socket   string `toml:"socket"`   // daemon control socket; default "repoctl.sock"
}

// HTTPConfig is where the daemon serves ROOT/repo.
type HTTPConfig struct {
	Listen string `toml:"listen"` // default "127.0.0.1:8080"; "" or "off" disables
	// PublicURL is the URL clients use in .repo files; default
	// "http://LISTEN/", which a running daemon replaces with the address it
	// bound. Set it when Apache/nginx serves the tree.
	PublicURL string `toml:"public_url"`
	// MaxConnections caps the connections served at once (more wait in
	// the kernel's accept queue), so that HTTP clients cannot use up the
	// file descriptors the control socket and ingest need; default 128.
	MaxConnections int `toml:"max_connections"`
	// IdleTimeout closes a keep-alive connection idle this long, as a Go
	// duration; default "60s".
	IdleTimeout string `toml:"idle_timeout"`
	// MinRate is the transfer rate in bytes per second a client must read
	// at least; a slower one is disconnected; default 16384.
	MinRate int `toml:"min_rate"`
}

// SigningConfig names the signing key.
type SigningConfig struct {
	// Key is an armored private key file (0600). Default ROOT/keys/signing.asc,
	// generated on first start with Algo, Name and Email.
	Key            string `toml:"key"`
	PassphraseFile string `toml:"passphrase_file"` // or env REPOCTL_KEY_PASSPHRASE
	Algo           string `toml:"algo"`            // rsa4096 (default), rsa3072, ed25519
	Name           string `toml:"name"`            // default "repoctl"
	Email          string `toml:"email"`           // default "repoctl@localhost"
	Legacy         bool   `toml:"legacy"`          // also write header+payload signatures
}

// PublishConfig is passed to the metadata publisher.
type PublishConfig struct {
	Compression    string `toml:"compression"`     // "zstd" (default) or "gz" (EL7 yum)
	ChangelogLimit int    `toml:"changelog_limit"` // default 10
	Workers        int    `toml:"workers"`         // validate/sign workers; default GOMAXPROCS
	// FileMode and DirMode are the octal modes every file and directory of
	// the served tree gets, whatever the umask; default "0644" and "0755",
	// so that a web server user can read the tree (see tree_modes.go).
	FileMode string `toml:"file_mode"`
	DirMode  string `toml:"dir_mode"`
	// Grace is how long superseded repodata, and package files a
	// rollback or prune took out of the repodata, stay for clients that
	// still hold the older repomd.xml; default "1h".
	Grace string `toml:"grace"`
	// RetainOldMD bounds superseded repodata by count: each repository
	// directory keeps at most this many superseded generations (each for
	// the grace period), as createrepo_c's --retain-old-md; default 2
	// (metadata.DefaultRetainOld), 0 keeps none.
	RetainOldMD *int `toml:"retain_old_md"`
	// Target and S3 are where the served tree is mirrored to
	// (config_target.go): "local" (default, ROOT/repo only) or "s3".
	Target string          `toml:"target"`
	S3     target.S3Config `toml:"s3"`
}

// RoutingConfig is the fallback for packages without a recognised dist tag.
type RoutingConfig struct {
	// Default is the release dir for binary and source packages without a
	// dist tag; default CommonRelease, which every host's .repo includes;
	// "off" rejects them.
	Default string `toml:"default"`
	// Noarch is the release dir for noarch packages without a dist tag;
	// default CommonRelease; "off" rejects them.
	Noarch        string   `toml:"noarch"`
	DefaultArches []string `toml:"default_arches"` // default ["x86_64", "aarch64"]
}

// RouteRule sends packages whose Release matches Match (a Go regexp) to
// Release (a directory such as "el/7"). Rules are tried in order before the
// dist-tag rule.
type RouteRule struct {
	Match   string `toml:"match"`
	Release string `toml:"release"`
}

// ReleaseConfig lists the binary arches of one release directory.
type ReleaseConfig struct {
	Arches []string `toml:"arches"`
}

// DropIn is a directory the daemon watches.
type DropIn struct {
	Dir     string `toml:"dir"`     // relative to ROOT; default "incoming"
	Repo    string `toml:"repo"`    // default: default_repo
	Channel string `toml:"channel"` // default: default_channel
	// Release, if set, overrides routing for every file of this directory
	// (like `add --release`), e.g. "el/9"; default "" routes by dist tag.
	Release string `toml:"release"`
}

// MetricsConfig places the daemon's /metrics, /healthz and /readyz.
type MetricsConfig struct {
	// Listen is "" (default: on the HTTP listener, beside the tree), an
	// address of their own such as "127.0.0.1:9464" (then not on the HTTP
	// listener), or "off".
	Listen string `toml:"listen"`
}

// DaemonConfig tunes the watcher.
type DaemonConfig struct {
	// Settle is how long a drop-in written in place must stay unchanged
	// (no events, same size and mtime) before it is taken when its writer
	// neither closed it nor renamed it into place, and how recently
	// written a drop-in that fails may be before it is retried instead of
	// rejected; a Go duration, default "3s" (dropwatch.DefaultSettle), which outlasts
	// the pauses of scp over a slow link.
	Settle string `toml:"settle"`
	// MaxPublishLag bounds coalesced publishes: while more ready drop-ins
	// wait than the batch in progress takes, a batch may record its
	// packages and leave the publish to a later one, so that a burst
	// costs a few publishes instead of one per batch. A directory's
	// repodata publishes at the end of the first batch that ends this
	// long after the first one it left unpublished, and whenever the
	// backlog is gone. A Go duration, default "30s"; "0s" publishes after
	// every batch.
	MaxPublishLag string `toml:"max_publish_lag"`
}

// DefaultMaxPublishLag is [daemon] max_publish_lag unless the config says
// otherwise.
const DefaultMaxPublishLag = 30 * time.Second

// maxPublishLag is [daemon] max_publish_lag (validated at load).
func (c *Config) maxPublishLag() time.Duration {
	d, err := time.ParseDuration(c.Daemon.MaxPublishLag)
	if err != nil || d < 0 {
		return DefaultMaxPublishLag
	}
	return d
}

type compiledRoute struct {
	re      *regexp.Regexp
	release string
}

var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`) })
var releaseRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*(/[A-Za-z0-9][A-Za-z0-9._+-]*)*$`)
})

// distTagRE finds the dist tag in a Release: "1.el9", "3.el9_2", "1.fc40",
// "2.el7.centos" → (el, 9), (fc, 40).
var distTagRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?:^|\.)(el|fc)(\d+)(?:[._]|$)`) })

// LoadConfig reads the config for root. file may be "": then
// ROOT/repoctl.toml, else SystemConfigFile, else the embedded defaults (see
// ConfigPath). Every problem is a *ConfigError naming the file and line:
// keys no section knows (including [upgrade]'s, which package upgrade
// owns), values of the wrong type, bad durations, modes and names.
func LoadConfig(root, file string) (*Config, error) {
	return loadConfig(root, file)
}

func (c *Config) setDefaults() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	if len(c.Repos) == 0 {
		c.Repos = []string{"main"}
	}
	for _, r := range c.Repos {
		if !nameRE().MatchString(r) {
			return bad("repository name %q: use letters, digits, . _ + -", r)
		}
	}
	if c.DefaultRepo == "" {
		c.DefaultRepo = c.Repos[0]
	}
	if !slices.Contains(c.Repos, c.DefaultRepo) {
		return bad("default_repo %q is not in repos %v", c.DefaultRepo, c.Repos)
	}
	if len(c.Channels) == 0 {
		c.Channels = []string{"staging", "prod"}
	}
	for _, ch := range c.Channels {
		if !nameRE().MatchString(ch) {
			return bad("channel name %q: use letters, digits, . _ + -", ch)
		}
	}
	if c.DefaultChannel == "" {
		c.DefaultChannel = c.Channels[0]
	}
	if !slices.Contains(c.Channels, c.DefaultChannel) {
		return bad("default_channel %q is not in channels %v", c.DefaultChannel, c.Channels)
	}
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.Paths.Repo, "repo")
	def(&c.Paths.DB, "repoctl.db")
	def(&c.Paths.Spool, "spool")
	def(&c.Paths.Rejected, "rejected")
	def(&c.Paths.Keys, "keys")
	def(&c.Paths.Socket, "repoctl.sock")
	for _, p := range []*string{&c.Paths.Repo, &c.Paths.DB, &c.Paths.Spool, &c.Paths.Rejected, &c.Paths.Keys, &c.Paths.Socket} {
		*p = c.abs(*p)
	}
	def(&c.HTTP.Listen, "127.0.0.1:8080")
	c.publicURLSet = c.HTTP.PublicURL != ""
	if c.HTTP.PublicURL == "" && c.HTTP.Listen != "off" {
		u, err := listenURL(c.HTTP.Listen)
		if err != nil {
			return bad("http.listen %q: %v", c.HTTP.Listen, err)
		}
		c.HTTP.PublicURL = u
	}
	if c.HTTP.PublicURL != "" && !strings.HasSuffix(c.HTTP.PublicURL, "/") {
		c.HTTP.PublicURL += "/"
	}
	switch {
	case c.HTTP.MaxConnections < 0:
		return bad("http.max_connections %d: must be positive (0 means the default, 128)", c.HTTP.MaxConnections)
	case c.HTTP.MaxConnections == 0:
		c.HTTP.MaxConnections = 128
	}
	def(&c.HTTP.IdleTimeout, "60s")
	if d, err := time.ParseDuration(c.HTTP.IdleTimeout); err != nil || d <= 0 {
		return bad("http.idle_timeout %q is not a positive duration such as \"60s\"", c.HTTP.IdleTimeout)
	}
	switch {
	case c.HTTP.MinRate < 0:
		return bad("http.min_rate %d: must be a positive number of bytes per second (0 means the default, 16384)", c.HTTP.MinRate)
	case c.HTTP.MinRate == 0:
		c.HTTP.MinRate = 16384
	}
	def(&c.Signing.Algo, "rsa4096")
	def(&c.Signing.Name, "repoctl")
	def(&c.Signing.Email, "repoctl@localhost")
	if c.Signing.Key != "" {
		c.Signing.Key = c.abs(c.Signing.Key)
	}
	if c.Signing.PassphraseFile != "" {
		c.Signing.PassphraseFile = c.abs(c.Signing.PassphraseFile)
	}
	def(&c.Publish.Compression, "zstd")
	if c.Publish.Compression != "zstd" && c.Publish.Compression != "gz" {
		return bad("publish.compression %q: zstd or gz", c.Publish.Compression)
	}
	if c.Publish.ChangelogLimit == 0 {
		c.Publish.ChangelogLimit = 10
	}
	if c.Publish.RetainOldMD == nil {
		n := metadata.DefaultRetainOld
		c.Publish.RetainOldMD = &n
	} else if n := *c.Publish.RetainOldMD; n < 0 || n > 1000 {
		return bad("publish.retain_old_md %d: from 0 to 1000", n)
	}
	if len(c.Routing.DefaultArches) == 0 {
		c.Routing.DefaultArches = []string{"x86_64", "aarch64"}
	}
	def(&c.Routing.Default, CommonRelease)
	def(&c.Routing.Noarch, CommonRelease)
	if c.Routing.Default != routeOff && !releaseRE().MatchString(c.Routing.Default) {
		return bad("routing.default %q is not a release directory like el/9 (or \"off\")", c.Routing.Default)
	}
	if c.Routing.Noarch != routeOff && !releaseRE().MatchString(c.Routing.Noarch) {
		return bad("routing.noarch %q is not a release directory like el/9 (or \"off\")", c.Routing.Noarch)
	}
	for rel, rc := range c.Releases {
		if !releaseRE().MatchString(rel) {
			return bad("releases.%q is not a release directory like el/9", rel)
		}
		for _, a := range rc.Arches {
			if !nameRE().MatchString(a) || a == "SRPMS" || a == "noarch" || a == "src" {
				return bad("releases.%q: arch %q", rel, a)
			}
		}
	}
	for _, a := range c.Routing.DefaultArches {
		if !nameRE().MatchString(a) || a == "SRPMS" || a == "noarch" || a == "src" {
			return bad("routing.default_arches: arch %q", a)
		}
	}
	c.routes = nil
	for i, r := range c.Routes {
		re, err := regexp.Compile(r.Match)
		if err != nil {
			return bad("route[%d].match %q: %v", i, r.Match, err)
		}
		if !releaseRE().MatchString(r.Release) {
			return bad("route[%d].release %q is not a release directory like el/9", i, r.Release)
		}
		c.routes = append(c.routes, compiledRoute{re, r.Release})
	}
	if len(c.DropIns) == 0 {
		c.DropIns = []DropIn{{Dir: "incoming"}}
	}
	for i := range c.DropIns {
		d := &c.DropIns[i]
		def(&d.Dir, "incoming")
		d.Dir = c.abs(d.Dir)
		def(&d.Repo, c.DefaultRepo)
		def(&d.Channel, c.DefaultChannel)
		if !slices.Contains(c.Repos, d.Repo) {
			return bad("dropin %q: repo %q is not in repos %v", d.Dir, d.Repo, c.Repos)
		}
		if !slices.Contains(c.Channels, d.Channel) {
			return bad("dropin %q: channel %q is not in channels %v", d.Dir, d.Channel, c.Channels)
		}
		if d.Release != "" {
			rel, err := ParseRelease(d.Release)
			if err != nil {
				return bad("dropin %q: release: %v", d.Dir, err)
			}
			d.Release = rel
		}
	}
	def(&c.Daemon.Settle, dropwatch.DefaultSettle.String())
	def(&c.Daemon.MaxPublishLag, DefaultMaxPublishLag.String())
	if d, err := time.ParseDuration(c.Daemon.MaxPublishLag); err != nil || d < 0 {
		return bad("daemon.max_publish_lag %q is not a duration such as \"30s\" or \"0s\"", c.Daemon.MaxPublishLag)
	}
	if err := c.retentionDefaults(); err != nil {
		return err
	}
	if err := c.targetDefaults(); err != nil {
		return err
	}
	if err := c.storeDefaults(); err != nil {
		return err
	}
	if err := checkMetricsListen(c.Metrics.Listen); err != nil {
		return err
	}
	return nil
}

func (c *Config) abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(c.Root, p)
}

// KeyPath is the private signing key file in use.
func (c *Config) KeyPath() string {
	if c.Signing.Key != "" {
		return c.Signing.Key
	}
	return filepath.Join(c.Paths.Keys, "signing.asc")
}

// Arches returns the binary arch directories of release rel. The shared
// CommonRelease has, unless configured, every arch any release has, so
// that each host finds its $basearch there.
func (c *Config) Arches(rel string) []string {
	if rc, ok := c.Releases[rel]; ok && len(rc.Arches) > 0 {
		return rc.Arches
	}
	if rel == CommonRelease {
		return c.allArches()
	}
	return c.Routing.DefaultArches
}

// RouteRelease picks the release directory for an RPM Release value of a
// binary or source package; see RouteArch for noarch.
func (c *Config) RouteRelease(release string) (string, error) {
	return c.routeRelease(release, "")
}

func (c *Config) routeRelease(release, arch string) (string, error) {
	for _, r := range c.routes {
		if r.re.MatchString(release) {
			return r.release, nil
		}
	}
	if m := distTagRE().FindStringSubmatch(release); m != nil {
		return m[1] + "/" + m[2], nil
	}
	def, key := c.Routing.Default, "routing.default"
	if arch == "noarch" {
		def, key = c.Routing.Noarch, "routing.noarch"
	}
	if def != "" && def != routeOff {
		return def, nil
	}
	return "", fmt.Errorf("%w: release %q has no dist tag (.elN, .fcN), no [[route]] rule matches and %s is off", ErrUnroutable, release, key)
}

// Route returns the arch directories (below ROOT/repo/REPO/CHANNEL/REL/) a
// package of the given release and arch goes to.
func (c *Config) Route(release, arch string, source bool) (rel string, dirs []string, err error) {
	return c.RouteTo("", release, arch, source)
}

// RouteTo is Route with an override: a non-empty to (a release directory
// such as "el/9", from `add --release` or a drop-in's release) is used
// whatever the package's dist tag says.
func (c *Config) RouteTo(to, release, arch string, source bool) (rel string, dirs []string, err error) {
	rel = to
	if rel == "" {
		if source || arch == "src" || arch == "nosrc" {
			rel, err = c.routeRelease(release, "src")
		} else {
			rel, err = c.routeRelease(release, arch)
		}
		if err != nil {
			return "", nil, err
		}
	}
	arches := c.Arches(rel)
	switch {
	case source || arch == "src" || arch == "nosrc":
		return rel, []string{"SRPMS"}, nil
	case arch == "noarch":
		return rel, slices.Clone(arches), nil
	case slices.Contains(arches, arch):
		return rel, []string{arch}, nil
	}
	return "", nil, fmt.Errorf("%w: arch %q is not configured for release %s (arches %v; set [releases.%q] arches)", ErrUnroutable, arch, rel, arches, rel)
}

// RepoDir is the repository directory, relative to ROOT/repo.
func RepoDir(repo, channel, release, archDir string) string {
	return filepath.ToSlash(filepath.Join(repo, channel, release, archDir))
}

// URL is the public URL of a directory relative to ROOT/repo.
func (c *Config) URL(rel string) string {
	return c.HTTP.PublicURL + strings.TrimPrefix(rel, "/")
}

// checkRepo and checkChannel check a name the caller gave (a flag, a
// request): one the config does not know is a usage error, ErrBadOption.
func (c *Config) checkRepo(r string) (string, error) {
	if r == "" {
		return c.DefaultRepo, nil
	}
	if !slices.Contains(c.Repos, r) {
		return "", fmt.Errorf("%w: unknown repository %q (configured: %v)", ErrBadOption, r, c.Repos)
	}
	return r, nil
}

func (c *Config) checkChannel(ch, def string) (string, error) {
	if ch == "" {
		return def, nil
	}
	if !slices.Contains(c.Channels, ch) {
		return "", fmt.Errorf("%w: unknown channel %q (configured: %v)", ErrBadOption, ch, c.Channels)
	}
	return ch, nil
}
