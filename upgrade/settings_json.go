package upgrade

import (
	"encoding/json"
	"fmt"
	"time"
)

// UnmarshalJSON reads the timeouts as rollouts.db stores them (integer
// nanoseconds, which stays the stored form so that older repoctl versions
// keep reading the file) and as `repoctl -o json` prints them ("10s"), so
// that a script can feed the CLI's output back into these types.
func (s *Settings) UnmarshalJSON(b []byte) error {
	type plain Settings
	var v struct {
		plain
		ConnectTimeout json.RawMessage `json:"connect_timeout"`
		CommandTimeout json.RawMessage `json:"command_timeout"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*s = Settings(v.plain)
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *time.Duration
	}{{"connect_timeout", v.ConnectTimeout, &s.ConnectTimeout}, {"command_timeout", v.CommandTimeout, &s.CommandTimeout}} {
		d, err := jsonDuration(f.raw)
		if err != nil {
			return fmt.Errorf("settings %s: %w", f.name, err)
		}
		*f.dst = d
	}
	return nil
}

func jsonDuration(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, err
		}
		return time.ParseDuration(s)
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		return 0, err
	}
	return time.Duration(n), nil
}
