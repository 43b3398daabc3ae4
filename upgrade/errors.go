package upgrade

import "errors"

// Sentinel errors. Compare with errors.Is.
var (
	// ErrHalted: a step or health gate failed and the rollout stopped before
	// the next phase. The error is a *HaltError with per-host details.
	ErrHalted = errors.New("upgrade: rollout halted")
	// ErrLocked: another unfinished rollout already owns some of the hosts.
	ErrLocked = errors.New("upgrade: hosts are locked by another rollout")
	// ErrBusy: another live process is running this rollout right now.
	ErrBusy = errors.New("upgrade: rollout is being run by another process")
	// ErrLockLost: the run lock was taken from this process while it ran
	// the rollout (its etcd lease lapsed): it stopped, since another node
	// may resume the rollout now.
	ErrLockLost = errors.New("upgrade: lost the rollout's run lock")
	// ErrNotFound: no rollout with that ID (or no rollout at all).
	ErrNotFound = errors.New("upgrade: no such rollout")
	// ErrFinished: the rollout is done, aborted or rolled back; nothing to resume.
	ErrFinished = errors.New("upgrade: rollout already finished")
	// ErrUnsafeName: a package name or NEVRA does not match the strict
	// pattern and must never reach a shell.
	ErrUnsafeName = errors.New("upgrade: unsafe package name")
	// ErrInventory: the inventory or its commands are invalid.
	ErrInventory = errors.New("upgrade: invalid inventory")
	// ErrUnknownHost: the host's key is not in known_hosts.
	ErrUnknownHost = errors.New("upgrade: host key not in known_hosts")
	// ErrHostKeyMismatch: known_hosts has a different key for the host.
	ErrHostKeyMismatch = errors.New("upgrade: host key mismatch")
	// ErrNoPrevious: rollback was asked for but no previous version is known.
	ErrNoPrevious = errors.New("upgrade: no previous version to roll back to")
	// ErrNotIdempotent: a non-idempotent step was in flight when the process
	// died; resume will not guess whether it ran.
	ErrNotIdempotent = errors.New("upgrade: interrupted step is not idempotent")
)
