package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config names a bucket and key prefix on an S3-compatible store
// ([publish.s3]). Credentials are never part of it: S3 takes them from
// the environment (see OpenS3).
type S3Config struct {
	// Endpoint is the store's URL, http:// or https://, host and optional
	// port only, e.g. "https://s3.eu-west-1.amazonaws.com" or
	// "http://127.0.0.1:8333".
	Endpoint string `toml:"endpoint" json:"endpoint"`
	// Bucket must exist; S3's naming rules apply (3–63 characters of
	// lower-case letters, digits, "." and "-").
	Bucket string `toml:"bucket" json:"bucket"`
	// Prefix is put before every key ("" or e.g. "yum/", a "/" is added
	// when missing): slash-separated names, no "..", no leading "/".
	Prefix string `toml:"prefix" json:"prefix"`
	// Region is the bucket's region; default "us-east-1".
	Region string `toml:"region" json:"region"`
}

var (
	bucketRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`) })
	ipv4RE   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`) })
	regionRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`) })
)

// CheckS3Config validates c and returns it normalized: the default
// region, a prefix ending in "/", the endpoint without a trailing "/".
// Every problem names the key and quotes the value.
func CheckS3Config(c S3Config) (S3Config, error) {
	bad := func(format string, a ...any) (S3Config, error) {
		return c, fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	u, err := url.Parse(c.Endpoint)
	switch {
	case c.Endpoint == "":
		return bad("publish.s3.endpoint is required, e.g. \"https://s3.eu-west-1.amazonaws.com\"")
	case err != nil:
		return bad("publish.s3.endpoint %q: %v", c.Endpoint, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return bad("publish.s3.endpoint %q: the scheme must be http or https", c.Endpoint)
	case u.User != nil:
		return bad("publish.s3.endpoint %q: credentials do not belong in the config (use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)", redact(u))
	case u.Host == "" || u.Hostname() == "":
		return bad("publish.s3.endpoint %q: no host", c.Endpoint)
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.Fragment != "", u.Opaque != "":
		return bad("publish.s3.endpoint %q: only scheme, host and port (the bucket is publish.s3.bucket)", c.Endpoint)
	}
	if p := u.Port(); p != "" {
		if _, err := net.LookupPort("tcp", p); err != nil {
			return bad("publish.s3.endpoint %q: port %q", c.Endpoint, p)
		}
	}
	c.Endpoint = u.Scheme + "://" + u.Host
	switch {
	case !bucketRE().MatchString(c.Bucket), strings.Contains(c.Bucket, ".."),
		strings.Contains(c.Bucket, ".-"), strings.Contains(c.Bucket, "-."):
		return bad("publish.s3.bucket %q: 3 to 63 lower-case letters, digits, \".\" and \"-\", starting and ending with a letter or digit", c.Bucket)
	case ipv4RE().MatchString(c.Bucket):
		return bad("publish.s3.bucket %q: must not look like an IP address", c.Bucket)
	case strings.HasPrefix(c.Bucket, "xn--"), strings.HasPrefix(c.Bucket, "sthree-"),
		strings.HasSuffix(c.Bucket, "-s3alias"), strings.HasSuffix(c.Bucket, "--ol-s3"):
		return bad("publish.s3.bucket %q: a prefix or suffix S3 reserves", c.Bucket)
	}
	if c.Prefix != "" {
		p := strings.TrimSuffix(c.Prefix, "/")
		if strings.HasPrefix(c.Prefix, "/") || CheckKey(p) != nil || len(p) > 256 {
			return bad("publish.s3.prefix %q: slash-separated plain names (no leading \"/\", no \"..\" or hidden names), at most 256 bytes", c.Prefix)
		}
		c.Prefix = p + "/"
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if !regionRE().MatchString(c.Region) {
		return bad("publish.s3.region %q: lower-case letters, digits and \"-\", e.g. \"us-east-1\"", c.Region)
	}
	return c, nil
}

func redact(u *url.URL) string {
	v := *u
	v.User = url.User("REDACTED")
	return v.String()
}

// S3 is a Target in a bucket under a key prefix. The object of key is
// Prefix+key; its sha256 is recorded as the object's x-amz-meta-sha256,
// which Stat returns.
type S3 struct {
	cfg    S3Config
	client *minio.Client
}

var (
	_ Target = (*S3)(nil)
	_ Copier = (*S3)(nil)
)

// OpenS3 makes a client for c (validated with CheckS3Config). Credentials
// come from the standard chain: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN), then the shared
// credentials file (AWS_SHARED_CREDENTIALS_FILE, default
// ~/.aws/credentials, profile AWS_PROFILE), then an EC2/ECS/EKS role
// unless AWS_EC2_METADATA_DISABLED=true. When none yields a key, requests
// are anonymous. Nothing is sent until the first request.
func OpenS3(ctx context.Context, c S3Config) (*S3, error) {
	c, err := CheckS3Config(c)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(c.Endpoint)
	tr, err := minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, fmt.Errorf("opening s3://%s: %w", c.Bucket, err)
	}
	// A stuck store must fail an upload (which is retried), not hang a
	// publish.
	tr.ResponseHeaderTimeout = 2 * time.Minute
	client, err := minio.New(u.Host, &minio.Options{
		Creds:     s3Credentials(),
		Secure:    u.Scheme == "https",
		Region:    c.Region,
		Transport: tr,
		// Mirror retries itself, with its own back-off and bound.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("opening s3://%s: %w", c.Bucket, err)
	}
	return &S3{cfg: c, client: client}, nil
}

// s3Credentials is the chain OpenS3 documents. The role provider is
// asked only once here: when it has nothing, an anonymous client does
// not ask the metadata service again before every request.
func s3Credentials() *credentials.Credentials {
	providers := []credentials.Provider{&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}}
	for _, p := range providers {
		if v, err := p.Retrieve(); err == nil && v.AccessKeyID != "" {
			return credentials.NewChainCredentials(providers)
		}
	}
	if !strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") {
		iam := &credentials.IAM{}
		if v, err := iam.Retrieve(); err == nil && v.AccessKeyID != "" {
			return credentials.NewChainCredentials(append(providers, iam))
		}
	}
	return credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
}

// Config is the normalized configuration.
func (s *S3) Config() S3Config { return s.cfg }

func (s *S3) String() string { return "s3://" + s.cfg.Bucket + "/" + s.cfg.Prefix }

// URL is where the objects are read over HTTP, path-style
// (ENDPOINT/BUCKET/PREFIX): what [http] public_url names when hosts
// read the bucket directly.
func (s *S3) URL() string { return s.cfg.Endpoint + "/" + s.cfg.Bucket + "/" + s.cfg.Prefix }

func (s *S3) object(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return s.cfg.Prefix + key, nil
}

// Put uploads body in one request (or parts of 16 MiB for a larger
// object, which S3 makes visible only when complete), recording sum as
// x-amz-meta-sha256. The body is checked as it is read: content that is
// not the announced size and sum fails the request before it completes.
func (s *S3) Put(ctx context.Context, key string, body io.Reader, size int64, sum string, o PutOptions) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	ct := o.ContentType
	if ct == "" {
		ct = contentType(key)
	}
	vr := newVerifier(body, size, sum)
	_, err = s.client.PutObject(ctx, s.cfg.Bucket, obj, vr, size, minio.PutObjectOptions{
		UserMetadata: map[string]string{"sha256": sum},
		ContentType:  ct, CacheControl: o.CacheControl,
		PartSize: 16 << 20, NumThreads: 1,
	})
	if err == nil {
		err = vr.check()
	}
	if err != nil {
		return fmt.Errorf("putting %q into %s: %w", key, s, s.mapErr(err))
	}
	return nil
}

// Get opens the object. Its absence shows at once, not at the first read.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	obj, err := s.object(key)
	if err != nil {
		return nil, err
	}
	o, err := s.client.GetObject(ctx, s.cfg.Bucket, obj, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("getting %q from %s: %w", key, s, s.mapErr(err))
	}
	if _, err := o.Stat(); err != nil {
		o.Close()
		return nil, fmt.Errorf("getting %q from %s: %w", key, s, s.mapErr(err))
	}
	return o, nil
}

// Stat is a HEAD request: size, and the sha256 the upload recorded.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	obj, err := s.object(key)
	if err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.cfg.Bucket, obj, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, fmt.Errorf("stat %q in %s: %w", key, s, s.mapErr(err))
	}
	info := Info{Key: key, Size: oi.Size}
	for k, v := range oi.UserMetadata {
		if strings.EqualFold(k, "sha256") {
			info.SHA256 = v
		}
	}
	return info, nil
}

// Delete removes the object; S3 answers a missing one with success too.
func (s *S3) Delete(ctx context.Context, key string) error {
	obj, err := s.object(key)
	if err != nil {
		return err
	}
	if err := s.client.RemoveObject(ctx, s.cfg.Bucket, obj, minio.RemoveObjectOptions{}); err != nil {
		if errors.Is(s.mapErr(err), ErrNotExist) {
			return nil
		}
		return fmt.Errorf("deleting %q from %s: %w", key, s, s.mapErr(err))
	}
	return nil
}

// Copy is a server-side copy, metadata (the sha256) included.
func (s *S3) Copy(ctx context.Context, src, dst string, o PutOptions) error {
	so, err := s.object(src)
	if err != nil {
		return err
	}
	do, err := s.object(dst)
	if err != nil {
		return err
	}
	_, err = s.client.CopyObject(ctx, minio.CopyDestOptions{Bucket: s.cfg.Bucket, Object: do},
		minio.CopySrcOptions{Bucket: s.cfg.Bucket, Object: so})
	if err != nil {
		return fmt.Errorf("copying %q to %q in %s: %w", src, dst, s, s.mapErr(err))
	}
	return nil
}

// mapErr turns S3's "no such key" into ErrNotExist and a missing bucket
// into a configuration error (retrying cannot help either).
func (s *S3) mapErr(err error) error {
	er := minio.ToErrorResponse(err)
	switch {
	case er.Code == minio.NoSuchKey || (er.StatusCode == http.StatusNotFound && er.Code != minio.NoSuchBucket):
		return fmt.Errorf("%w (%v)", ErrNotExist, err)
	case er.Code == minio.NoSuchBucket:
		return fmt.Errorf("%w: bucket %q does not exist (%v)", ErrBadConfig, s.cfg.Bucket, err)
	}
	return err
}
