package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
	"github.com/repoctl/repoctl/sign"
)

// keyCmd groups the signing-key subcommands (cmd_key_*.go would hold more).
var keyCmd = &cobra.Command{
	Use:   "key",
	Short: "Generate, import, export, list, rotate and retire the package signing key",
	Long: `The signing key lives in ROOT/keys/signing.asc (mode 0600; refused if group or
others can read it) with its public key in ROOT/keys/signing.pub.asc.
Passphrase-protected keys read their passphrase from --passphrase-file or
REPOCTL_KEY_PASSPHRASE. Only OpenPGP v4 RSA and EdDSA keys are accepted:
rpm 4.18 cannot verify others.

To replace the key of a repository in use, use 'key rotate' (not generate or
import): it serves the old and the new public key in RPM-GPG-KEY-repoctl and
re-signs everything; 'key retire' drops the old one later. Keys a rotation
replaced stay in ROOT/keys/old/ (0600).`,
}

func init() {
	rootCmd.AddCommand(keyCmd)

	var algo, name, email, out string
	gen := &cobra.Command{
		Use:   "generate --name NAME --email EMAIL",
		Short: "Generate a signing key (rsa4096, rsa3072 or ed25519)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKeyDirOwner(out); err != nil {
				return err
			}
			k, err := sign.GenerateKeyFiles(algo, name, email, keyDir(out))
			if err != nil {
				return err
			}
			return printKeyInfo(cmd.OutOrStdout(), []sign.KeyInfo{k.Info(filepath.Join(keyDir(out), "signing.asc"))})
		},
	}
	gen.Flags().StringVar(&algo, "algo", "rsa4096", "key algorithm: rsa4096, rsa3072 or ed25519")
	gen.Flags().StringVar(&name, "name", "", "user ID name, e.g. \"Example Infra\" (required)")
	gen.Flags().StringVar(&email, "email", "", "user ID email (required)")
	gen.Flags().StringVar(&out, "out", "", "directory for signing.asc and signing.pub.asc (default ROOT/keys)")
	gen.MarkFlagRequired("name")
	gen.MarkFlagRequired("email")
	keyCmd.AddCommand(gen)

	var ppFile, impOut string
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Install a private key (armored or binary, e.g. gpg --export-secret-keys output)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkKeyDirOwner(impOut); err != nil {
				return err
			}
			pp, err := readPassphrase(ppFile)
			if err != nil {
				return err
			}
			k, err := sign.ImportKeyFile(args[0], pp, keyDir(impOut))
			if err != nil {
				return err
			}
			return printKeyInfo(cmd.OutOrStdout(), []sign.KeyInfo{k.Info(filepath.Join(keyDir(impOut), "signing.asc"))})
		},
	}
	imp.Flags().StringVar(&ppFile, "passphrase-file", "", "file holding the key's passphrase (else env REPOCTL_KEY_PASSPHRASE)")
	imp.Flags().StringVar(&impOut, "out", "", "directory to install into (default ROOT/keys)")
	keyCmd.AddCommand(imp)

	var expKey string
	exp := &cobra.Command{
		Use:   "export",
		Short: "Print the public key (for /etc/pki/rpm-gpg/ and gpgkey=)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := expKey
			if path == "" {
				priv, pub := sign.DefaultKeyPaths(globals.root)
				path = pub
				if _, err := os.Stat(pub); err != nil {
					path = priv // the public part of the private key will do
				}
			}
			b, err := sign.ExportPublic(path)
			if err != nil {
				return err
			}
			if globals.output == "json" {
				k, err := sign.ReadKey(bytes.NewReader(b), nil)
				if err != nil {
					return fmt.Errorf("reading the exported key of %q: %w", path, err)
				}
				return printJSONTo(cmd.OutOrStdout(), keyExportJSON{KeyInfo: k.Info(path), PublicKey: string(b)})
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	exp.Flags().StringVar(&expKey, "key", "", "key file (default ROOT/keys/signing.pub.asc)")
	keyCmd.AddCommand(exp)

	var listDir string
	list := &cobra.Command{
		Use:   "list",
		Short: "Show the keys' fingerprint, algorithm and creation time",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			infos, err := sign.ListKeyFiles(keyDir(listDir))
			if err != nil {
				return err
			}
			return printKeyInfo(cmd.OutOrStdout(), infos)
		},
	}
	list.Flags().StringVar(&listDir, "dir", "", "key directory (default ROOT/keys)")
	keyCmd.AddCommand(list)
}

// checkKeyDirOwner refuses to write a key into ROOT/keys (no --out) as
// anyone but ROOT's owner: a key it cannot read stops its daemon.
func checkKeyDirOwner(out string) error {
	if out != "" {
		return nil
	}
	return repo.CheckOwner(globals.root)
}

func keyDir(flag string) string {
	if flag != "" {
		return flag
	}
	priv, _ := sign.DefaultKeyPaths(globals.root)
	return filepath.Dir(priv)
}

// readPassphrase takes the passphrase from a file (first line) or the
// environment. It never echoes or logs it.
func readPassphrase(file string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading passphrase file %q: %w", file, err)
		}
		if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
			b = b[:i]
		}
		return b, nil
	}
	if v, ok := os.LookupEnv("REPOCTL_KEY_PASSPHRASE"); ok {
		return []byte(v), nil
	}
	return nil, nil
}

// keyExportJSON is `key export -o json`: the key's description and the
// armored public key.
type keyExportJSON struct {
	sign.KeyInfo
	PublicKey string `json:"public_key"`
}

func printKeyInfo(w io.Writer, infos []sign.KeyInfo) error {
	if globals.output == "json" {
		return printJSONTo(w, infos)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FINGERPRINT\tALGORITHM\tCREATED\tKIND\tUSER ID\tFILE")
	for _, k := range infos {
		kind := "public"
		if k.Private {
			kind = "private"
		}
		if k.Protected {
			kind = "private (protected)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.Fingerprint, k.Algorithm, k.Created, kind, k.UserID, k.File)
	}
	return tw.Flush()
}
