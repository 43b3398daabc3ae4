package metadata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// BlockCache keeps compressed blocks between publishes so that a publish
// after a small change recompresses only the blocks that changed.
//
// A key is a lowercase sha256 hex string naming a block's uncompressed
// content together with the compression settings; the value stored under
// a key never changes. GetBlocks must return exactly the bytes given to
// PutBlocks (Publish trusts them: they go verbatim into repodata), or
// leave the key out. repo's bbolt store implements this; standalone
// createrepo uses DirCache.
type BlockCache interface {
	// GetBlocks returns the blocks it holds among keys. Absent keys are
	// misses, not errors. The returned slices must not be modified later
	// by the cache.
	GetBlocks(ctx context.Context, keys []string) (map[string][]byte, error)
	// PutBlocks stores new blocks.
	PutBlocks(ctx context.Context, blocks map[string][]byte) error
}

// BlockCacheRetainer is optionally implemented by a BlockCache that wants
// to forget blocks: after a successful publish, RetainBlocks receives
// every key the published generation uses. A cache shared by several
// repositories should not implement it (or should merge the sets).
type BlockCacheRetainer interface {
	RetainBlocks(ctx context.Context, keys []string) error
}

// CacheDirName is where standalone createrepo keeps its block cache,
// inside the repository directory but outside repodata/, which is what
// clients fetch.
const CacheDirName = ".repoctl-cache"

// DirCache is a BlockCache of one file per block in a directory. Each
// file ends with the sha256 of its content so that a torn or damaged file
// (the cache is not fsynced: it is a cache) reads as a miss, never as
// wrong metadata.
type DirCache struct {
	dir string
}

// NewDirCache returns a DirCache in dir, creating it.
func NewDirCache(dir string) (*DirCache, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating block cache %q: %w", dir, err)
	}
	return &DirCache{dir: dir}, nil
}

func validKey(k string) bool {
	if len(k) != 64 {
		return false
	}
	for _, c := range k {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// GetBlocks implements BlockCache.
func (c *DirCache) GetBlocks(ctx context.Context, keys []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(keys))
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if !validKey(k) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.dir, k))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reading block cache: %w", err)
		}
		if len(b) < sha256.Size {
			continue
		}
		data, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
		if s := sha256.Sum256(data); !bytes.Equal(s[:], sum) {
			continue
		}
		out[k] = data
	}
	return out, nil
}

// PutBlocks implements BlockCache.
func (c *DirCache) PutBlocks(ctx context.Context, blocks map[string][]byte) error {
	for k, data := range blocks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !validKey(k) {
			return fmt.Errorf("block cache: invalid key %q", k)
		}
		f, err := os.CreateTemp(c.dir, ".tmp-")
		if err != nil {
			return fmt.Errorf("writing block cache: %w", err)
		}
		sum := sha256.Sum256(data)
		_, err = f.Write(data)
		if err == nil {
			_, err = f.Write(sum[:])
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(f.Name(), filepath.Join(c.dir, k))
		}
		if err != nil {
			os.Remove(f.Name())
			return fmt.Errorf("writing block cache: %w", err)
		}
	}
	return nil
}

// RetainBlocks implements BlockCacheRetainer: it removes every block not
// in keys, and leftovers of interrupted writes.
func (c *DirCache) RetainBlocks(ctx context.Context, keys []string) error {
	keep := make(map[string]bool, len(keys))
	for _, k := range keys {
		keep[k] = true
	}
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return fmt.Errorf("pruning block cache: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if keep[n] || !(validKey(n) || strings.HasPrefix(n, ".tmp-")) {
			continue
		}
		if err := os.Remove(filepath.Join(c.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("pruning block cache: %w", err)
		}
	}
	return nil
}
