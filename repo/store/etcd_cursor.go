package store

import (
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// A cursor fetches up to cursorPage keys from the snapshot at once, fewer
// when their values are large, aiming at cursorPageBytes per request:
// a walk over repodata blocks must not pull hundreds of MiB in one answer.
const (
	cursorPage      = 512
	cursorPageBytes = 4 << 20
)

// etcdCursor merges the snapshot's keys under p with the transaction's
// buffered writes there. It holds one window of the snapshot, a range of
// keys fetched completely, so that a walk costs one request per page.
type etcdCursor struct {
	t     *etcdTx
	p     string // key prefix; keys are returned without it
	end   string // the first key after every key under p
	cur   string
	on    bool
	w     window
	limit int64 // keys per fetch, 0 until the first
}

// window: every snapshot key k (without p) with lo <= k < hi is in keys.
type window struct {
	valid        bool
	lo, hi       string
	loInf, hiInf bool // lo is -inf, hi is +inf
	keys         []string
	vals         [][]byte
}

func (t *etcdTx) newCursor(p string) *etcdCursor {
	return &etcdCursor{t: t, p: p, end: clientv3.GetPrefixRangeEnd(p)}
}

func (c *etcdCursor) pageLimit() int64 {
	if c.limit == 0 {
		c.limit = cursorPage
	}
	return c.limit
}

func (c *etcdCursor) fill(resp *clientv3.GetResponse, descending bool) {
	// New slices: a caller may still hold values of the last page.
	c.w.keys, c.w.vals = make([]string, 0, len(resp.Kvs)), make([][]byte, 0, len(resp.Kvs))
	size := 0
	for _, kv := range resp.Kvs {
		c.w.keys = append(c.w.keys, string(kv.Key[len(c.p):]))
		c.w.vals = append(c.w.vals, nonNil(kv.Value))
		size += len(kv.Key) + len(kv.Value)
	}
	if n := len(resp.Kvs); n > 0 {
		c.limit = max(1, min(cursorPage, int64(cursorPageBytes/max(1, size/n))))
	}
	if descending {
		slices.Reverse(c.w.keys)
		slices.Reverse(c.w.vals)
	}
	c.w.valid = true
}

func (c *etcdCursor) fetchFwd(x string) bool {
	resp := c.t.get(c.p+x, clientv3.WithRange(c.end), clientv3.WithLimit(c.pageLimit()))
	if resp == nil {
		return false
	}
	c.fill(resp, false)
	c.w.lo, c.w.loInf = x, false
	c.w.hiInf = !resp.More
	if resp.More {
		c.w.hi = c.w.keys[len(c.w.keys)-1] + "\x00"
	}
	return true
}

func (c *etcdCursor) fetchBwd(y string, yInf bool) bool {
	end := c.end
	if !yInf {
		end = c.p + y
	}
	resp := c.t.get(c.p, clientv3.WithRange(end), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend),
		clientv3.WithLimit(c.pageLimit()))
	if resp == nil {
		return false
	}
	c.fill(resp, true)
	c.w.hi, c.w.hiInf = y, yInf
	c.w.loInf = !resp.More
	if resp.More {
		c.w.lo = c.w.keys[0]
	}
	return true
}

// snapGE is the snapshot's first key >= x.
func (c *etcdCursor) snapGE(x string) (string, []byte, bool) {
	for {
		w := &c.w
		if w.valid && (w.loInf || w.lo <= x) && (w.hiInf || x < w.hi) {
			if i, _ := slices.BinarySearch(w.keys, x); i < len(w.keys) {
				return w.keys[i], w.vals[i], true
			}
			if w.hiInf {
				return "", nil, false
			}
			x = w.hi
		}
		if !c.fetchFwd(x) {
			return "", nil, false
		}
	}
}

// snapLT is the snapshot's last key < y (yInf: +inf).
func (c *etcdCursor) snapLT(y string, yInf bool) (string, []byte, bool) {
	for {
		w := &c.w
		if w.valid && (w.hiInf || (!yInf && y <= w.hi)) && (w.loInf || yInf || w.lo < y) {
			i := len(w.keys)
			if !yInf {
				i, _ = slices.BinarySearch(w.keys, y)
			}
			if i > 0 {
				return w.keys[i-1], w.vals[i-1], true
			}
			if w.loInf {
				return "", nil, false
			}
			y, yInf = w.lo, false
		}
		if !c.fetchBwd(y, yInf) {
			return "", nil, false
		}
	}
}

// hidden: the buffer decides about this key, or its bucket was deleted.
func (c *etcdCursor) hidden(k string) bool {
	_, own := c.t.writes[c.p+k]
	return own || c.t.deleted(c.p+k)
}

func (c *etcdCursor) nextGE(x string) ([]byte, []byte) {
	sk, sv, sok := "", []byte(nil), false
	if !c.t.deleted(c.p) { // else every snapshot key here is gone
		for y := x; ; {
			k, v, ok := c.snapGE(y)
			if !ok {
				break
			}
			if !c.hidden(k) {
				sk, sv, sok = k, v, true
				break
			}
			y = k + "\x00"
		}
	}
	bk, bv, bok := "", []byte(nil), false
	for i := searchStrings(c.t.wkeys, c.p+x); i < len(c.t.wkeys) && strings.HasPrefix(c.t.wkeys[i], c.p); i++ {
		if w := c.t.writes[c.t.wkeys[i]]; !w.del {
			bk, bv, bok = c.t.wkeys[i][len(c.p):], w.val, true
			break
		}
	}
	return c.land(sk, sv, sok, bk, bv, bok, func(a, b string) bool { return a < b })
}

func (c *etcdCursor) prevLT(y string, yInf bool) ([]byte, []byte) {
	sk, sv, sok := "", []byte(nil), false
	for z, zInf := y, yInf; !c.t.deleted(c.p); {
		k, v, ok := c.snapLT(z, zInf)
		if !ok {
			break
		}
		if !c.hidden(k) {
			sk, sv, sok = k, v, true
			break
		}
		z, zInf = k, false
	}
	bound := c.end
	if !yInf {
		bound = c.p + y
	}
	bk, bv, bok := "", []byte(nil), false
	for i := searchStrings(c.t.wkeys, bound) - 1; i >= 0 && strings.HasPrefix(c.t.wkeys[i], c.p); i-- {
		if w := c.t.writes[c.t.wkeys[i]]; !w.del {
			bk, bv, bok = c.t.wkeys[i][len(c.p):], w.val, true
			break
		}
	}
	return c.land(sk, sv, sok, bk, bv, bok, func(a, b string) bool { return a > b })
}

// land moves the cursor to the better of the snapshot's and the
// buffer's candidates (they never name the same key: hidden).
func (c *etcdCursor) land(sk string, sv []byte, sok bool, bk string, bv []byte, bok bool, better func(a, b string) bool) ([]byte, []byte) {
	switch {
	case c.t.err != nil || (!sok && !bok):
		c.on = false
		return nil, nil
	case sok && (!bok || better(sk, bk)):
		c.cur, c.on = sk, true
		return []byte(sk), sv
	default:
		c.cur, c.on = bk, true
		return []byte(bk), bv
	}
}

func (c *etcdCursor) First() ([]byte, []byte)          { return c.nextGE("") }
func (c *etcdCursor) Last() ([]byte, []byte)           { return c.prevLT("", true) }
func (c *etcdCursor) Seek(key []byte) ([]byte, []byte) { return c.nextGE(string(key)) }

func (c *etcdCursor) Next() ([]byte, []byte) {
	if !c.on {
		return nil, nil
	}
	return c.nextGE(c.cur + "\x00")
}

func (c *etcdCursor) Prev() ([]byte, []byte) {
	if !c.on {
		return nil, nil
	}
	return c.prevLT(c.cur, false)
}
