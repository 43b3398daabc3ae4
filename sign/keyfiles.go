package sign

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeyInfo describes a key for listings.
type KeyInfo struct {
	File        string `json:"file"`
	Private     bool   `json:"private"`
	Protected   bool   `json:"protected"` // passphrase-protected private key
	KeyID       string `json:"key_id"`
	Fingerprint string `json:"fingerprint"`
	Algorithm   string `json:"algorithm"`
	Created     string `json:"created"`
	UserID      string `json:"user_id"`
}

// Info describes k as stored in file.
func (k *Key) Info(file string) KeyInfo {
	return KeyInfo{File: file, Private: k.CanSign() || k.protected, Protected: k.protected, KeyID: k.KeyID(), Fingerprint: k.Fingerprint(),
		Algorithm: k.Algorithm(), Created: k.Created().UTC().Format("2006-01-02T15:04:05Z"), UserID: k.UserID()}
}

// GenerateKeyFiles generates a key and writes dir/signing.asc (0600) and
// dir/signing.pub.asc, refusing to overwrite an existing private key.
func GenerateKeyFiles(algo, name, email, dir string) (*Key, error) {
	k, err := GenerateKey(algo, name, email)
	if err != nil {
		return nil, err
	}
	return k, k.installFiles(dir)
}

// ImportKeyFile reads a private key from src (armored or binary, possibly
// passphrase-protected, e.g. `gpg --export-secret-keys`) and installs it as
// dir/signing.asc and dir/signing.pub.asc. A protected key stays protected
// on disk. The source file's permissions are not checked: it is an import,
// often from a pipe or a fresh export.
func ImportKeyFile(src string, passphrase []byte, dir string) (*Key, error) {
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("importing key %q: %w", src, err)
	}
	defer f.Close()
	k, err := ReadKey(f, passphrase)
	if err != nil {
		return nil, fmt.Errorf("importing key %q: %w", src, err)
	}
	if !k.CanSign() {
		return nil, fmt.Errorf("importing key %q: %w", src, ErrNoPrivateKey)
	}
	return k, k.installFiles(dir)
}

func (k *Key) installFiles(dir string) error {
	priv, pub := DefaultKeyPaths(filepath.Dir(dir))
	priv = filepath.Join(dir, filepath.Base(priv))
	pub = filepath.Join(dir, filepath.Base(pub))
	if err := k.WritePrivateFile(priv); err != nil {
		return err
	}
	return k.WritePublicFile(pub)
}

// ListKeyFiles describes the key files in dir (signing.asc, signing.pub.asc
// and any other *.asc). Protected private keys are listed from their
// public part, so no passphrase is needed.
func ListKeyFiles(dir string) ([]KeyInfo, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "*.asc"))
	if err != nil {
		return nil, err
	}
	var out []KeyInfo
	for _, m := range matches {
		k, err := LoadKeyFile(m, nil)
		if errors.Is(err, ErrBadPassphrase) {
			k, err = loadPublicPart(m)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k.Info(m))
	}
	return out, nil
}

// loadPublicPart reads a protected private key file without decrypting it.
func loadPublicPart(path string) (*Key, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("loading key %q: %w", path, ErrKeyPermissions)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	k, err := readKey(f, nil, false)
	if err != nil {
		return nil, fmt.Errorf("loading key %q: %w", path, err)
	}
	return k, nil
}

// ExportPublic returns the armored public key of the key file at path
// (public or private; a protected private key needs no passphrase).
func ExportPublic(path string) ([]byte, error) {
	k, err := LoadKeyFile(path, nil)
	if errors.Is(err, ErrBadPassphrase) {
		k, err = loadPublicPart(path)
	}
	if err != nil {
		return nil, err
	}
	return k.PublicArmored()
}
