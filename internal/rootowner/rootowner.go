// Package rootowner keeps one user the owner of everything in a repoctl
// root. Work on ROOT without the daemon (the store, the ingest and signing
// journals, the rollout state) creates files with the rights of whoever
// runs it; a root CLI on a root made by the service user would leave
// root-owned journals behind that the service user can then neither
// resume nor remove, and every later start of the daemon fails. So such
// work refuses to run as anyone but ROOT's owner. Talking to a running
// daemon over its socket needs no check: the daemon does the work, as the
// owner.
package rootowner

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// ErrNotOwner matches every *Error.
var ErrNotOwner = errors.New("repo: ROOT belongs to another user")

// Error says who owns ROOT, who tried to work on it, and how to run as the
// owner instead.
type Error struct {
	Root     string
	OwnerUID int
	Owner    string // user name, "" if the uid has none
	UID      int    // the effective uid that was refused
	User     string
}

func (e *Error) Error() string {
	owner, sudo := name(e.Owner, e.OwnerUID), e.Owner
	if sudo == "" {
		sudo = "'#" + strconv.Itoa(e.OwnerUID) + "'"
	}
	return fmt.Sprintf("%s: %q belongs to %s, and working on it as %s would leave files %s cannot write; "+
		"run repoctl as its owner: sudo -u %s repoctl …", ErrNotOwner, e.Root, owner, name(e.User, e.UID), owner, sudo)
}

func (e *Error) Unwrap() error { return ErrNotOwner }

func name(n string, uid int) string {
	if n == "" {
		return "uid " + strconv.Itoa(uid)
	}
	return fmt.Sprintf("%s (uid %d)", n, uid)
}

// Check returns an *Error unless the effective uid owns root. A root that
// does not exist yet passes: whoever creates it owns it.
func Check(root string) error {
	fi, err := os.Stat(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking the owner of %q: %w", root, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	owner, me := int(st.Uid), os.Geteuid()
	if owner == me {
		return nil
	}
	return &Error{Root: root, OwnerUID: owner, Owner: lookup(owner), UID: me, User: lookup(me)}
}

func lookup(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return ""
}
