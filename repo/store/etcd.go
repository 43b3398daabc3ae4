package store

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits of a stock etcd server; EtcdOptions defaults to them.
const (
	// EtcdDefaultMaxTxnOps is etcd's --max-txn-ops default: at most this
	// many compares, and this many writes, in one transaction.
	EtcdDefaultMaxTxnOps = 128
	// EtcdDefaultMaxRequestBytes is etcd's --max-request-bytes default.
	EtcdDefaultMaxRequestBytes = 1536 * 1024
)

// EtcdOptions says where the etcd store lives and what its server allows.
type EtcdOptions struct {
	Endpoints []string // required, e.g. http://127.0.0.1:2379
	// Prefix is prepended to every key, so that several installations
	// share one etcd. Default "/repoctl/". Two prefixes must not be
	// prefixes of one another.
	Prefix      string
	DialTimeout time.Duration // default 5s: also bounds the first contact
	// RequestTimeout bounds each read and each commit. Default 30s.
	RequestTimeout time.Duration
	TLS            *tls.Config // nil: plain; see EtcdTLS
	// MaxTxnOps and MaxRequestBytes must match the server's --max-txn-ops
	// and --max-request-bytes (defaults: etcd's own defaults). A
	// transaction beyond them fails with ErrTxnTooLarge before it is sent;
	// the store never splits one, which would break its atomicity (a
	// caller whose writes are safe in parts uses UpdateInParts).
	MaxTxnOps       int
	MaxRequestBytes int
	// Retries is how often an Update conflicting with another writer is
	// run again before it fails with ErrConflict. Default 50.
	Retries int
}

// EtcdTLS is the client TLS configuration from PEM files: caFile
// verifies the server, certFile and keyFile (both or neither) are the
// client's certificate.
func EtcdTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("etcd TLS: cert_file %q and key_file %q go together", certFile, keyFile)
	}
	info := transport.TLSInfo{TrustedCAFile: caFile, CertFile: certFile, KeyFile: keyFile}
	c, err := info.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("etcd TLS (ca %q, cert %q, key %q): %w", caFile, certFile, keyFile, err)
	}
	return c, nil
}

// OpenEtcd connects to etcd and checks that it answers.
func OpenEtcd(ctx context.Context, o EtcdOptions) (DB, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints")
	}
	if o.Prefix == "" {
		o.Prefix = "/repoctl/"
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 30 * time.Second
	}
	if o.MaxTxnOps <= 0 {
		o.MaxTxnOps = EtcdDefaultMaxTxnOps
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = EtcdDefaultMaxRequestBytes
	}
	if o.Retries <= 0 {
		o.Retries = 50
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		TLS:         o.TLS,
		// The server's limit is what counts; the client's must not be lower.
		MaxCallSendMsgSize: o.MaxRequestBytes + 64*1024,
		MaxCallRecvMsgSize: 1 << 30,
		Logger:             zap.NewNop(), // library code does not print; errors say it all
	})
	if err != nil {
		return nil, fmt.Errorf("etcd store %q: %w", o.Endpoints, err)
	}
	cctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	if _, err := cli.Get(cctx, o.Prefix, clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd store %q: no answer: %w", o.Endpoints, err)
	}
	return &etcdDB{core: &etcdCore{cli: cli, o: o}}, nil
}

// etcdCore is what the fenced and unfenced handles of one store share.
type etcdCore struct {
	cli    *clientv3.Client
	o      EtcdOptions
	mu     sync.Mutex // serializes this process's Updates, as bbolt does
	closed atomic.Bool
	// largest is the largest transaction committed so far (under mu).
	largest TxnSize
}

// TxnSize is the size of one etcd transaction, as the server's limits
// count it: compares and writes each against --max-txn-ops, Bytes
// (about) against --max-request-bytes.
type TxnSize struct {
	Compares, Writes, Bytes int
}

// EtcdLargestTxn is, for an etcd store, the most compares, writes and
// bytes any transaction committed through db had (each its own maximum);
// zero for another backend. For sizing etcd's limits, and their tests.
func EtcdLargestTxn(db DB) TxnSize {
	e, ok := db.(*etcdDB)
	if !ok {
		return TxnSize{}
	}
	e.core.mu.Lock()
	defer e.core.mu.Unlock()
	return e.core.largest
}

type etcdDB struct {
	core  *etcdCore
	fence *Fence
}

// Client is the etcd client under db (nil for another backend), for
// leader election on the same connection.
func Client(db DB) *clientv3.Client {
	if e, ok := db.(*etcdDB); ok {
		return e.core.cli
	}
	return nil
}

// LastChange is the etcd revision of the newest key under db's prefix (0
// when nothing is stored; always 0 for another backend). A reader that
// keeps what it read (an index in memory) compares it later to tell
// whether anyone wrote since.
func LastChange(ctx context.Context, db DB) (int64, error) {
	e, ok := db.(*etcdDB)
	if !ok {
		return 0, nil
	}
	resp, err := e.core.cli.Get(ctx, e.core.o.Prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil {
		return 0, fmt.Errorf("reading the last change under %q: %w", e.core.o.Prefix, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	return resp.Kvs[0].ModRevision, nil
}

func (d *etcdDB) Fenced(f Fence) DB { return &etcdDB{core: d.core, fence: &f} }

func (d *etcdDB) Close() error {
	d.core.mu.Lock()
	defer d.core.mu.Unlock()
	if d.core.closed.Swap(true) {
		return nil
	}
	return d.core.cli.Close()
}

func (d *etcdDB) View(fn func(Tx) error) error {
	if d.core.closed.Load() {
		return ErrClosed
	}
	t := newEtcdTx(d.core, false)
	err := fn(t)
	if t.err != nil { // what fn saw was incomplete
		return t.err
	}
	return err
}

func (d *etcdDB) Update(fn func(Tx) error) error {
	c := d.core
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return ErrClosed
	}
	for attempt := 0; ; attempt++ {
		t := newEtcdTx(c, true)
		err := fn(t)
		if t.err == nil && err != nil {
			return err
		}
		if t.err != nil {
			if errors.Is(t.err, errEtcdRetry) && attempt < c.o.Retries {
				backoff(attempt)
				continue
			}
			return t.err
		}
		ok, err := t.commit(d.fence)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if attempt >= c.o.Retries {
			return fmt.Errorf("%w (%d attempts)", ErrConflict, attempt+1)
		}
		backoff(attempt)
	}
}

func backoff(attempt int) {
	d := time.Millisecond << min(attempt, 7)
	time.Sleep(d/2 + rand.N(d))
}

// errEtcdRetry: a read hit a compacted revision; the Update starts over.
var errEtcdRetry = errors.New("store: snapshot revision compacted")

// Key layout under Prefix. A bucket at path p has a base string: the
// prefix for the root, base(parent)+"b"+esc(name)+"\x00\x01" for a nested
// one. Under a base:
//
//	base+"c"+esc(name)  marker of nested bucket name: 8-byte big-endian sequence
//	base+"m"            change key, rewritten by every commit that changes
//	                    the bucket's pairs or children: range reads compare it
//	base+"v"+key        the pair key (raw: it is last, so order is kept)
//	base+"b"+...        nested buckets' own keys
//
// esc doubles 0x00 as 0x00 0xff, and "\x00\x01" ends a name: escaped
// names are prefix-free and sort as the raw names do, so a bucket's keys
// form one contiguous, ordered range, disjoint from every other bucket's.
func esc(name []byte) string {
	var b strings.Builder
	b.Grow(len(name) + 2)
	for _, c := range name {
		b.WriteByte(c)
		if c == 0 {
			b.WriteByte(0xff)
		}
	}
	return b.String()
}

func unesc(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == 0 {
			i++ // the 0xff after it
		}
	}
	return out
}

func childBase(base string, name []byte) string { return base + "b" + esc(name) + "\x00\x01" }
func markerKey(base string, name []byte) string { return base + "c" + esc(name) }

// snapKV is one key as the snapshot has it.
type snapKV struct {
	val       []byte
	found     bool
	modRev    int64
	createRev int64
}

type wop struct {
	val []byte
	del bool
}

type etcdTx struct {
	c        *etcdCore
	writable bool
	rev      int64 // snapshot revision; 0 until the first read
	err      error // a read failure: fn's results are void

	snap    map[string]snapKV // point reads, cached
	modCmp  map[string]int64  // key → ModRevision it must still have
	crCmp   map[string]int64  // marker → CreateRevision it must still have
	writes  map[string]wop
	wkeys   []string // writes' keys, sorted, for cursors
	dels    []string // prefixes deleted (DeleteBucket); disjoint
	touched map[string]bool
}

func newEtcdTx(c *etcdCore, writable bool) *etcdTx {
	return &etcdTx{c: c, writable: writable, snap: map[string]snapKV{}, modCmp: map[string]int64{},
		crCmp: map[string]int64{}, writes: map[string]wop{}, touched: map[string]bool{}}
}

func (t *etcdTx) fail(err error) {
	if t.err == nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			err = fmt.Errorf("%w: %w", errEtcdRetry, err)
		}
		t.err = fmt.Errorf("etcd store read: %w", err)
	}
}

// get runs one read at the snapshot revision, fixing it on the first.
func (t *etcdTx) get(key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	if t.err != nil {
		return nil
	}
	// The first read is linearizable (etcd's default), so the snapshot is
	// never older than what this process committed; the others read at it.
	if t.rev != 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.c.o.RequestTimeout)
	defer cancel()
	resp, err := t.c.cli.Get(ctx, key, opts...)
	if err != nil {
		t.fail(err)
		return nil
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp
}

func (t *etcdTx) deleted(key string) bool {
	for _, p := range t.dels {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// read is key as this transaction sees it: its own write, else the
// snapshot (nothing under a bucket it deleted).
func (t *etcdTx) read(key string) snapKV {
	if w, ok := t.writes[key]; ok {
		if w.del {
			return snapKV{}
		}
		return snapKV{val: w.val, found: true}
	}
	if t.deleted(key) {
		return snapKV{}
	}
	if s, ok := t.snap[key]; ok {
		return s
	}
	var s snapKV
	if resp := t.get(key); resp != nil && len(resp.Kvs) > 0 {
		kv := resp.Kvs[0]
		s = snapKV{val: nonNil(kv.Value), found: true, modRev: kv.ModRevision, createRev: kv.CreateRevision}
	}
	t.snap[key] = s
	return s
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// readValue reads key and makes the commit depend on it being unchanged.
func (t *etcdTx) readValue(key string) snapKV {
	_, own := t.writes[key]
	s := t.read(key)
	if !own && !t.deleted(key) {
		if _, seen := t.modCmp[key]; !seen {
			t.modCmp[key] = s.modRev
		}
	}
	return s
}

// readMarker reads a bucket marker; the commit depends on the bucket
// being the same one (not deleted, not re-created), not on its sequence.
func (t *etcdTx) readMarker(key string) snapKV {
	_, own := t.writes[key]
	s := t.read(key)
	if !own && !t.deleted(key) {
		if _, seen := t.crCmp[key]; !seen {
			t.crCmp[key] = s.createRev
		}
	}
	return s
}

// rangeRead makes the commit depend on no other commit having changed
// the pairs or children of the bucket at base.
func (t *etcdTx) rangeRead(base string) { t.readValue(base + "m") }

func (t *etcdTx) write(key string, w wop) {
	if _, ok := t.writes[key]; !ok {
		i := searchStrings(t.wkeys, key)
		t.wkeys = append(t.wkeys, "")
		copy(t.wkeys[i+1:], t.wkeys[i:])
		t.wkeys[i] = key
	}
	t.writes[key] = w
}

// dropWrites forgets the buffered writes under prefix p.
func (t *etcdTx) dropWrites(p string) {
	i := searchStrings(t.wkeys, p)
	j := i
	for j < len(t.wkeys) && strings.HasPrefix(t.wkeys[j], p) {
		delete(t.writes, t.wkeys[j])
		j++
	}
	t.wkeys = append(t.wkeys[:i], t.wkeys[j:]...)
}

func searchStrings(a []string, x string) int {
	lo, hi := 0, len(a)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if a[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// commit sends the buffered writes as one etcd Txn guarded by every read.
// It reports false on a conflict, ErrFenced when the fence failed.
func (t *etcdTx) commit(fence *Fence) (bool, error) {
	if len(t.writes) == 0 && len(t.dels) == 0 {
		return true, nil // nothing to write: the reads were one snapshot
	}
	// A touched base under a deleted prefix was re-created after the
	// delete (DeleteBucket forgets what it touched before).
	for base := range t.touched {
		t.write(base+"m", wop{val: []byte{}})
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	size := 0
	for k, rev := range t.modCmp {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
		size += len(k) + 16
	}
	for k, rev := range t.crCmp {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", rev))
		size += len(k) + 16
	}
	if fence != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(fence.Key), "=", fence.Rev))
		size += len(fence.Key) + 16
	}
	for _, p := range t.dels {
		// etcd refuses a Txn that deletes a range and puts inside it: if
		// this one re-created something there, delete the old keys one by
		// one, and make sure no other commit added one meanwhile.
		if i := searchStrings(t.wkeys, p); i < len(t.wkeys) && strings.HasPrefix(t.wkeys[i], p) {
			resp := t.get(p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
			if resp == nil {
				return false, t.err
			}
			for _, kv := range resp.Kvs {
				if _, ok := t.writes[string(kv.Key)]; !ok {
					ops = append(ops, clientv3.OpDelete(string(kv.Key)))
					size += len(kv.Key) + 8
				}
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p), "<", t.rev+1).WithPrefix())
			size += 2*len(p) + 16
			continue
		}
		ops = append(ops, clientv3.OpDelete(p, clientv3.WithPrefix()))
		size += 2*len(p) + 8
	}
	for _, k := range t.wkeys {
		w := t.writes[k]
		if w.del {
			if t.deleted(k) {
				continue // in a range deleted already
			}
			ops = append(ops, clientv3.OpDelete(k))
			size += len(k) + 8
			continue
		}
		ops = append(ops, clientv3.OpPut(k, string(w.val)))
		size += len(k) + len(w.val) + 8
	}
	o := t.c.o
	if len(cmps) > o.MaxTxnOps || len(ops) > o.MaxTxnOps || size > o.MaxRequestBytes {
		return false, fmt.Errorf("%w: %d compares, %d writes, about %d bytes; the server allows %d operations and %d bytes (etcd --max-txn-ops, --max-request-bytes; repoctl [store] max_txn_ops, max_request_bytes)",
			ErrTxnTooLarge, len(cmps), len(ops), size, o.MaxTxnOps, o.MaxRequestBytes)
	}
	var els []clientv3.Op
	if fence != nil {
		els = append(els, clientv3.OpGet(fence.Key, clientv3.WithKeysOnly()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.RequestTimeout)
	defer cancel()
	resp, err := t.c.cli.Txn(ctx).If(cmps...).Then(ops...).Else(els...).Commit()
	if err != nil {
		if errors.Is(err, rpctypes.ErrTooManyOps) || errors.Is(err, rpctypes.ErrRequestTooLarge) ||
			status.Code(err) == codes.ResourceExhausted {
			return false, fmt.Errorf("%w: %d compares, %d writes, about %d bytes, refused by the server (raise etcd --max-txn-ops, --max-request-bytes): %w",
				ErrTxnTooLarge, len(cmps), len(ops), size, err)
		}
		// A commit whose answer was lost may or may not have landed: say
		// so rather than run fn again.
		return false, fmt.Errorf("etcd store commit: %w", err)
	}
	if resp.Succeeded {
		l := &t.c.largest
		l.Compares, l.Writes, l.Bytes = max(l.Compares, len(cmps)), max(l.Writes, len(ops)), max(l.Bytes, size)
		return true, nil
	}
	if fence != nil {
		r := resp.Responses[0].GetResponseRange()
		if r == nil || len(r.Kvs) == 0 || r.Kvs[0].CreateRevision != fence.Rev {
			return false, fmt.Errorf("%w (fence %q at revision %d)", ErrFenced, fence.Key, fence.Rev)
		}
	}
	return false, nil
}

func (t *etcdTx) Writable() bool { return t.writable }

func (t *etcdTx) pendingWrites() bool { return len(t.writes) > 0 || len(t.dels) > 0 }

func (t *etcdTx) root() *etcdBucket { return &etcdBucket{t: t, base: t.c.o.Prefix} }

func (t *etcdTx) Bucket(name []byte) Bucket { return t.root().Bucket(name) }

func (t *etcdTx) CreateBucketIfNotExists(name []byte) (Bucket, error) {
	return t.root().CreateBucketIfNotExists(name)
}

func (t *etcdTx) DeleteBucket(name []byte) error { return t.root().DeleteBucket(name) }

func (t *etcdTx) ForEachBucket(fn func(name []byte) error) error { return t.root().ForEachBucket(fn) }

func (t *etcdTx) Check() iter.Seq[error] {
	return func(yield func(error) bool) {}
}

type etcdBucket struct {
	t      *etcdTx
	base   string
	marker string // in the parent; "" for the root
}

func (b *etcdBucket) Get(key []byte) []byte {
	if len(key) == 0 {
		return nil
	}
	s := b.t.readValue(b.base + "v" + string(key))
	if !s.found {
		return nil
	}
	return s.val
}

func (b *etcdBucket) change(key string, w wop) error {
	if !b.t.writable {
		return ErrTxNotWritable
	}
	b.t.write(key, w)
	b.t.touched[b.base] = true
	return nil
}

func (b *etcdBucket) Put(key, value []byte) error {
	if len(key) == 0 {
		return ErrKeyRequired
	}
	return b.change(b.base+"v"+string(key), wop{val: append([]byte{}, value...)})
}

func (b *etcdBucket) Delete(key []byte) error {
	if len(key) == 0 {
		return ErrKeyRequired
	}
	return b.change(b.base+"v"+string(key), wop{del: true})
}

func (b *etcdBucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return b.t.err
}

func (b *etcdBucket) ForEachBucket(fn func(name []byte) error) error {
	c := b.cursor("c")
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if err := fn(unesc(string(k))); err != nil {
			return err
		}
	}
	return b.t.err
}

func (b *etcdBucket) Cursor() Cursor { return b.cursor("v") }

func (b *etcdBucket) cursor(tag string) *etcdCursor {
	b.t.rangeRead(b.base)
	return b.t.newCursor(b.base + tag)
}

func (b *etcdBucket) Bucket(name []byte) Bucket {
	if len(name) == 0 || !b.t.readMarker(markerKey(b.base, name)).found {
		return nil
	}
	return &etcdBucket{t: b.t, base: childBase(b.base, name), marker: markerKey(b.base, name)}
}

func (b *etcdBucket) CreateBucketIfNotExists(name []byte) (Bucket, error) {
	if len(name) == 0 {
		return nil, ErrKeyRequired
	}
	if !b.t.writable {
		return nil, ErrTxNotWritable
	}
	mk := markerKey(b.base, name)
	if !b.t.readMarker(mk).found {
		if b.t.err != nil {
			return nil, b.t.err
		}
		if err := b.change(mk, wop{val: make([]byte, 8)}); err != nil {
			return nil, err
		}
		b.t.touched[childBase(b.base, name)] = true
	}
	return &etcdBucket{t: b.t, base: childBase(b.base, name), marker: mk}, nil
}

func (b *etcdBucket) DeleteBucket(name []byte) error {
	if len(name) == 0 {
		return ErrKeyRequired
	}
	if !b.t.writable {
		return ErrTxNotWritable
	}
	mk := markerKey(b.base, name)
	if !b.t.readMarker(mk).found {
		if b.t.err != nil {
			return b.t.err
		}
		return ErrBucketNotFound
	}
	if err := b.change(mk, wop{del: true}); err != nil {
		return err
	}
	cb := childBase(b.base, name)
	b.t.dropWrites(cb)
	for k := range b.t.touched {
		if strings.HasPrefix(k, cb) {
			delete(b.t.touched, k)
		}
	}
	keep := b.t.dels[:0]
	for _, p := range b.t.dels {
		if !strings.HasPrefix(p, cb) {
			keep = append(keep, p)
		}
	}
	b.t.dels = append(keep, cb)
	return nil
}

// NextSequence reads and rewrites the marker in the parent, so two
// commits that both took a number conflict and one takes the next.
func (b *etcdBucket) NextSequence() (uint64, error) {
	if !b.t.writable {
		return 0, ErrTxNotWritable
	}
	mk := b.marker
	s := b.t.readValue(mk)
	if b.t.err != nil {
		return 0, b.t.err
	}
	if !s.found || len(s.val) != 8 {
		return 0, fmt.Errorf("%w: marker %q", ErrBucketNotFound, mk)
	}
	n := binary.BigEndian.Uint64(s.val) + 1
	b.t.write(mk, wop{val: binary.BigEndian.AppendUint64(nil, n)})
	return n, nil
}

func (b *etcdBucket) Stats() BucketStats {
	b.t.rangeRead(b.base)
	p := b.base + "v"
	if i := searchStrings(b.t.wkeys, p); (i < len(b.t.wkeys) && strings.HasPrefix(b.t.wkeys[i], p)) || b.t.deleted(p) {
		n := 0
		c := b.t.newCursor(p)
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return BucketStats{KeyN: n}
	}
	resp := b.t.get(p, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp == nil {
		return BucketStats{}
	}
	return BucketStats{KeyN: int(resp.Count)}
}
