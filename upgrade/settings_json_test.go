package upgrade

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestSettingsJSONBothForms: the stored form (integer nanoseconds, which
// rollouts.db written by any repoctl holds) is still what Marshal writes,
// and Unmarshal reads it and the CLI's "10s" form alike.
func TestSettingsJSONBothForms(t *testing.T) {
	want := Settings{KnownHosts: "/k", ConnectTimeout: 10 * time.Second, CommandTimeout: 10 * time.Minute, Concurrency: 3}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"connect_timeout":10000000000`) || !strings.Contains(string(b), `"command_timeout":600000000000`) {
		t.Errorf("stored form changed: %s", b)
	}
	for _, in := range []string{
		string(b),
		`{"known_hosts":"/k","connect_timeout":"10s","command_timeout":"10m0s","concurrency":3}`,
	} {
		var got Settings
		if err := json.Unmarshal([]byte(in), &got); err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if got != want {
			t.Errorf("%s: %+v, want %+v", in, got, want)
		}
	}
	var got Settings
	if err := json.Unmarshal([]byte(`{"connect_timeout":"soon"}`), &got); err == nil || !strings.Contains(err.Error(), "connect_timeout") {
		t.Errorf("a bad duration: %v, want an error naming connect_timeout", err)
	}
}
