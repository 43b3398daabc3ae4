package repo

import (
	"fmt"
	"strings"

	"github.com/repoctl/repoctl/repo/target"
)

// Publish targets ([publish] target).
const (
	// TargetLocal serves ROOT/repo as it is (the default).
	TargetLocal = "local"
	// TargetS3 also mirrors ROOT/repo into [publish.s3]'s bucket after
	// every publish (publish_target.go).
	TargetS3 = "s3"
)

// targetDefaults fills and checks [publish] target and [publish.s3].
// Credentials are not config: the S3 client reads them from the
// environment (target.OpenS3).
func (c *Config) targetDefaults() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrBadConfig, fmt.Sprintf(format, a...))
	}
	if c.Publish.Target == "" {
		c.Publish.Target = TargetLocal
	}
	s3 := &c.Publish.S3
	switch c.Publish.Target {
	case TargetLocal:
		if s3.Endpoint != "" || s3.Bucket != "" || s3.Prefix != "" {
			return bad("publish.target %q: [publish.s3] is set, but only used with target = %q", c.Publish.Target, TargetS3)
		}
		if s3.Region == "" {
			s3.Region = "us-east-1"
		}
	case TargetS3:
		n, err := target.CheckS3Config(*s3)
		if err != nil {
			return bad("%s", strings.TrimPrefix(err.Error(), target.ErrBadConfig.Error()+": "))
		}
		*s3 = n
	default:
		return bad("publish.target %q: %q (default) or %q", c.Publish.Target, TargetLocal, TargetS3)
	}
	return nil
}
