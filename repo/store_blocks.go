package repo

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// bucketBlocks holds metadata's compressed repodata blocks (content-addressed
// by sha256 key), so a publish after one new package recompresses one block
// instead of the whole repository.
var bucketBlocks = []byte("blocks")

// blockCache is the store as a metadata.BlockCache. It is shared by every
// repository directory, so it does not implement RetainBlocks; blocks are
// small and content-addressed, and a stale one is only wasted space.
type blockCache struct{ st *store }

func (c blockCache) GetBlocks(ctx context.Context, keys []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(keys))
	err := c.st.db.View(func(tx *bolt.Tx) error {
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
	return c.st.db.Update(func(tx *bolt.Tx) error {
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
