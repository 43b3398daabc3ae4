package repo

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"sync"
)

// Caller is who asked for a change, as the kernel says: the socket peer's
// SO_PEERCRED for requests to the daemon, the process itself in the CLI.
// It is recorded in every event made for the request. What a client says
// about itself (a "who" field) is kept at most as a note beside it.
type Caller struct {
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	PID  int32  `json:"pid"`
	User string `json:"user,omitempty"` // looked up from UID; "" if unknown
}

// Name is the user name, or "uid N" when the uid has no name.
func (c *Caller) Name() string {
	if c.User != "" {
		return c.User
	}
	return "uid " + strconv.FormatUint(uint64(c.UID), 10)
}

func (c *Caller) String() string {
	return fmt.Sprintf("%s (uid %d, gid %d, pid %d)", c.Name(), c.UID, c.GID, c.PID)
}

// newCaller fills in the user name for kernel-reported credentials.
func newCaller(uid, gid uint32, pid int32) *Caller {
	c := &Caller{UID: uid, GID: gid, PID: pid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		c.User = u.Username
	}
	return c
}

type callerKey struct{}

// withCaller is how the control socket hands the peer's credentials to
// the Repo methods serving the request.
func withCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}

// self is this process as a Caller, looked up when first needed (the
// user name lookup is not something every command should pay for at
// start).
var self = sync.OnceValue(func() *Caller {
	return newCaller(uint32(os.Getuid()), uint32(os.Getgid()), int32(os.Getpid()))
})

// actor is who the events of one call name.
type actor struct {
	who    string
	caller *Caller
	note   string // what the client claimed, where it differs from who
}

// actor is the socket peer when the daemon serves a request; otherwise the
// claimed name (the CLI's user name, or the Repo's default: "daemon" for
// drop-ins) with this process's credentials.
func (r *Repo) actor(ctx context.Context, claimed string) actor {
	if c := callerFrom(ctx); c != nil {
		a := actor{who: c.Name(), caller: c}
		if claimed != "" && claimed != c.Name() {
			a.note = claimed
		}
		return a
	}
	return actor{who: r.who(claimed), caller: self()}
}

// stamp puts the actor on an event.
func (a actor) stamp(e Event) Event {
	e.Who, e.Caller = a.who, a.caller
	if a.note != "" {
		d := make(map[string]string, len(e.Details)+1)
		for k, v := range e.Details {
			d[k] = v
		}
		d["claimed_who"] = a.note
		e.Details = d
	}
	return e
}
