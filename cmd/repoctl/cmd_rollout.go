package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
	"github.com/repoctl/repoctl/upgrade"
)

func init() {
	rollout := &cobra.Command{
		Use:   "rollout",
		Short: "Inspect, resume or abort phased rollouts (see promote --phased)",
		Long: `A phased rollout is a state machine kept in ROOT/rollouts.db, or in etcd with
[store] backend = "etcd", where every node sharing the prefix sees it. These
commands work after the process that ran it was killed (also from another node,
with etcd): status shows every host's step, resume continues without
repeating any host step recorded as done, and abort frees the hosts without
touching them. ID defaults to the newest
(unfinished, for resume and abort) rollout.`,
	}
	status := &cobra.Command{
		Use:               "status [ID]",
		Short:             "Show a rollout's state and every host's steps",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeRollouts,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, done, err := openRollouts(cmd)
			if err != nil {
				return err
			}
			defer done()
			r, err := m.Get(cmd.Context(), argOr(args))
			if err != nil {
				return err
			}
			return printRollout(cmd.OutOrStdout(), r)
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List every rollout, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, done, err := openRollouts(cmd)
			if err != nil {
				return err
			}
			defer done()
			rs, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			if globals.output == "json" {
				return printJSONTo(cmd.OutOrStdout(), rolloutsView(rs))
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tPACKAGES")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r.ID, stateText(r), planPackages(&r.Plan))
			}
			return tw.Flush()
		},
	}
	var rerun, yes bool
	resume := &cobra.Command{
		Use:   "resume [ID]",
		Short: "Continue an interrupted or halted rollout",
		Long: `Resume continues the rollout ID (default: the newest unfinished one) on its
app hosts, without repeating a host step recorded as done. It changes prod
hosts, so it shows the rollout and asks on a terminal first, and refuses
elsewhere without --yes.`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeRollouts,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectService(cmd)
			if err != nil {
				return err
			}
			defer done()
			m, mdone, err := rolloutManager(cmd, svc, upgrade.WithRerunInFlight(rerun))
			if err != nil {
				return err
			}
			defer mdone()
			id := argOr(args)
			if target := resumeTarget(cmd.Context(), m, id); target != nil {
				// What was shown is what resumes, even if a newer rollout
				// appears meanwhile.
				id = target.ID
				if err := confirm(cmd, yes, fmt.Sprintf("resume continues rollout %s on the app hosts", id), func(w io.Writer) {
					printRolloutText(w, target)
				}); err != nil {
					return err
				}
			}
			r, err := m.Resume(cmd.Context(), id)
			return finishRollout(cmd, m, r, err)
		},
	}
	resume.Flags().BoolVar(&rerun, "rerun-in-flight", false, "also re-run steps marked not_idempotent that were in flight when repoctl stopped")
	resume.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	abort := &cobra.Command{
		Use:               "abort [ID]",
		Short:             "Mark a rollout aborted and free its hosts (nothing on the hosts is undone)",
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeRollouts,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, done, err := openRollouts(cmd, upgrade.WithRecorder(bestEffortRecorder(cmd)))
			if err != nil {
				return err
			}
			defer done()
			r, err := m.Abort(cmd.Context(), argOr(args))
			if r != nil && err == nil {
				return printRollout(cmd.OutOrStdout(), r)
			}
			return err
		},
	}
	rollout.AddCommand(status, list, resume, abort)
	rootCmd.AddCommand(rollout)

}

// resumeTarget is the rollout Resume(id) would continue, or nil when there
// is none to continue (Resume then says why).
func resumeTarget(ctx context.Context, m *upgrade.Manager, id string) *upgrade.Rollout {
	if id != "" {
		r, err := m.Get(ctx, id)
		if err != nil || r.State.Terminal() {
			return nil
		}
		return r
	}
	all, err := m.List(ctx)
	if err != nil {
		return nil
	}
	for i := len(all) - 1; i >= 0; i-- {
		if !all[i].State.Terminal() {
			return all[i]
		}
	}
	return nil
}

func argOr(args []string) string {
	if len(args) > 0 {
		return args[0]
	}
	return ""
}

// rolloutManager wires the rollout's audit events into the repository's
// hash-chained event log and rollback into Service.Restore.
func rolloutManager(cmd *cobra.Command, svc repo.Service, extra ...upgrade.Option) (*upgrade.Manager, func() error, error) {
	rec := func(ctx context.Context, ev upgrade.Event) error {
		return svc.RecordRollout(ctx, rolloutEvent(ev))
	}
	restore := func(ctx context.Context, r *upgrade.Rollout) error {
		raw := r.Plan.Meta["promote"]
		if raw == "" {
			return nil
		}
		var pr repo.PromoteResult
		if err := json.Unmarshal([]byte(raw), &pr); err != nil {
			return fmt.Errorf("decoding promote of rollout %s: %w", r.ID, err)
		}
		return svc.Restore(ctx, &pr)
	}
	return openRollouts(cmd, append([]upgrade.Option{upgrade.WithRecorder(rec), upgrade.WithRestore(restore),
		upgrade.WithProgress(progressPrinter(cmd))}, extra...)...)
}

// openRollouts is the root's rollout Manager, wherever its config keeps
// rollouts (repo.RolloutManager). The func closes it.
func openRollouts(cmd *cobra.Command, opts ...upgrade.Option) (*upgrade.Manager, func() error, error) {
	cfg, err := repo.LoadConfig(globals.root, globals.config)
	if err != nil {
		return nil, nil, err
	}
	return repo.RolloutManager(cmd.Context(), cfg, opts...)
}

// bestEffortRecorder records into the event log when the repository can be
// reached; abort must work even when it cannot.
func bestEffortRecorder(cmd *cobra.Command) upgrade.Recorder {
	return func(ctx context.Context, ev upgrade.Event) error {
		svc, done, err := connectService(cmd)
		if err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "repoctl: warning: %s not recorded in the event log: %v\n", ev.Kind, err)
			return nil
		}
		defer done()
		return svc.RecordRollout(ctx, rolloutEvent(ev))
	}
}

func rolloutEvent(ev upgrade.Event) repo.RolloutEvent {
	return repo.RolloutEvent{Time: ev.Time, Kind: ev.Kind, Rollout: ev.Rollout, NEVRA: ev.NEVRA, Phase: ev.Phase,
		Host: ev.Host, Command: ev.Command, Detail: ev.Detail, ExitStatus: ev.ExitStatus, Who: repo.CurrentUser()}
}

// progressPrinter shows each host step on stderr as it ends.
func progressPrinter(cmd *cobra.Command) func(upgrade.Event) {
	w := cmd.ErrOrStderr()
	return func(ev upgrade.Event) {
		if globals.quiet {
			return
		}
		ts := ev.Time.Local().Format("15:04:05")
		switch ev.Kind {
		case upgrade.EventStepDone:
			fmt.Fprintf(w, "%s  ok      %-22s %s\n", ts, ev.Phase, ev.Host)
		case upgrade.EventStepFailed:
			fmt.Fprintf(w, "%s  FAILED  %-22s %s: %s\n", ts, ev.Phase, ev.Host, ev.Detail)
		case upgrade.EventStepSkip:
			fmt.Fprintf(w, "%s  done    %-22s %s (finished before, not repeated)\n", ts, ev.Phase, ev.Host)
		case upgrade.EventStarted, upgrade.EventResumed:
			fmt.Fprintf(w, "%s  %s %s (%s)\n", ts, ev.Kind, ev.Rollout, ev.NEVRA)
		case upgrade.EventRollback:
			fmt.Fprintf(w, "%s  rolling back: %s\n", ts, ev.Detail)
		case upgrade.EventRestored:
			fmt.Fprintf(w, "%s  channel restored\n", ts)
		}
	}
}

// finishRollout prints the outcome; on a halt the per-host report of what
// ran and what it printed.
func finishRollout(cmd *cobra.Command, m *upgrade.Manager, r *upgrade.Rollout, err error) error {
	if r == nil {
		return err
	}
	if globals.output == "json" {
		// The final state with every host's step record.
		if full, gerr := m.Get(context.WithoutCancel(cmd.Context()), r.ID); gerr == nil {
			r = full
		}
		if perr := printJSONTo(cmd.OutOrStdout(), rolloutView(r)); perr != nil {
			return perr
		}
		return err
	}
	w := cmd.OutOrStdout()
	var he *upgrade.HaltError
	if errors.As(err, &he) {
		if he.RolledBack {
			fmt.Fprintf(w, "rollout %s: %q failed; hosts rolled back to %s\n", r.ID, he.Phase, orNoneCmd(planPrevious(&r.Plan)))
		} else {
			fmt.Fprintf(w, "rollout %s: %s at %q\n", r.ID, r.State, he.Phase)
		}
		printSteps(w, he.Failed, func(upgrade.StepRecord) bool { return true })
		if !r.State.Terminal() {
			fmt.Fprintf(w, "see `repoctl rollout status %s`; fix and `repoctl rollout resume %s`, or abort it\n", r.ID, r.ID)
		}
		return err
	}
	if err == nil {
		if len(r.Plan.Builds) > 1 {
			fmt.Fprintf(w, "rollout %s: %s, every host has the package of its arch of %s\n", r.ID, r.State, planPackages(&r.Plan))
		} else {
			fmt.Fprintf(w, "rollout %s: %s, %s on every host\n", r.ID, r.State, r.Plan.NEVRA)
		}
	}
	return err
}

// planPackages names what a rollout installs: its NEVRA, or every arch's
// of a multi-arch build.
func planPackages(p *upgrade.Plan) string {
	if len(p.Builds) <= 1 {
		return p.NEVRA
	}
	var ns []string
	for _, b := range p.Builds {
		ns = append(ns, b.NEVRA)
	}
	return strings.Join(ns, " ")
}

func planPrevious(p *upgrade.Plan) string {
	if len(p.Builds) <= 1 {
		return p.Previous
	}
	var ns []string
	for _, b := range p.Builds {
		if b.Previous != "" {
			ns = append(ns, b.Previous)
		}
	}
	return strings.Join(ns, " ")
}

func stateText(r *upgrade.Rollout) string {
	if r.State == upgrade.StateRunning && !r.Live {
		return "running (interrupted)"
	}
	if r.RollingBack && !r.State.Terminal() {
		return string(r.State) + " (rolling back)"
	}
	return string(r.State)
}

func printRollout(w io.Writer, r *upgrade.Rollout) error {
	if globals.output == "json" {
		return printJSONTo(w, rolloutView(r))
	}
	printRolloutText(w, r)
	return nil
}

func printRolloutText(w io.Writer, r *upgrade.Rollout) {
	fmt.Fprintf(w, "rollout   %s\nstate     %s\npackage   %s (previous: %s)\nstarted   %s by pid %d on %s\nupdated   %s\n",
		r.ID, stateText(r), planPackages(&r.Plan), orNoneCmd(planPrevious(&r.Plan)), r.Created.Local().Format(time.RFC3339), r.PID, r.Hostname,
		r.Updated.Local().Format(time.RFC3339))
	if r.Error != "" {
		fmt.Fprintf(w, "error     %s\n", r.Error)
	}
	byKey := map[string]upgrade.StepRecord{}
	for _, s := range r.Steps {
		byKey[s.Key] = s
	}
	show := func(prefix string, i int, ph upgrade.Phase) {
		fmt.Fprintf(w, "%s%d %s\n", strings.ToUpper(prefix[:1]), i+1, ph.Name)
		rows := make([]upgrade.StepRecord, 0, len(ph.Tasks))
		for _, t := range ph.Tasks {
			s, ok := byKey[fmt.Sprintf("%s%03d/%s", prefix, i, t.Target.Host)]
			if !ok {
				s = upgrade.StepRecord{Host: t.Target.Host} // no record yet: pending
			}
			rows = append(rows, s)
		}
		printSteps(w, rows, func(s upgrade.StepRecord) bool { return s.State == upgrade.StepFailed })
	}
	for i, ph := range r.Plan.Phases {
		show("p", i, ph)
	}
	if r.RollingBack || r.State == upgrade.StateRolledBack {
		for i, ph := range r.Plan.Rollback {
			show("r", i, ph)
		}
	}
	var extra []string
	for k := range byKey {
		if strings.HasPrefix(k, "r999/") {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	rows := make([]upgrade.StepRecord, 0, len(extra))
	for _, k := range extra {
		rows = append(rows, byKey[k])
	}
	printSteps(w, rows, func(upgrade.StepRecord) bool { return true })
}

// printSteps writes one aligned row per host step (a record without a
// State is pending), then what ran and what it printed for the steps
// detail selects.
func printSteps(w io.Writer, steps []upgrade.StepRecord, detail func(upgrade.StepRecord) bool) {
	if len(steps) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range steps {
		if s.State == "" {
			fmt.Fprintf(tw, "    %s\tpending\t\t\t\n", s.Host)
			continue
		}
		took := ""
		if !s.Finished.IsZero() {
			took = s.Finished.Sub(s.Started).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "    %s\t%s\truns %d\t%s\t%s\n", s.Host, s.State, s.Runs, took, strings.ReplaceAll(s.Command, "\t", " "))
	}
	tw.Flush()
	for _, s := range steps {
		if s.State != "" && detail(s) {
			printStepDetail(w, s)
		}
	}
}

func printStepDetail(w io.Writer, s upgrade.StepRecord) {
	if s.Error != "" {
		fmt.Fprintf(w, "        %s: error: %s\n", s.Host, s.Error)
	}
	for _, out := range []struct{ name, text string }{{"stdout", s.Stdout}, {"stderr", s.Stderr}} {
		t := strings.TrimRight(out.text, "\n")
		if t == "" {
			continue
		}
		lines := strings.Split(t, "\n")
		if len(lines) > 20 {
			lines = append([]string{fmt.Sprintf("[... %d lines before]", len(lines)-20)}, lines[len(lines)-20:]...)
		}
		fmt.Fprintf(w, "        %s: %s:\n", s.Host, out.name)
		for _, l := range lines {
			fmt.Fprintf(w, "          %s\n", l)
		}
	}
}

func orNoneCmd(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
