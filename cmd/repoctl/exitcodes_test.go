package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo"
	"github.com/repoctl/repoctl/upgrade"
)

// TestExitCodes checks the table through wrapped errors as commands return
// them, and the precedence between rows where one error wraps two
// sentinels. The end-to-end codes of each command are in conventions_test.go.
func TestExitCodes(t *testing.T) {
	wrap := func(errs ...error) error {
		var err error = errors.Join(errs...)
		return fmt.Errorf("adding %q: %w", "x.rpm", err)
	}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"unknown", errors.New("disk on fire"), exitError},
		{"interrupt", wrap(context.Canceled), exitInterrupted},
		{"interrupt wins over a rejection", wrap(repo.ErrRejected, context.Canceled), exitInterrupted},
		{"flag", wrap(errUsage), exitUsage},
		{"rejected", wrap(repo.ErrRejected), exitRejected},
		{"rejected for a bad name is a rejection", wrap(repo.ErrRejected, repo.ErrInvalidName), exitRejected},
		{"duplicate", wrap(repo.ErrDuplicateNEVRA), exitRejected},
		{"fsck", wrap(repo.ErrFsck), exitRejected},
		{"createrepo skipped", wrap(metadata.ErrSomeSkipped), exitRejected},
		{"locked", wrap(repo.ErrLocked), exitBusy},
		{"rotation", wrap(repo.ErrRotationUnfinished), exitBusy},
		{"key in use wins over rotation", wrap(repo.ErrKeyInUse, repo.ErrRotationUnfinished), exitRejected},
		{"rollout busy", wrap(upgrade.ErrBusy), exitBusy},
		{"local rollouts after a move to etcd", wrap(repo.ErrLocalRollouts), exitBusy},
		{"halted wins over locked", wrap(upgrade.ErrHalted, upgrade.ErrLocked), exitHalted},
		{"bad option", wrap(repo.ErrBadOption), exitUsage},
		{"config file", wrap(repo.ErrConfigFile), exitUsage},
		{"advisory sub-sentinel", wrap(repo.ErrAdvisoryConflict), exitUsage},
		{"comps sub-sentinel", wrap(metadata.ErrCompsEntity), exitUsage},
		{"unsafe package name", wrap(upgrade.ErrUnsafeName), exitUsage},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}
