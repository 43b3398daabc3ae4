package repo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadConfigText(t *testing.T, body string) (*Config, error) {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ConfigFileName), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return LoadConfig(root, "")
}

func TestConfigTarget(t *testing.T) {
	c, err := loadConfigText(t, "")
	if err != nil || c.Publish.Target != TargetLocal || c.Publish.S3.Region != "us-east-1" || c.Publish.S3.Endpoint != "" {
		t.Fatalf("defaults: %+v, %v", c.Publish, err)
	}
	c, err = loadConfigText(t, "[publish]\ntarget = \"s3\"\n[publish.s3]\nendpoint = \"http://127.0.0.1:8333/\"\nbucket = \"repo\"\nprefix = \"yum/el\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Publish.S3; s.Endpoint != "http://127.0.0.1:8333" || s.Bucket != "repo" || s.Prefix != "yum/el/" || s.Region != "us-east-1" {
		t.Errorf("normalized: %+v", s)
	}
}

// Hostile and mistaken values are refused with the key and its line.
func TestConfigTargetHostile(t *testing.T) {
	s3 := func(kv string) string {
		return "[publish]\ntarget = \"s3\"\n[publish.s3]\n" + kv
	}
	for _, c := range []struct {
		body, key string
		line      int
	}{
		{"[publish]\ntarget = \"ftp\"\n", "publish.target", 2},
		{"[publish]\ntarget = \"S3\"\n", "publish.target", 2},
		{"[publish.s3]\nbucket = \"repo\"\n", "publish.target", 0}, // s3 settings without target = "s3"
		{s3("bucket = \"repo\"\n"), "publish.s3.endpoint", 0},
		{s3("endpoint = \"file:///etc/passwd\"\nbucket = \"repo\"\n"), "publish.s3.endpoint", 4},
		{s3("endpoint = \"http://AKIA:secret@h\"\nbucket = \"repo\"\n"), "publish.s3.endpoint", 4},
		{s3("endpoint = \"http://h/other/bucket\"\nbucket = \"repo\"\n"), "publish.s3.endpoint", 4},
		{s3("endpoint = \"http://h\"\nbucket = \"../etc\"\n"), "publish.s3.bucket", 5},
		{s3("endpoint = \"http://h\"\nbucket = \"Repo\"\n"), "publish.s3.bucket", 5},
		{s3("endpoint = \"http://h\"\nbucket = \"10.0.0.1\"\n"), "publish.s3.bucket", 5},
		{s3("endpoint = \"http://h\"\nbucket = \"repo\"\nprefix = \"/abs\"\n"), "publish.s3.prefix", 6},
		{s3("endpoint = \"http://h\"\nbucket = \"repo\"\nprefix = \"a/../../b\"\n"), "publish.s3.prefix", 6},
		{s3("endpoint = \"http://h\"\nbucket = \"repo\"\nprefix = \"a/.hidden\"\n"), "publish.s3.prefix", 6},
		{s3("endpoint = \"http://h\"\nbucket = \"repo\"\nregion = \"x y\"\n"), "publish.s3.region", 6},
		// Credentials have no key: they come from the environment.
		{s3("endpoint = \"http://h\"\nbucket = \"repo\"\nsecret_access_key = \"x\"\n"), "publish.s3.secret_access_key", 6},
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
		if strings.Contains(err.Error(), "secret") && !strings.Contains(c.body, "secret_access_key") {
			t.Errorf("%q: the error repeats the password: %v", c.body, err)
		}
	}
}
