package sign

import (
	"context"
	"fmt"
)

// SignFilesWithKey loads the private key at keyFile and signs paths: the
// one call `repoctl sign` makes.
func SignFilesWithKey(ctx context.Context, keyFile string, passphrase []byte, paths []string, opts ...SignerOption) ([]Result, error) {
	k, err := LoadKeyFile(keyFile, passphrase)
	if err != nil {
		return nil, err
	}
	s, err := NewSigner(k, opts...)
	if err != nil {
		return nil, fmt.Errorf("signing with %q: %w", keyFile, err)
	}
	return s.SignFiles(ctx, paths)
}

// FileReport is a Report, or the error that kept a file from being
// verified at all.
type FileReport struct {
	Report
	Error string `json:"error,omitempty"`
}

// VerifyFilesWithKeys loads the key files (public or private; protected
// private keys are read without their passphrase) and verifies paths: the
// one call `repoctl verify` makes. A file that cannot be parsed gets a
// report with Error set and OK false.
func VerifyFilesWithKeys(ctx context.Context, keyFiles []string, paths []string) ([]FileReport, error) {
	var keys []*Key
	for _, kf := range keyFiles {
		b, err := ExportPublic(kf)
		if err != nil {
			return nil, err
		}
		k, err := readKeyBytes(b)
		if err != nil {
			return nil, fmt.Errorf("loading key %q: %w", kf, err)
		}
		keys = append(keys, k)
	}
	out := make([]FileReport, len(paths))
	for i, p := range paths {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rep, err := VerifyFile(ctx, p, keys)
		if err != nil {
			out[i] = FileReport{Report: Report{Path: p}, Error: err.Error()}
			continue
		}
		out[i] = FileReport{Report: *rep}
	}
	return out, nil
}
