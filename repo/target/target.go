// Package target is where repoctl's served tree lives: a publish target
// holds objects named by slash-separated keys (main/prod/el/9/x86_64/
// repodata/repomd.xml), and a Mirror copies each repository directory of
// the local tree into one, in an order that never lets a reader see a
// repomd.xml naming an object that is not there yet.
//
// Two targets exist: Dir, a local directory (the default, ROOT/repo
// itself, which publishing writes directly), and S3, a bucket and key
// prefix on any S3-compatible store. Every Target passes one conformance
// suite (target_test.go).
//
// It is not the repodata writer (package metadata builds and publishes
// ROOT/repo), holds no package store and knows nothing of channels or
// signing: it is told which objects make up a directory and their sizes
// and sha256 checksums, and copies what changed.
package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Sentinel errors of the targets.
var (
	// ErrNotExist: the target holds no object of that key.
	ErrNotExist = errors.New("target: no such object")
	// ErrBadKey: an object key is empty, absolute, too long, or has an
	// empty, ".", ".." or hidden element or a control character.
	ErrBadKey = errors.New("target: invalid object key")
	// ErrBadConfig: a target's configuration is unusable (bucket name,
	// prefix, endpoint).
	ErrBadConfig = errors.New("target: invalid configuration")
	// ErrMismatch: what was read for an upload is not the size or sha256
	// it was announced with (the local file changed underneath).
	ErrMismatch = errors.New("target: content does not match its checksum")
)

// MaxKeyLen caps an object key (S3's own limit is 1024 bytes, prefix
// included).
const MaxKeyLen = 900

// Info is what a target says about one object.
type Info struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
	// SHA256 is the hex sha256 of the content as the target knows it: S3
	// returns what the upload recorded in the object's metadata, Dir
	// hashes the file. "" when the target cannot say.
	SHA256 string `json:"sha256,omitempty"`
}

// Target is a place objects are stored under keys. Implementations are
// safe for concurrent use.
type Target interface {
	// Put stores size bytes of body under key, replacing any object of
	// that key. sum is the content's hex sha256, recorded with the object
	// where the target can. A reader of key sees the old object or the
	// new one, never a part.
	Put(ctx context.Context, key string, body io.Reader, size int64, sum string, o PutOptions) error
	// Get opens the object; ErrNotExist when there is none.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes the object; ErrNotExist when there is none.
	Stat(ctx context.Context, key string) (Info, error)
	// Delete removes the object; a missing one is not an error.
	Delete(ctx context.Context, key string) error
	// String names the target for messages: a directory or s3://bucket/prefix.
	String() string
}

// Copier is a Target that can copy one of its objects to another key
// without the bytes passing through repoctl (S3 server-side copy, a hard
// link): promotion places the same package in another directory.
type Copier interface {
	Copy(ctx context.Context, src, dst string, o PutOptions) error
}

// PutOptions are hints for how an object is served.
type PutOptions struct {
	// ContentType, e.g. "application/x-rpm"; "" lets the target choose.
	ContentType string
	// CacheControl, e.g. "no-cache" for repomd.xml, which changes in
	// place; "" sets none.
	CacheControl string
}

// CheckKey validates an object key: slash-separated plain names, each
// non-empty, not "." or "..", not hidden (a leading "."), without
// backslashes or control characters, at most MaxKeyLen bytes.
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %q: empty or longer than %d bytes", ErrBadKey, key, MaxKeyLen)
	}
	for _, el := range strings.Split(key, "/") {
		if el == "" || el[0] == '.' {
			return fmt.Errorf("%w: %q: empty, dot or hidden element", ErrBadKey, key)
		}
		for i := 0; i < len(el); i++ {
			if c := el[i]; c < 0x20 || c == 0x7f || c == '\\' {
				return fmt.Errorf("%w: %q: control character or backslash", ErrBadKey, key)
			}
		}
	}
	return nil
}

// contentType is what an object of key is served as.
func contentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".rpm"):
		return "application/x-rpm"
	case strings.HasSuffix(key, ".xml"):
		return "application/xml"
	case strings.HasSuffix(key, ".asc"), strings.HasSuffix(key, "RPM-GPG-KEY-repoctl"):
		return "application/pgp-signature"
	case strings.HasSuffix(key, ".gz"):
		return "application/gzip"
	case strings.HasSuffix(key, ".zst"):
		return "application/zstd"
	}
	return "application/octet-stream"
}

// retry runs f until it succeeds, ctx ends, or attempts are used up,
// sleeping between attempts with exponential back-off from lo to hi.
// An error for which permanent says so is returned at once.
func retry(ctx context.Context, attempts int, lo, hi time.Duration, f func() error) error {
	delay := lo
	var err error
	for i := 0; i < attempts; i++ {
		if err = f(); err == nil || permanent(err) || ctx.Err() != nil {
			return err
		}
		if i == attempts-1 {
			break
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, hi)
	}
	return err
}

// permanent says an error will not go away by retrying: a bad key, local
// content that changed, a cancelled context.
func permanent(err error) bool {
	return errors.Is(err, ErrBadKey) || errors.Is(err, ErrMismatch) || errors.Is(err, ErrBadConfig) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
