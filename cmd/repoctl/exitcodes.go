package main

import (
	"context"
	"errors"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo"
	"github.com/repoctl/repoctl/sign"
	"github.com/repoctl/repoctl/upgrade"
)

// Exit codes. Scripts depend on these; keep them stable and documented in
// README.md.
const (
	exitOK          = 0
	exitError       = 1 // anything not listed below
	exitUsage       = 2 // bad flags or arguments
	exitRejected    = 3 // some inputs were rejected, the rest was done
	exitBusy        = 4 // a lock is held by someone else and we did not wait
	exitHalted      = 5 // a rollout stopped at a failed step or health gate
	exitInterrupted = 130
)

// errUsage marks errors that come from bad command-line input.
var errUsage = errors.New("usage")

// exitCodes is the one table from the libraries' sentinel errors to exit
// codes, in precedence order: the first row whose sentinel the error wraps
// decides. Errors that
// no row names exit 1.
var exitCodes = []struct {
	code int
	errs []error
}{
	// An interrupt wins over whatever it interrupted, and a bad flag over
	// anything a command could have found.
	{exitInterrupted, []error{context.Canceled}},
	{exitUsage, []error{errUsage}},
	{exitHalted, []error{upgrade.ErrHalted}},
	// Some inputs were refused; everything else was done. A refusal that
	// also names a bad name (an add of a package with a hostile name) is
	// still a refusal.
	{exitRejected, []error{
		repo.ErrRejected, repo.ErrDuplicateNEVRA, repo.ErrFsck, repo.ErrKeyInUse,
		metadata.ErrSomeSkipped, errSignRefused, errVerifyFailed,
	}},
	// Someone else holds what we need, and we did not wait; or this
	// daemon is the standby of an HA pair and the leader must be asked;
	// or rollouts left in a local rollouts.db still own their hosts.
	{exitBusy, []error{
		repo.ErrLocked, repo.ErrNotLeader, repo.ErrStoreChanged, repo.ErrRotationUnfinished, metadata.ErrLocked, upgrade.ErrLocked, upgrade.ErrBusy,
		repo.ErrLocalRollouts,
	}},
	// Input gone wrong: names, files and options the user gave. A config
	// file that cannot be used is refused by every command, like a bad flag.
	{exitUsage, []error{
		repo.ErrAmbiguous, repo.ErrInvalidName, repo.ErrBadOption, repo.ErrConfigFile,
		repo.ErrInvalidAdvisory, repo.ErrAdvisoryNotFound, repo.ErrNoComps, repo.ErrUnknownKey,
		metadata.ErrBadOption, metadata.ErrBadComps, sign.ErrBadUserID, upgrade.ErrUnsafeName,
	}},
}

func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	for _, row := range exitCodes {
		for _, e := range row.errs {
			if errors.Is(err, e) {
				return row.code
			}
		}
	}
	return exitError
}
