package repo

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigStore(t *testing.T) {
	c, err := loadConfigText(t, "")
	if err != nil || c.Store.Backend != StoreBbolt || c.Store.Endpoints != nil || c.Store.DialTimeout != "5s" {
		t.Fatalf("defaults: %+v, %v", c.Store, err)
	}
	c, err = loadConfigText(t, "[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"https://etcd.example:2379/\"]\nca_file = \"tls/ca.pem\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Store; s.Prefix != "/repoctl/" || s.CAFile != filepath.Join(c.Root, "tls/ca.pem") || len(s.Endpoints) != 2 {
		t.Errorf("normalized: %+v", s)
	}
}

// Hostile and mistaken [store] values are refused with the key and line.
func TestConfigStoreHostile(t *testing.T) {
	etcd := func(kv string) string {
		return "[store]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n" + kv
	}
	for _, c := range []struct {
		body, key string
		line      int
	}{
		{"[store]\nbackend = \"postgres\"\n", "store.backend", 2},
		{"[store]\nbackend = \"ETCD\"\n", "store.backend", 2},
		{"[store]\nendpoints = [\"http://h:2379\"]\n", "store.backend", 0}, // etcd settings with bbolt
		{"[store]\nbackend = \"etcd\"\n", "store.endpoints", 0},
		{"[store]\nbackend = \"etcd\"\nendpoints = [\"file:///etc/passwd\"]\n", "store.endpoints", 3},
		{"[store]\nbackend = \"etcd\"\nendpoints = [\"http://root:secret@h:2379\"]\n", "store.endpoints", 3},
		{"[store]\nbackend = \"etcd\"\nendpoints = [\"h:2379\"]\n", "store.endpoints", 3},
		{etcd("prefix = \"repoctl\"\n"), "store.prefix", 4},
		{etcd("prefix = \"/\"\n"), "store.prefix", 4},
		{etcd("prefix = \"/a\\u0000b/\"\n"), "store.prefix", 4},
		{etcd("prefix = \"/" + strings.Repeat("a", 300) + "/\"\n"), "store.prefix", 4},
		{etcd("dial_timeout = \"forever\"\n"), "store.dial_timeout", 4},
		{etcd("dial_timeout = \"-1s\"\n"), "store.dial_timeout", 4},
		{etcd("cert_file = \"c.pem\"\n"), "store.cert_file", 0},
		{etcd("max_txn_ops = -1\n"), "store.max_txn_ops", 0},
		{etcd("password = \"x\"\n"), "store.password", 4}, // strict: unknown key
	} {
		_, err := loadConfigText(t, c.body)
		var ce *ConfigError
		if !errors.Is(err, ErrBadConfig) || !errors.As(err, &ce) {
			t.Errorf("%q: %v, want a ConfigError", c.body, err)
			continue
		}
		if ce.Key != c.key || (c.line != 0 && ce.Line != c.line) {
			t.Errorf("%q: key %q line %d (%v), want %q line %d", c.body, ce.Key, ce.Line, err, c.key, c.line)
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the error repeats the password: %v", c.body, err)
		}
	}
}
