package sign

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"
)

// payloadAlgo maps rpm's PAYLOADDIGESTALGO (OpenPGP hash IDs) to a hash.
func payloadAlgo(id uint64) (func() hash.Hash, string, bool) {
	switch id {
	case 1:
		return md5.New, "MD5", true
	case 2:
		return sha1.New, "SHA1", true
	case 8:
		return sha256.New, "SHA256", true
	case 9:
		return sha512.New384, "SHA384", true
	case 10:
		return sha512.New, "SHA512", true
	case 11:
		return sha256.New224, "SHA224", true
	}
	return nil, "", false
}

// digestCheck is one digest rpm stores in a package.
type digestCheck struct {
	name string // as rpmkeys -Kv prints it, e.g. "Header SHA256 digest"
	err  error  // nil: OK
}

// checkDigests verifies the package's own digests. r must be positioned at
// the payload. extra receives the main header and payload bytes as they
// stream past (for header+payload signatures); it may be nil. full also
// checks MD5 when a payload digest exists (verify does, signing does not:
// see the package comment).
func checkDigests(ctx context.Context, p *pkg, r io.Reader, extra io.Writer, full bool) ([]digestCheck, error) {
	var checks []digestCheck
	hdrDigest := func(name string, tag uint32, nh func() hash.Hash) {
		want, ok := p.sig.str(tag)
		if !ok {
			return
		}
		h := nh()
		h.Write(p.main.blob)
		got := hex.EncodeToString(h.Sum(nil))
		var err error
		if got != want {
			err = fmt.Errorf("%s mismatch: header says %s, computed %s", name, want, got)
		}
		checks = append(checks, digestCheck{name, err})
	}
	hdrDigest("Header SHA256 digest", tagSHA256Header, sha256.New)
	hdrDigest("Header SHA1 digest", tagSHA1Header, sha1.New)

	payloadLen := p.size - p.payloadOff
	hdrPayload := p.size - p.mainOff
	for _, t := range []uint32{tagSize, tagLongSize} {
		if v, ok := p.sig.uint(t); ok && int64(v) != hdrPayload {
			checks = append(checks, digestCheck{"Header+payload size", fmt.Errorf("size mismatch: signature header says %d bytes, file has %d (truncated?)", v, hdrPayload)})
			return checks, nil
		}
	}

	var writers []io.Writer
	type pending struct {
		name, want string
		h          hash.Hash
	}
	var pend []pending
	if want, ok := p.main.str(tagPayloadDigest); ok {
		id, _ := p.main.uint(tagPayloadDigestAlgo)
		nh, an, ok := payloadAlgo(id)
		if !ok {
			checks = append(checks, digestCheck{"Payload digest", fmt.Errorf("unsupported payload digest algorithm %d", id)})
		} else {
			h := nh()
			writers = append(writers, h)
			pend = append(pend, pending{"Payload " + an + " digest", want, h})
		}
	}
	var md5h hash.Hash
	var md5want []byte
	if e := p.sig.get(tagMD5); e != nil && e.typ == typeBin && len(e.data) == 16 && (full || len(pend) == 0) {
		md5h, md5want = md5.New(), e.data
		md5h.Write(p.main.blob)
		writers = append(writers, md5h)
	}
	if extra != nil {
		extra.Write(p.main.blob)
		writers = append(writers, extra)
	}
	if len(writers) > 0 {
		var w io.Writer
		if len(writers) == 1 {
			w = writers[0]
		} else {
			w = io.MultiWriter(writers...)
		}
		n, err := pipeCopy(ctx, w, r, payloadLen)
		if err != nil {
			return nil, err
		}
		if n != payloadLen {
			return nil, fmt.Errorf("%w: payload is %d bytes, expected %d", ErrCorrupt, n, payloadLen)
		}
	}
	for _, pd := range pend {
		got := hex.EncodeToString(pd.h.Sum(nil))
		var err error
		if got != pd.want {
			err = fmt.Errorf("%s mismatch: header says %s, computed %s", pd.name, pd.want, got)
		}
		checks = append(checks, digestCheck{pd.name, err})
	}
	if md5h != nil {
		var err error
		if got := md5h.Sum(nil); !bytes.Equal(got, md5want) {
			err = fmt.Errorf("MD5 digest mismatch: header says %x, computed %x", md5want, got)
		}
		checks = append(checks, digestCheck{"MD5 digest", err})
	}
	return checks, nil
}

// firstDigestError turns the first failed check into an ErrCorrupt error.
func firstDigestError(checks []digestCheck) error {
	for _, c := range checks {
		if c.err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, c.err)
		}
	}
	return nil
}

const (
	copyBuf       = 1 << 20
	pipelineAbove = 8 << 20
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

// pipeCopy copies n bytes from r to w. For large inputs it reads ahead in
// its own goroutine so that reading (page cache copy or disk) overlaps the
// hashing, which is what bounds signing a big package.
func pipeCopy(ctx context.Context, w io.Writer, r io.Reader, n int64) (int64, error) {
	if n < pipelineAbove {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		got, err := io.CopyBuffer(w, io.LimitReader(r, n), *bp)
		if err != nil {
			return got, fmt.Errorf("reading payload: %w", err)
		}
		return got, nil
	}
	type chunk struct {
		b   *[]byte
		n   int
		err error
	}
	full := make(chan chunk, 3)
	free := make(chan *[]byte, 4)
	for i := 0; i < 4; i++ {
		b := make([]byte, 4*copyBuf)
		free <- &b
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(full)
		var left = n
		for left > 0 {
			var b *[]byte
			select {
			case b = <-free:
			case <-done:
				return
			}
			want := len(*b)
			if int64(want) > left {
				want = int(left)
			}
			k, err := io.ReadFull(r, (*b)[:want])
			left -= int64(k)
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				select {
				case full <- chunk{b, k, nil}:
				case <-done:
				}
				return
			}
			select {
			case full <- chunk{b, k, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var total int64
	for c := range full {
		if c.n > 0 {
			w.Write((*c.b)[:c.n])
			total += int64(c.n)
		}
		if c.err != nil {
			return total, fmt.Errorf("reading payload: %w", c.err)
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
		free <- c.b
	}
	return total, nil
}
