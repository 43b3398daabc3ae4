package repo

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os/user"
	"sync"
	"time"

	kv "github.com/repoctl/repoctl/repo/store"
)

// Event actions written by this package. Upgrade steps use their own
// "upgrade.*" actions through RecordRollout.
const (
	EventAdd       = "add"
	EventSign      = "sign"
	EventPublish   = "publish"
	EventReject    = "reject"
	EventUnchanged = "unchanged"
	EventRemove    = "remove"
	EventPromote   = "promote"
	EventRestore   = "restore"
	EventResume    = "resume"
	EventKey       = "key"
)

func seqKey(n uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], n)
	return k[:]
}

// eventHash is sha256(prev || canonical JSON of e with Hash empty). The
// JSON of a struct has a fixed field order and sorted map keys, and Time
// is kept in UTC, so the encoding is canonical.
func eventHash(e Event) (string, error) {
	e.Hash = ""
	raw, err := json.Marshal(e)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	h.Write([]byte(e.Prev))
	h.Write(raw)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// appendEvent chains e onto the log inside tx, filling Seq, Time, Prev, Hash.
func appendEvent(tx kv.Tx, e *Event) error {
	b := tx.Bucket(bucketEvents)
	var prev Event
	if k, v := b.Cursor().Last(); k != nil {
		if err := json.Unmarshal(v, &prev); err != nil {
			return fmt.Errorf("decoding last event: %w", err)
		}
		e.Seq = prev.Seq + 1
		e.Prev = prev.Hash
	} else {
		e.Seq = 1
		e.Prev = ""
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC().Round(time.Microsecond)
	if e.Who == "" {
		e.Who = currentUser()
	}
	h, err := eventHash(*e)
	if err != nil {
		return err
	}
	e.Hash = h
	if err := putJSON(b, seqKey(e.Seq), e); err != nil {
		return err
	}
	// The head is kept apart from the log so that dropping the newest
	// events (which leaves a valid shorter chain) is noticed too. If the
	// head already disagrees with the log, it is left alone: later events
	// must not paper over the evidence.
	m := tx.Bucket(bucketMeta)
	if cur := m.Get(metaHead); cur != nil && (e.Seq == 1 || string(cur) != fmt.Sprintf("%d %s", prev.Seq, prev.Hash)) {
		return nil
	}
	return m.Put(metaHead, []byte(fmt.Sprintf("%d %s", e.Seq, e.Hash)))
}

var metaHead = []byte("events.head")

// verifyEvents walks the whole chain and reports the first broken link,
// then checks that the chain ends where the recorded head says.
func verifyEvents(tx kv.Tx) error {
	prev := ""
	var want uint64 = 1
	err := tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("%w: event key %x does not decode: %v", ErrTampered, k, err)
		}
		if len(k) != 8 || binary.BigEndian.Uint64(k) != e.Seq || e.Seq != want {
			return fmt.Errorf("%w: event %d is out of sequence (expected %d)", ErrTampered, e.Seq, want)
		}
		if e.Prev != prev {
			return fmt.Errorf("%w: event %d does not link to event %d", ErrTampered, e.Seq, e.Seq-1)
		}
		h, err := eventHash(e)
		if err != nil {
			return err
		}
		if h != e.Hash {
			return fmt.Errorf("%w: event %d (%s %s) was altered: hash %s, stored %s", ErrTampered, e.Seq, e.Action, e.NEVRA, h, e.Hash)
		}
		prev = e.Hash
		want++
		return nil
	})
	if err != nil {
		return err
	}
	head := tx.Bucket(bucketMeta).Get(metaHead)
	if head == nil && want == 1 {
		return nil
	}
	if got := fmt.Sprintf("%d %s", want-1, prev); string(head) != got {
		return fmt.Errorf("%w: the log ends at event %d but its recorded head is %q: events were removed", ErrTampered, want-1, head)
	}
	return nil
}

// whoami is looked up when first needed, not at start: user.Current
// reads the user database (through libc and NSS where cgo is in), which
// every command would otherwise pay for, createrepo --update among them.
var whoami = sync.OnceValue(func() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return fmt.Sprintf("uid %d", currentUID())
})

func currentUser() string { return whoami() }

// CurrentUser is the OS user name recorded as Who. The CLI sets it in
// requests so that events name the person even when the daemon does the
// work.
func CurrentUser() string { return whoami() }
