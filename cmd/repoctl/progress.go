package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo"
)

// stageBar draws one progress bar per stage of work on a terminal: the
// stage's name and "done/total". Libraries report through their progress
// interfaces (repo.StepProgress, metadata.Progress); this is the one place
// that draws. The zero of w (no terminal) draws nothing.
type stageBar struct {
	mu  sync.Mutex
	w   io.Writer // nil: not a terminal
	bar *progressbar.ProgressBar
}

func newStageBar(w io.Writer) *stageBar { return &stageBar{w: w} }

// start replaces the current bar by one for stage of total steps (0 when
// the total is unknown: a spinner).
func (b *stageBar) start(stage string, total int) {
	if b.w == nil {
		return
	}
	b.clear()
	max := total
	if max <= 0 {
		max = -1 // progressbar's spinner
	}
	b.bar = progressbar.NewOptions(max,
		progressbar.OptionSetWriter(b.w),
		progressbar.OptionSetDescription(fmt.Sprintf("repoctl: %-10s", stage)),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionUseANSICodes(true),
		progressbar.OptionClearOnFinish(),
	)
	b.bar.RenderBlank()
}

func (b *stageBar) add(n int) {
	if b.bar != nil {
		b.bar.Add(n)
	}
}

func (b *stageBar) set(n int) {
	if b.bar != nil {
		b.bar.Set(n)
	}
}

// clear takes the bar off the screen, so that a line can be printed.
func (b *stageBar) clear() {
	if b.bar != nil {
		b.bar.Clear()
		b.bar.Exit()
		b.bar = nil
	}
}

// addProgress shows repo's ingest stages ("validating", "signing",
// "placing", "publishing") with counts while add runs in this process, and
// the requests of a large add through the daemon.
type addProgress struct{ *stageBar }

var _ repo.StepProgress = addProgress{}

func (p addProgress) Stage(stage string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start(stage, n)
}

func (p addProgress) Step(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.add(n)
}

func (p addProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

// createrepoProgress draws createrepo's stages on a terminal; elsewhere it
// only prints notices (skipped files, lock waits), one per line, and with
// -q not even those.
type createrepoProgress struct {
	*stageBar
	notices io.Writer // nil: -q
}

var _ metadata.Progress = (*createrepoProgress)(nil)

func (p *createrepoProgress) Stage(name string, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.start(name, total)
}

func (p *createrepoProgress) Step(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.add(n)
}

func (p *createrepoProgress) Notice(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.notices == nil {
		return
	}
	if p.bar != nil {
		p.bar.Clear()
	}
	fmt.Fprintf(p.notices, "repoctl: %s\n", msg)
	if p.bar != nil {
		p.bar.RenderBlank()
	}
}

func (p *createrepoProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}
