package upgrade

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Event kinds, as handed to the recorder and the progress callback.
const (
	EventStarted    = "rollout-started"
	EventResumed    = "rollout-resumed"
	EventStepStart  = "step-started" // progress only, not recorded
	EventStepSkip   = "step-skipped" // progress only: finished before a resume
	EventStepDone   = "step-done"
	EventStepFailed = "step-failed"
	EventPhaseDone  = "phase-done"
	EventHalted     = "rollout-halted"
	EventDone       = "rollout-done"
	EventRollback   = "rollback-started"
	EventRestored   = "channel-restored"
	EventRolledBack = "rollout-rolled-back"
	EventAborted    = "rollout-aborted"
)

// Event is one thing that happened in a rollout.
type Event struct {
	Time       time.Time `json:"time"`
	Rollout    string    `json:"rollout"`
	Kind       string    `json:"kind"`
	NEVRA      string    `json:"nevra"`
	Phase      string    `json:"phase,omitempty"`
	Host       string    `json:"host,omitempty"`
	Command    string    `json:"command,omitempty"`
	ExitStatus int       `json:"exit_status,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

// Recorder appends an event to the audit log. A recorder error halts the
// rollout: a step that cannot be recorded must not be followed by more.
type Recorder func(ctx context.Context, ev Event) error

// RestoreFunc puts the channel back as it was before the promote. It gets
// the rollout so it can read Plan.Meta.
type RestoreFunc func(ctx context.Context, r *Rollout) error

type options struct {
	store    Store
	rerun    bool
	recorder Recorder
	progress func(Event)
	restore  RestoreFunc
}

// Option configures a Manager.
type Option func(*options) error

// WithRecorder sets the audit recorder (default: none).
func WithRecorder(f Recorder) Option {
	return func(o *options) error { o.recorder = f; return nil }
}

// WithProgress sets a callback that sees every event, including per-host
// starts and skips (default: none). It must not block for long.
func WithProgress(f func(Event)) Option {
	return func(o *options) error { o.progress = f; return nil }
}

// WithRerunInFlight makes resume re-run a step that was in flight when the
// process died even if the step is marked not idempotent (default false:
// such a step halts the resume, for an operator to check the host first).
func WithRerunInFlight(b bool) Option {
	return func(o *options) error { o.rerun = b; return nil }
}

// WithStore keeps the rollouts in st instead of the default,
// FileStore(root) (ROOT/rollouts.db and ROOT/rollouts.d/): repo passes its
// shared store here when the root keeps its state in etcd.
func WithStore(st Store) Option {
	return func(o *options) error {
		if st == nil {
			return errors.New("upgrade: WithStore(nil)")
		}
		o.store = st
		return nil
	}
}

// WithRestore sets what rollback calls after the hosts are downgraded
// (default: none, and rollback then leaves the channel alone).
func WithRestore(f RestoreFunc) Option {
	return func(o *options) error { o.restore = f; return nil }
}

// Manager runs and inspects the rollouts of one Store.
type Manager struct {
	st   records
	opts options
}

// NewManager keeps its state in root/rollouts.db and root/rollouts.d/
// (FileStore), or where WithStore says (root is then unused).
func NewManager(root string, opts ...Option) (*Manager, error) {
	m := &Manager{}
	for _, o := range opts {
		if err := o(&m.opts); err != nil {
			return nil, err
		}
	}
	if m.opts.store == nil {
		m.opts.store = FileStore(root)
	}
	m.st = records{st: m.opts.store}
	return m, nil
}

// Store is where m keeps its rollouts.
func (m *Manager) Store() Store { return m.opts.store }

// hold takes rollout id's run lock and a ctx that ends if the lock is
// lost while held (another node may then run the rollout). done releases
// both.
func (m *Manager) hold(ctx context.Context, id string) (context.Context, func(), error) {
	lk, err := m.st.st.Lock(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	if lost := lk.Lost(); lost != nil {
		go func() {
			select {
			case <-lost:
				cancel(fmt.Errorf("rollout %s: %w", id, ErrLockLost))
			case <-ctx.Done():
			}
		}()
	}
	return ctx, func() { cancel(nil); _ = lk.Release() }, nil
}

// HaltError is returned (wrapping ErrHalted) when a phase failed. Failed has
// every host's record for the failed phase that did not succeed: what ran
// and what it printed.
type HaltError struct {
	Rollout    string
	Phase      string
	Failed     []StepRecord
	RolledBack bool
	Cause      string
	// Err is the cause as an error, if there was one beyond host failures.
	Err error
}

func (e *HaltError) Error() string {
	var hosts []string
	for _, f := range e.Failed {
		hosts = append(hosts, f.Host)
	}
	s := fmt.Sprintf("rollout %s halted at %q", e.Rollout, e.Phase)
	if len(hosts) > 0 {
		s += " on " + strings.Join(hosts, ", ")
	}
	if e.Cause != "" {
		s += ": " + e.Cause
	}
	if e.RolledBack {
		s += " (rolled back)"
	}
	return s
}

// Unwrap makes errors.Is(err, ErrHalted) true, and errors.Is with the
// cause (e.g. ErrNotIdempotent).
func (e *HaltError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrHalted, e.Err}
	}
	return []error{ErrHalted}
}

func newID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
}

// Start records a new rollout of plan, takes its hosts, and runs it to the
// end, a halt, or ctx's end. The returned Rollout is the final state; on a
// halt the error is a *HaltError.
func (m *Manager) Start(ctx context.Context, plan *Plan) (*Rollout, error) {
	tr, err := newSSHTransport(plan.Settings)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	host, _ := os.Hostname()
	now := time.Now().UTC()
	r := &Rollout{ID: newID(), State: StateRunning, Plan: *plan, Created: now, Updated: now,
		PID: os.Getpid(), Hostname: host}
	ctx, done, err := m.hold(ctx, r.ID)
	if err != nil {
		return nil, err
	}
	defer done()
	if err := m.st.create(ctx, r); err != nil {
		return nil, fmt.Errorf("starting rollout of %q: %w", plan.NEVRA, err)
	}
	if err := m.emit(ctx, r, Event{Kind: EventStarted, Detail: fmt.Sprintf("previous %s, restart %s", orNone(plan.Previous), plan.Restart)}); err != nil {
		return m.halt(ctx, r, "start", nil, err)
	}
	return m.run(ctx, r, tr)
}

// CheckHosts fails with ErrLocked if an unfinished rollout owns any host
// of plan. Callers use it before changing anything; Start checks again
// atomically.
func (m *Manager) CheckHosts(ctx context.Context, plan *Plan) error {
	return m.st.checkHosts(ctx, plan)
}

// Preflight checks, before anything changes, that a rollout of plan could
// start: no unfinished rollout owns its hosts, and known_hosts and the
// keys can be loaded. Start checks the hosts again, atomically.
func (m *Manager) Preflight(ctx context.Context, plan *Plan) error {
	if err := m.CheckHosts(ctx, plan); err != nil {
		return err
	}
	tr, err := newSSHTransport(plan.Settings)
	if err != nil {
		return err
	}
	return tr.Close()
}

// Resume continues an interrupted or halted rollout ("" = the newest
// unfinished one). Host steps recorded as done are not run again; steps in
// flight when the process died are re-run (all plan steps are idempotent).
func (m *Manager) Resume(ctx context.Context, id string) (*Rollout, error) {
	if id == "" {
		r, err := m.newest(ctx, true)
		if err != nil {
			return nil, err
		}
		id = r.ID
	}
	ctx, done, err := m.hold(ctx, id)
	if err != nil {
		return nil, err
	}
	defer done()
	r, err := m.st.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.State.Terminal() {
		return r, fmt.Errorf("resuming %s (%s): %w", id, r.State, ErrFinished)
	}
	tr, err := newSSHTransport(r.Plan.Settings)
	if err != nil {
		return r, err
	}
	defer tr.Close()
	prev := *r
	r.State, r.PID, r.Error = StateRunning, os.Getpid(), ""
	r.Hostname, _ = os.Hostname()
	if err := m.st.saveState(ctx, r); err != nil {
		return r, err
	}
	if err := m.emit(ctx, r, Event{Kind: EventResumed}); err != nil {
		// Nothing ran: the rollout is left as it was, not halted anew,
		// and the error is the recorder's (a standby of an HA pair
		// refusing to record is "not the leader", not a halt).
		r.State, r.PID, r.Hostname, r.Error = prev.State, prev.PID, prev.Hostname, prev.Error
		if serr := m.st.saveState(context.WithoutCancel(ctx), r); serr != nil {
			return r, errors.Join(err, serr)
		}
		return r, err
	}
	return m.run(ctx, r, tr)
}

// Abort marks a rollout aborted and frees its hosts. Nothing is undone on
// the hosts. A live process running it stops before its next phase.
func (m *Manager) Abort(ctx context.Context, id string) (*Rollout, error) {
	if id == "" {
		r, err := m.newest(ctx, true)
		if err != nil {
			return nil, err
		}
		id = r.ID
	}
	r, err := m.st.abort(ctx, id)
	if err != nil {
		return r, err
	}
	return r, m.emit(ctx, r, Event{Kind: EventAborted})
}

// Get returns one rollout with its step records ("" = the newest).
func (m *Manager) Get(ctx context.Context, id string) (*Rollout, error) {
	if id == "" {
		return m.newest(ctx, false)
	}
	return m.st.get(ctx, id)
}

// List returns every rollout, oldest first.
func (m *Manager) List(ctx context.Context) ([]*Rollout, error) { return m.st.list(ctx) }

func (m *Manager) newest(ctx context.Context, unfinished bool) (*Rollout, error) {
	all, err := m.st.list(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if !unfinished || !all[i].State.Terminal() {
			return all[i], nil
		}
	}
	if unfinished {
		return nil, fmt.Errorf("no unfinished rollout in %q: %w", m.st.st, ErrNotFound)
	}
	return nil, fmt.Errorf("no rollout in %q: %w", m.st.st, ErrNotFound)
}

func (m *Manager) emit(ctx context.Context, r *Rollout, ev Event) error {
	ev.Time, ev.Rollout, ev.NEVRA = time.Now().UTC(), r.ID, r.Plan.NEVRA
	if m.opts.progress != nil {
		m.opts.progress(ev)
	}
	if m.opts.recorder == nil || ev.Kind == EventStepStart || ev.Kind == EventStepSkip {
		return nil
	}
	// The audit record is written even when ctx was cancelled: it says why
	// the rollout stopped.
	if err := m.opts.recorder(context.WithoutCancel(ctx), ev); err != nil {
		return fmt.Errorf("recording %s event: %w", ev.Kind, err)
	}
	return nil
}

func (m *Manager) halt(ctx context.Context, r *Rollout, phase string, failed []StepRecord, cause error) (*Rollout, error) {
	r.State = StateHalted
	he := &HaltError{Rollout: r.ID, Phase: phase, Failed: failed}
	if cause != nil {
		he.Cause, he.Err = cause.Error(), cause
		r.Error = he.Cause
	} else {
		r.Error = he.Error()
	}
	if cause := context.Cause(ctx); errors.Is(cause, ErrLockLost) {
		// Another node may run the rollout now: its state is not ours to
		// write any more.
		return r, errors.Join(he, cause)
	}
	bg := context.WithoutCancel(ctx)
	if err := m.st.saveState(bg, r); err != nil {
		return r, errors.Join(he, err)
	}
	if err := m.emit(bg, r, Event{Kind: EventHalted, Phase: phase, Detail: r.Error}); err != nil {
		return r, errors.Join(he, err)
	}
	if errors.Is(cause, context.Canceled) {
		return r, errors.Join(he, cause)
	}
	return r, he
}

func (m *Manager) aborted(ctx context.Context, r *Rollout) bool {
	cur, err := m.st.get(ctx, r.ID)
	return err == nil && cur.State == StateAborted
}

func (m *Manager) run(ctx context.Context, r *Rollout, tr runner) (*Rollout, error) {
	steps := map[string]StepRecord{}
	for _, s := range r.Steps {
		steps[s.Key] = s
	}
	var mu sync.Mutex
	ex := &executor{m: m, r: r, tr: tr, steps: steps, mu: &mu, probe: -1}
	for i, ph := range r.Plan.Phases {
		if ph.Kind == KindArch {
			ex.probe = i
		}
	}
	if !r.RollingBack {
		for i, ph := range r.Plan.Phases {
			if m.aborted(ctx, r) {
				r.State = StateAborted
				return r, fmt.Errorf("rollout %s: %w", r.ID, ErrFinished)
			}
			ran, failed, err := ex.phase(ctx, fmt.Sprintf("p%03d", i), ph, nil)
			if err == nil && len(failed) == 0 {
				if ran == 0 {
					continue // finished before a resume; its event is already recorded
				}
				if err = m.emit(ctx, r, Event{Kind: EventPhaseDone, Phase: ph.Name}); err == nil {
					continue
				}
			}
			// Only hosts failing their step or gate trigger a rollback; an
			// interrupt, an unrecordable event or a state error halts, for
			// a resume to pick up.
			if err != nil || !r.Plan.RollbackOnFailure {
				return m.halt(ctx, r, ph.Name, failed, err)
			}
			r.RollingBack, r.FailedPhase = true, ph.Name
			r.Error = fmt.Sprintf("phase %q failed", ph.Name)
			if err := m.st.saveState(ctx, r); err != nil {
				return r, err
			}
			if err := m.emit(ctx, r, Event{Kind: EventRollback, Phase: ph.Name, Detail: r.Error}); err != nil {
				return m.halt(ctx, r, "rollback", failed, err)
			}
			break
		}
		if !r.RollingBack {
			r.State = StateDone
			r.Error = ""
			if err := m.st.saveState(ctx, r); err != nil {
				return r, err
			}
			return r, m.emit(ctx, r, Event{Kind: EventDone})
		}
	}
	return m.rollback(ctx, ex)
}

// rollback downgrades, restarts and verifies every host whose update was
// at least started, then restores the channel.
func (m *Manager) rollback(ctx context.Context, ex *executor) (*Rollout, error) {
	r := ex.r
	updated := map[string]bool{}
	for i, ph := range r.Plan.Phases {
		if !ph.Updates {
			continue
		}
		for _, t := range ph.Tasks {
			// A step without a command never reached the host (no
			// package for its arch): there is nothing to downgrade.
			if s, ok := ex.steps[fmt.Sprintf("p%03d/%s", i, t.Target.Host)]; ok && s.Command != "" {
				updated[t.Target.Host] = true
			}
		}
	}
	firstFail := r.Error
	for i, ph := range r.Plan.Rollback {
		ran, failed, err := ex.phase(ctx, fmt.Sprintf("r%03d", i), ph, updated)
		if err != nil || len(failed) > 0 {
			return m.halt(ctx, r, ph.Name, failed, err)
		}
		if ran == 0 {
			continue
		}
		if err := m.emit(ctx, r, Event{Kind: EventPhaseDone, Phase: ph.Name}); err != nil {
			return m.halt(ctx, r, ph.Name, nil, err)
		}
	}
	const restoreKey = "r999/channel"
	if s, ok := ex.steps[restoreKey]; (!ok || s.State != StepDone) && m.opts.restore != nil {
		rec := StepRecord{Key: restoreKey, Phase: "restore channel", Host: "-", State: StepRunning, Started: time.Now().UTC(), Runs: s.Runs + 1}
		if err := m.st.putStep(ctx, r.ID, rec); err != nil {
			return r, err
		}
		err := m.opts.restore(ctx, r)
		rec.Finished, rec.State = time.Now().UTC(), StepDone
		if err != nil {
			rec.State, rec.Error = StepFailed, err.Error()
		}
		if perr := m.st.putStep(ctx, r.ID, rec); perr != nil {
			return r, perr
		}
		if err != nil {
			return m.halt(ctx, r, "restore channel", []StepRecord{rec}, err)
		}
		if err := m.emit(ctx, r, Event{Kind: EventRestored}); err != nil {
			return m.halt(ctx, r, "restore channel", nil, err)
		}
	}
	r.State = StateRolledBack
	if err := m.st.saveState(ctx, r); err != nil {
		return r, err
	}
	if err := m.emit(ctx, r, Event{Kind: EventRolledBack, Detail: firstFail}); err != nil {
		return r, err
	}
	all, _ := m.st.get(ctx, r.ID)
	var failed []StepRecord
	if all != nil {
		r.Steps = all.Steps
		for _, s := range all.Steps {
			if s.State == StepFailed {
				failed = append(failed, s)
			}
		}
	}
	return r, &HaltError{Rollout: r.ID, Phase: r.FailedPhase, Failed: failed, RolledBack: true}
}

// runner is the transport seen by the executor.
type runner interface {
	Run(ctx context.Context, t Target, cmd string) (CommandResult, error)
}

type executor struct {
	m     *Manager
	r     *Rollout
	tr    runner
	mu    *sync.Mutex
	steps map[string]StepRecord
	probe int // index of the plan's KindArch phase; -1 if none
}

// hostArch is what the plan's arch probe recorded for host. It is read
// from the step record, so a resumed rollout picks what the first run
// learnt.
func (ex *executor) hostArch(host string) (string, error) {
	if ex.probe < 0 {
		return "", fmt.Errorf("the plan has no arch probe for %s", host)
	}
	ex.mu.Lock()
	rec, ok := ex.steps[fmt.Sprintf("p%03d/%s", ex.probe, host)]
	ex.mu.Unlock()
	if !ok || rec.State != StepDone {
		return "", fmt.Errorf("the arch of %s is not known: its probe did not finish", host)
	}
	return parseProbe(rec.Stdout)
}

// checkProbe accepts a probe's answer only if the build has a package the
// host can install, so that a host of another arch halts the rollout
// before anything changed.
func (ex *executor) checkProbe(out string) error {
	arch, err := parseProbe(out)
	if err != nil {
		return err
	}
	for _, b := range ex.r.Plan.Builds {
		if nv, err := ParseNEVRA(b.NEVRA); err == nil && (nv.Arch == arch || nv.Arch == "noarch") {
			return nil
		}
	}
	var as []string
	for _, b := range ex.r.Plan.Builds {
		as = append(as, b.NEVRA)
	}
	return fmt.Errorf("host is %s; no package of the build fits it (%s)", arch, strings.Join(as, ", "))
}

// phase runs one phase over its hosts (only those in only, if non-nil),
// skipping host steps already done. It returns how many host steps it ran
// and the records of hosts that failed; err is for things that are not one
// host's failure.
func (ex *executor) phase(ctx context.Context, prefix string, ph Phase, only map[string]bool) (int, []StepRecord, error) {
	ran := 0
	var g errgroup.Group
	g.SetLimit(max(1, ex.r.Plan.Settings.Concurrency))
	var failed []StepRecord
	var fmu sync.Mutex
	for _, t := range ph.Tasks {
		if only != nil && !only[t.Target.Host] {
			continue
		}
		key := prefix + "/" + t.Target.Host
		ex.mu.Lock()
		prev, seen := ex.steps[key]
		ex.mu.Unlock()
		if seen && prev.State == StepDone {
			_ = ex.m.emit(ctx, ex.r, Event{Kind: EventStepSkip, Phase: ph.Name, Host: t.Target.Host})
			continue
		}
		if seen && prev.State == StepRunning && !ph.Idempotent && !ex.m.opts.rerun {
			prev.Error = ErrNotIdempotent.Error()
			return ran, []StepRecord{prev}, fmt.Errorf("%s on %s was in flight when repoctl stopped; check the host, then resume with --rerun-in-flight: %w",
				ph.Name, t.Target.Host, ErrNotIdempotent)
		}
		ran++
		g.Go(func() error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			rec, err := ex.task(ctx, key, ph, t, prev.Runs)
			if err != nil {
				return err
			}
			if rec.State != StepDone {
				fmu.Lock()
				failed = append(failed, rec)
				fmu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	sort.Slice(failed, func(i, j int) bool { return failed[i].Host < failed[j].Host })
	return ran, failed, err
}

func (ex *executor) task(ctx context.Context, key string, ph Phase, t Task, runs int) (StepRecord, error) {
	rec := StepRecord{Key: key, Phase: ph.Name, Host: t.Target.Host, State: StepRunning,
		Command: t.Command, Runs: runs + 1, Started: time.Now().UTC()}
	if t.Health != nil {
		rec.Command = "GET " + t.Health.URL
	}
	var pickErr error
	if t.Health == nil && len(t.ByArch) > 0 {
		var arch string
		if arch, pickErr = ex.hostArch(t.Target.Host); pickErr == nil {
			rec.Command, pickErr = pickByArch(t.ByArch, arch)
		}
	}
	if err := ex.m.st.putStep(ctx, ex.r.ID, rec); err != nil {
		return rec, err
	}
	ex.mu.Lock()
	ex.steps[key] = rec
	ex.mu.Unlock()
	_ = ex.m.emit(ctx, ex.r, Event{Kind: EventStepStart, Phase: ph.Name, Host: t.Target.Host, Command: rec.Command})
	var err error
	switch {
	case t.Health != nil:
		rec.Stdout, err = checkHealth(ctx, t.Health)
	case pickErr != nil:
		err = pickErr
	default:
		var res CommandResult
		res, err = ex.tr.Run(ctx, t.Target, rec.Command)
		rec.ExitStatus, rec.Stdout, rec.Stderr = res.ExitStatus, res.Stdout, res.Stderr
		if err == nil && res.ExitStatus != 0 {
			err = fmt.Errorf("exit status %d", res.ExitStatus)
		}
		if err == nil && ph.Kind == KindArch {
			err = ex.checkProbe(res.Stdout)
		}
	}
	if ctx.Err() != nil {
		// Interrupted: leave the record "running" so resume re-runs it.
		return rec, ctx.Err()
	}
	rec.Finished, rec.State = time.Now().UTC(), StepDone
	kind := EventStepDone
	if err != nil {
		rec.State, rec.Error, kind = StepFailed, err.Error(), EventStepFailed
	}
	if perr := ex.m.st.putStep(ctx, ex.r.ID, rec); perr != nil {
		return rec, perr
	}
	ex.mu.Lock()
	ex.steps[key] = rec
	ex.mu.Unlock()
	ev := Event{Kind: kind, Phase: ph.Name, Host: t.Target.Host, Command: rec.Command, ExitStatus: rec.ExitStatus, Detail: rec.Error}
	if eerr := ex.m.emit(ctx, ex.r, ev); eerr != nil {
		return rec, eerr
	}
	return rec, nil
}

// checkHealth runs the HTTP gate; the returned log says what each try saw.
func checkHealth(ctx context.Context, h *Health) (string, error) {
	client := &http.Client{Timeout: h.Timeout.Duration}
	var log strings.Builder
	once := func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			fmt.Fprintf(&log, "%s GET %s: %v\n", time.Now().UTC().Format(time.RFC3339Nano), h.URL, err)
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		snippet := strings.TrimSpace(string(body))
		if len(snippet) > 200 {
			snippet = snippet[:200] + "..."
		}
		fmt.Fprintf(&log, "%s GET %s: %d %q\n", time.Now().UTC().Format(time.RFC3339Nano), h.URL, resp.StatusCode, snippet)
		if h.ExpectStatus != 0 && resp.StatusCode != h.ExpectStatus {
			return fmt.Errorf("status %d, want %d", resp.StatusCode, h.ExpectStatus)
		}
		if h.ExpectBody != "" && !strings.Contains(string(body), h.ExpectBody) {
			return fmt.Errorf("body does not contain %q", h.ExpectBody)
		}
		return nil
	}
	sleep := func(d time.Duration) error {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return nil
		}
	}
	tries := max(1, h.Retries)
	var err error
	for i := 0; i < tries; i++ {
		if i > 0 {
			if serr := sleep(h.Interval.Duration); serr != nil {
				return log.String(), serr
			}
		}
		if err = once(); err == nil {
			break
		}
	}
	if err != nil {
		return log.String(), fmt.Errorf("health gate failed after %d tries: %w", tries, err)
	}
	// Soak: it must stay healthy, not just answer once.
	deadline := time.Now().Add(h.Soak.Duration)
	for h.Soak.Duration > 0 && time.Now().Before(deadline) {
		if serr := sleep(min(max(h.Interval.Duration, 100*time.Millisecond), time.Until(deadline))); serr != nil {
			return log.String(), serr
		}
		if err := once(); err != nil {
			return log.String(), fmt.Errorf("health gate failed during soak: %w", err)
		}
	}
	return log.String(), nil
}
