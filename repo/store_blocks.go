package repo

import (
	"context"
	"errors"
	"strings"

	kv "github.com/repoctl/repoctl/repo/store"
)

// bucketBlocks holds metadata's compressed repodata blocks (content-addressed
// by sha256 key), so a publish after one new package recompresses one block
// instead of the whole repository.
var bucketBlocks = []byte("blocks")

// bucketBlockRefs maps a repository dir to the block keys its current
// repodata uses, so that blocks no directory uses any more can be dropped.
var bucketBlockRefs = []byte("blockrefs")

// blockCache is the store as a metadata.BlockCache for one repository
// directory. Blocks are shared by content across directories; RetainBlocks
// records what dir uses and drops blocks that no directory uses.
type blockCache struct {
	st  *store
	dir string
}

func (c blockCache) RetainBlocks(ctx context.Context, keys []string) error {
	refs := []byte(strings.Join(keys, "\n"))
	err := c.st.db.Update(func(tx kv.Tx) error {
		if err := putRefs(tx, c.dir, refs); err != nil {
			return err
		}
		return dropDeadBlocks(tx, nil)
	})
	if !errors.Is(err, kv.ErrTxnTooLarge) {
		return err
	}
	// More dead blocks than an etcd transaction holds (a directory's
	// repodata rebuilt): the refs first, then the dead blocks in parts,
	// each checked again against every directory's refs.
	if err := c.st.db.Update(func(tx kv.Tx) error { return putRefs(tx, c.dir, refs) }); err != nil {
		return err
	}
	var dead []string
	if err := c.st.db.View(func(tx kv.Tx) error {
		return eachDeadBlock(tx, func(k []byte) { dead = append(dead, string(k)) })
	}); err != nil {
		return err
	}
	return kv.UpdateInParts(c.st.db, len(dead), func(tx kv.Tx, lo, hi int) error {
		only := map[string]bool{}
		for _, k := range dead[lo:hi] {
			only[k] = true
		}
		return dropDeadBlocks(tx, only)
	})
}

func putRefs(tx kv.Tx, dir string, refs []byte) error {
	b, err := tx.CreateBucketIfNotExists(bucketBlockRefs)
	if err != nil {
		return err
	}
	return b.Put([]byte(dir), refs)
}

// eachDeadBlock calls fn with the key of every block no directory's refs
// name.
func eachDeadBlock(tx kv.Tx, fn func(k []byte)) error {
	live := map[string]bool{}
	if refs := tx.Bucket(bucketBlockRefs); refs != nil {
		if err := refs.ForEach(func(_, v []byte) error {
			for _, k := range strings.Split(string(v), "\n") {
				live[k] = true
			}
			return nil
		}); err != nil {
			return err
		}
	}
	b := tx.Bucket(bucketBlocks)
	if b == nil {
		return nil
	}
	return b.ForEach(func(k, _ []byte) error {
		if !live[string(k)] {
			fn(k)
		}
		return nil
	})
}

// dropDeadBlocks deletes the blocks no directory uses (of only, if not
// nil).
func dropDeadBlocks(tx kv.Tx, only map[string]bool) error {
	var dead [][]byte
	if err := eachDeadBlock(tx, func(k []byte) {
		if only == nil || only[string(k)] {
			dead = append(dead, append([]byte(nil), k...))
		}
	}); err != nil {
		return err
	}
	for _, k := range dead {
		if err := tx.Bucket(bucketBlocks).Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func (c blockCache) GetBlocks(ctx context.Context, keys []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(keys))
	err := c.st.db.View(func(tx kv.Tx) error {
		b := tx.Bucket(bucketBlocks)
		if b == nil {
			return nil
		}
		for _, k := range keys {
			if v := b.Get([]byte(k)); v != nil {
				out[k] = append([]byte(nil), v...) // valid only inside the tx
			}
		}
		return nil
	})
	return out, err
}

func (c blockCache) PutBlocks(ctx context.Context, blocks map[string][]byte) error {
	if len(blocks) == 0 {
		return nil
	}
	keys := sortedKeys(dirSet(blocks))
	// Blocks are a cache addressed by content: any part of them may land
	// alone, so a big publish goes in parts when etcd's limits want it.
	return kv.UpdateInParts(c.st.db, len(keys), func(tx kv.Tx, lo, hi int) error {
		b, err := tx.CreateBucketIfNotExists(bucketBlocks)
		if err != nil {
			return err
		}
		for _, k := range keys[lo:hi] {
			if err := b.Put([]byte(k), blocks[k]); err != nil {
				return err
			}
		}
		return nil
	})
}
