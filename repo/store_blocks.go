package repo

import (
	"context"
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
	return c.st.db.Update(func(tx kv.Tx) error {
		refs, err := tx.CreateBucketIfNotExists(bucketBlockRefs)
		if err != nil {
			return err
		}
		if err := refs.Put([]byte(c.dir), []byte(strings.Join(keys, "\n"))); err != nil {
			return err
		}
		live := map[string]bool{}
		if err := refs.ForEach(func(_, v []byte) error {
			for _, k := range strings.Split(string(v), "\n") {
				live[k] = true
			}
			return nil
		}); err != nil {
			return err
		}
		b := tx.Bucket(bucketBlocks)
		if b == nil {
			return nil
		}
		var dead [][]byte
		if err := b.ForEach(func(k, _ []byte) error {
			if !live[string(k)] {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
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
	return c.st.db.Update(func(tx kv.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketBlocks)
		if err != nil {
			return err
		}
		for k, v := range blocks {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
}
