package metadata

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression names accepted by WithCompression.
const (
	CompressZstd = "zstd"
	CompressGzip = "gz"
)

// maxOpenSize caps how much uncompressed XML is read back from existing
// repodata: a hostile or broken file must not make us allocate without
// bound. 2 GiB is far above the largest public repositories' primary.xml.
// A variable only so that tests can lower it.
var maxOpenSize int64 = 2 << 30

// codec compresses whole blocks into self-contained frames (zstd frames or
// gzip members). Concatenated frames are a valid compressed file, which is
// what lets Publish assemble files from cached blocks.
type codec interface {
	name() string
	ext() string
	// encode appends the compressed frame of src to dst. Safe for
	// concurrent use.
	encode(dst, src []byte) []byte
	// id goes into block cache keys, so that a change of level or
	// library output never mixes frames from different settings.
	id() string
}

func newCodec(name string) (codec, error) {
	switch name {
	case CompressZstd, "zst", "":
		return zstdCodecInstance()
	case CompressGzip, "gzip":
		return gzipCodec{}, nil
	}
	return nil, fmt.Errorf("%w: compression %q (want zstd or gz)", ErrBadOption, name)
}

type zstdCodec struct{ enc *zstd.Encoder }

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdErr  error
)

func zstdCodecInstance() (codec, error) {
	zstdOnce.Do(func() {
		// One encoder serves all goroutines through EncodeAll; its
		// concurrency bounds how many encode at once. Each frame is
		// produced by one goroutine, so output is deterministic.
		// SpeedFastest: on repodata XML it is both half the CPU of
		// SpeedDefault and slightly smaller (measured on 10,000 packages).
		// A 1 MiB window covers a block (about 64 packages) and keeps
		// each encoder's history, and clients' decoders, small.
		zstdEnc, zstdErr = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.NumCPU()),
			zstd.WithWindowSize(1<<20),
			zstd.WithEncoderCRC(true))
	})
	if zstdErr != nil {
		return nil, zstdErr
	}
	return zstdCodec{enc: zstdEnc}, nil
}

func (zstdCodec) name() string { return CompressZstd }
func (zstdCodec) ext() string  { return ".zst" }
func (zstdCodec) id() string   { return "zstd-fastest-w1m-crc" }
func (c zstdCodec) encode(dst, src []byte) []byte {
	return c.enc.EncodeAll(src, dst)
}

type gzipCodec struct{}

var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	return w
}}

func (gzipCodec) name() string { return CompressGzip }
func (gzipCodec) ext() string  { return ".gz" }
func (gzipCodec) id() string   { return "gzip-6" }
func (gzipCodec) encode(dst, src []byte) []byte {
	buf := bytes.NewBuffer(dst)
	w := gzipPool.Get().(*gzip.Writer)
	w.Reset(buf)
	// Writes into a bytes.Buffer cannot fail.
	_, _ = w.Write(src)
	_ = w.Close()
	gzipPool.Put(w)
	return buf.Bytes()
}

// errTooLarge is returned when existing metadata expands beyond maxOpenSize.
var errTooLarge = errors.New("uncompressed metadata exceeds the size cap")

// decompressedReader returns a reader of the uncompressed content of a
// metadata file, chosen by its name's extension as createrepo_c and dnf do.
func decompressedReader(name string, r io.Reader) (io.ReadCloser, error) {
	switch {
	case strings.HasSuffix(name, ".zst"), strings.HasSuffix(name, ".zstd"):
		d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderMaxMemory(uint64(maxOpenSize)))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case strings.HasSuffix(name, ".gz"):
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, err
		}
		return g, nil
	case strings.HasSuffix(name, ".xz"):
		x, err := xz.NewReader(r)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(x), nil
	case strings.HasSuffix(name, ".xml"):
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unsupported compression of %q", name)
}

// sumReader computes the sha256 of what is read through it.
type sumReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newSumReader(r io.Reader) *sumReader {
	return &sumReader{r: r, h: sha256.New()}
}

func (h *sumReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *sumReader) sum() string { return fmt.Sprintf("%x", h.h.Sum(nil)) }
