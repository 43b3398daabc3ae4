package upgrade

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestOlderRolloutsDBOpens: a rollouts.db as every repoctl before the
// Store seam wrote it (a JSON header per rollout in bucket "rollouts", its
// step records in "steps"/ID) reads unchanged, and what this repoctl
// writes to it keeps that layout, so that an older repoctl reads it too.
func TestOlderRolloutsDBOpens(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "rollouts.db")
	created := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	// Literal JSON, not this repoctl's encoder: the bytes an older one left.
	header := `{"id":"20260301-100000-abcdef","state":"halted","plan":{"nevra":"app-2.0-1.el9.x86_64","restart":"graceful","rollback_on_failure":false,` +
		`"settings":{"known_hosts":"/k","connect_timeout":5000000000,"command_timeout":60000000000,"concurrency":0},` +
		`"phases":[{"name":"update group1","tasks":[{"target":{"host":"app1","address":"10.0.0.1","port":22},"command":"dnf -y upgrade app"}]}]},` +
		`"created":"2026-03-01T10:00:00Z","updated":"2026-03-01T10:01:00Z","pid":4242,"hostname":"ops1","error":"exit status 1","live":false}`
	step := `{"key":"p000/app1","phase":"update group1","host":"app1","state":"failed","command":"dnf -y upgrade app","exit_status":1,"runs":1,"started":"2026-03-01T10:00:01Z","finished":"2026-03-01T10:00:30Z"}`
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		rb, err := tx.CreateBucket([]byte("rollouts"))
		if err != nil {
			return err
		}
		if err := rb.Put([]byte("20260301-100000-abcdef"), []byte(header)); err != nil {
			return err
		}
		sb, err := tx.CreateBucket([]byte("steps"))
		if err != nil {
			return err
		}
		b, err := sb.CreateBucket([]byte("20260301-100000-abcdef"))
		if err != nil {
			return err
		}
		return b.Put([]byte("p000/app1"), []byte(step))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	m, err := NewManager(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, err := m.Get(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.ID != "20260301-100000-abcdef" || r.State != StateHalted || !r.Created.Equal(created) || r.PID != 4242 ||
		len(r.Steps) != 1 || r.Steps[0].State != StepFailed || r.Steps[0].ExitStatus != 1 || r.Plan.Phases[0].Tasks[0].Target.Address != "10.0.0.1" {
		t.Fatalf("older rollout read as %+v", r)
	}
	plan := &Plan{Phases: []Phase{{Tasks: []Task{{Target: Target{Host: "app1", Address: "10.0.0.1", Port: 22}}}}}}
	if err := m.CheckHosts(ctx, plan); err == nil {
		t.Error("the older halted rollout does not own its host")
	}
	if _, err := m.Abort(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		var names []string
		tx.ForEach(func(name []byte, _ *bolt.Bucket) error { names = append(names, string(name)); return nil })
		if len(names) != 2 || names[0] != "rollouts" || names[1] != "steps" {
			t.Errorf("buckets after a write: %v, want [rollouts steps]", names)
		}
		var h map[string]any
		if err := json.Unmarshal(tx.Bucket([]byte("rollouts")).Get([]byte(r.ID)), &h); err != nil {
			t.Fatal(err)
		}
		if h["state"] != "aborted" || h["pid"] != float64(4242) || h["hostname"] != "ops1" || h["steps"] != nil {
			t.Errorf("header written back: %v", h)
		}
		if v := tx.Bucket([]byte("steps")).Bucket([]byte(r.ID)).Get([]byte("p000/app1")); string(v) != step {
			t.Errorf("step record changed: %s", v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
