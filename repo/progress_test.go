package repo

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// stepRecorder records each stage and the steps reported in it.
type stepRecorder struct {
	mu     sync.Mutex
	stages []string
	total  map[string]int
	steps  map[string]int
	cur    string
}

func (p *stepRecorder) Stage(stage string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stages = append(p.stages, stage)
	p.total[stage], p.cur = n, stage
}

func (p *stepRecorder) Step(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.steps[p.cur] += n
}

// TestStepProgressCounts: a StepProgress sees every stage of an add and,
// within each, exactly as many steps as the stage said it would cover, so
// that a bar reaches n/n and no further.
func TestStepProgressCounts(t *testing.T) {
	dir := t.TempDir()
	p := &stepRecorder{total: map[string]int{}, steps: map[string]int{}}
	r := openPL(t, filepath.Join(dir, "root"), WithProgress(p))
	in := t.TempDir()
	var files []string
	for i := range 7 {
		files = append(files, writeSpec(t, in, spec(fmt.Sprintf("prog%d", i), "1", "1.el9", "noarch")))
	}
	res, err := r.Add(context.Background(), files, AddOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range res {
		if a.Action != ActionAdded {
			t.Fatalf("%s: %s %s", a.Path, a.Action, a.Reason)
		}
	}
	for _, stage := range []string{"validating", "signing", "placing", "publishing"} {
		if p.total[stage] == 0 || p.steps[stage] != p.total[stage] {
			t.Errorf("stage %q: %d steps of %d (stages %v)", stage, p.steps[stage], p.total[stage], p.stages)
		}
	}
	if p.total["validating"] != len(files) || p.total["signing"] != len(files) {
		t.Errorf("validating %d, signing %d files, want %d", p.total["validating"], p.total["signing"], len(files))
	}
}
