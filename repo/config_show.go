package repo

import (
	"bytes"
	"fmt"

	"github.com/BurntSushi/toml"

	"github.com/repoctl/repoctl/upgrade"
)

// ConfigCheck is what `repoctl config check` found in a valid file.
type ConfigCheck struct {
	Root string `json:"root"`
	// File is the file checked; "" when none exists and the built-in
	// defaults apply.
	File string `json:"file"`
	// Upgrade summarizes the [upgrade] inventory, if the file has one.
	Upgrade *UpgradeCheck `json:"upgrade,omitempty"`
}

// UpgradeCheck counts what the [upgrade] inventory resolves to.
type UpgradeCheck struct {
	Groups  int `json:"groups"`
	Hosts   int `json:"hosts"`
	Proxies int `json:"proxies"`
}

// CheckConfig validates the config LoadConfig(root, file) would read, and
// the [upgrade] inventory in it, as the next rollout would resolve it
// (an Ansible inventory it names is read). It opens no store, takes no
// lock, reads no key and creates nothing. Problems are *ConfigErrors
// (ErrConfigFile).
func CheckConfig(root, file string) (*ConfigCheck, error) {
	c, err := LoadConfig(root, file)
	if err != nil {
		return nil, err
	}
	res := &ConfigCheck{Root: c.Root, File: c.File}
	if c.File == "" {
		return res, nil
	}
	up, ok, err := loadUpgradeSection(c.File)
	if err != nil || !ok {
		return res, err
	}
	inv, err := up.Resolve("")
	if err != nil {
		return nil, &ConfigError{File: c.File, Key: "upgrade", Msg: "[upgrade]: " + err.Error(), Err: err}
	}
	res.Upgrade = &UpgradeCheck{Groups: len(inv.Groups), Proxies: len(inv.Proxies)}
	for _, g := range inv.Groups {
		res.Upgrade.Hosts += len(g.Hosts)
	}
	return res, nil
}

// loadUpgradeSection reads the [upgrade] section of file, the way a
// rollout does; ok is false when the file has none.
func loadUpgradeSection(file string) (*upgrade.Config, bool, error) {
	b, err := readConfigFile(file)
	if err != nil {
		return nil, false, &ConfigError{File: file, Msg: err.Error(), Err: err}
	}
	var doc map[string]any
	if _, err := toml.Decode(string(b), &doc); err != nil {
		return nil, false, tomlError(file, err)
	}
	if _, ok := doc["upgrade"]; !ok {
		return nil, false, nil
	}
	up, err := upgrade.LoadConfigFile(file)
	if err != nil {
		return nil, false, &ConfigError{File: file, Key: "upgrade", Msg: err.Error(), Err: err}
	}
	return up, true, nil
}

// EffectiveConfig is the config in effect for a root, as `repoctl config
// show` prints it: every default filled in, paths made absolute. It holds
// no secret: signing.passphrase_file is a path whose contents are never
// read here, and REPOCTL_KEY_PASSPHRASE is never shown.
type EffectiveConfig struct {
	Root string `json:"root"`
	File string `json:"file"` // "" when the built-in defaults apply
	// Config is the config as TOML keys and values (the [upgrade] section
	// included, as written: its defaults apply per host when a rollout
	// resolves it).
	Config map[string]any `json:"config"`
	// TOML is the same, written as a config file.
	TOML string `json:"-"`
}

// ShowConfig loads the config LoadConfig(root, file) would and returns it
// with its defaults. Like CheckConfig it touches nothing.
func ShowConfig(root, file string) (*EffectiveConfig, error) {
	c, err := LoadConfig(root, file)
	if err != nil {
		return nil, err
	}
	// http.public_url stays empty unless the file sets it: an empty one
	// means "the address the daemon bound", which a filled-in default
	// would no longer mean if the output were used as a config.
	shown := *c
	if !c.publicURLSet {
		shown.HTTP.PublicURL = ""
	}
	var buf bytes.Buffer
	enc := toml.NewEncoder(&buf)
	enc.Indent = ""
	if err := enc.Encode(&shown); err != nil {
		return nil, fmt.Errorf("encoding the config: %w", err)
	}
	if c.File != "" {
		up, ok, err := loadUpgradeSection(c.File)
		if err != nil {
			return nil, err
		}
		if ok {
			buf.WriteString("\n")
			enc := toml.NewEncoder(&buf)
			enc.Indent = ""
			if err := enc.Encode(struct {
				Upgrade *upgrade.Config `toml:"upgrade"`
			}{up}); err != nil {
				return nil, fmt.Errorf("encoding the [upgrade] section: %w", err)
			}
		}
	}
	ec := &EffectiveConfig{Root: c.Root, File: c.File, TOML: buf.String()}
	if _, err := toml.Decode(ec.TOML, &ec.Config); err != nil {
		return nil, fmt.Errorf("decoding the encoded config: %w", err)
	}
	return ec, nil
}

// ConfigProblems lists the *ConfigErrors in err (one, or several joined).
func ConfigProblems(err error) []*ConfigError {
	var out []*ConfigError
	var walk func(error)
	walk = func(e error) {
		switch x := e.(type) {
		case *ConfigError:
			out = append(out, x)
		case interface{ Unwrap() []error }:
			for _, y := range x.Unwrap() {
				walk(y)
			}
		case interface{ Unwrap() error }:
			walk(x.Unwrap())
		}
	}
	walk(err)
	return out
}
