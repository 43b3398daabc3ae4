package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/repo"
)

func init() {
	var req repo.KeyRotateRequest
	var importFile string
	rotate := &cobra.Command{
		Use:   "rotate [--algo rsa4096|rsa3072|ed25519] [--import FILE] [--resume] [--dry-run]",
		Short: "Replace the signing key: serve both keys, re-sign every package and repomd.xml.asc",
		Long: `Rotate makes a new signing key (or takes --import FILE, a private key such as
gpg --export-secret-keys writes) and moves every served signature to it:

  1. ROOT/repo/RPM-GPG-KEY-repoctl serves the new and the old public key (hosts
     import both from the one gpgkey= URL); the old private key is kept in
     ROOT/keys/old/KEYID.asc (0600); new packages are signed with the new key;
  2. every package in the store is re-signed once (in place where its reserved
     signature space allows, else rewritten and re-linked into every channel),
     crash-safe, and its repository directories are republished;
  3. every repomd.xml.asc is re-signed.

An interrupted rotation resumes: the daemon finishes it when it starts, and
--resume finishes it without a daemon. Until it is done both keys stay served
and 'key retire' refuses. Hosts with cached metadata see new checksums for
re-signed packages: 'dnf clean metadata' (or metadata_expire) picks them up.
Exit 4 when a rotation is already unfinished (use --resume).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch req.Algo {
			case "", "rsa4096", "rsa3072", "ed25519":
			default:
				return fmt.Errorf("%w: --algo must be rsa4096, rsa3072 or ed25519, not %q", errUsage, req.Algo)
			}
			if req.Resume && (req.Algo != "" || importFile != "") {
				return fmt.Errorf("%w: --resume finishes the unfinished rotation; it takes neither --algo nor --import", errUsage)
			}
			if importFile != "" && req.Algo != "" {
				return fmt.Errorf("%w: --import takes the imported key's algorithm; drop --algo", errUsage)
			}
			if importFile != "" {
				b, err := readKeyFile(importFile)
				if err != nil {
					return err
				}
				req.Import = b
			}
			svc, done, err := connectKeys(cmd)
			if err != nil {
				return err
			}
			defer done()
			req.Who = repo.CurrentUser()
			stop := showRotation(cmd.Context(), cmd, svc)
			rot, err := svc.RotateKey(cmd.Context(), req)
			stop()
			if perr := printRotation(cmd.OutOrStdout(), rot, req.Resume); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
	rotate.Flags().StringVar(&req.Algo, "algo", "", "new key's algorithm: rsa4096, rsa3072 or ed25519 (default: the config's signing.algo)")
	rotate.Flags().StringVar(&importFile, "import", "", "rotate to this private key instead of generating one (protected keys use the configured passphrase)")
	rotate.Flags().BoolVar(&req.Resume, "resume", false, "finish an interrupted rotation")
	rotate.Flags().BoolVar(&req.DryRun, "dry-run", false, "say what would be re-signed; change nothing")
	keyCmd.AddCommand(rotate)

	var rreq repo.KeyRetireRequest
	retire := &cobra.Command{
		Use:   "retire KEYID [--dry-run]",
		Short: "Stop serving an old public key once no served file needs it",
		Long: `Retire drops the old public key KEYID (key id, fingerprint, or the 8-digit id of
rpm's gpg-pubkey-XXXXXXXX) from ROOT/repo/RPM-GPG-KEY-repoctl. It refuses, with
exit 3, while a rotation is unfinished, for the active key, and while a package
of the store, a placed package file or a repomd.xml.asc still carries a
signature by it. Its private key stays in ROOT/keys/old/. An unknown key id is
exit 2.`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeServedKeys,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectKeys(cmd)
			if err != nil {
				return err
			}
			defer done()
			rreq.KeyID, rreq.Who = args[0], repo.CurrentUser()
			res, err := svc.RetireKey(cmd.Context(), rreq)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if globals.output == "json" {
				return printJSONTo(w, res)
			}
			verb := "retired"
			if res.DryRun {
				verb = "would retire"
			}
			fmt.Fprintf(w, "%s key %s (%s)\nRPM-GPG-KEY-repoctl serves: %s\n", verb, res.KeyID, res.Fingerprint, strings.Join(res.Served, ", "))
			return nil
		},
	}
	retire.Flags().BoolVar(&rreq.DryRun, "dry-run", false, "check only; change nothing")
	keyCmd.AddCommand(retire)

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the served public keys, the packages each signs, and an unfinished rotation",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			svc, done, err := connectKeys(cmd)
			if err != nil {
				return err
			}
			defer done()
			st, err := svc.KeyStatus(cmd.Context())
			if err != nil {
				return err
			}
			return printKeyStatus(cmd.OutOrStdout(), st)
		},
	}
	keyCmd.AddCommand(status)
}

// readKeyFile reads a key to import, with the user's rights: the daemon
// never opens a path for a client.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading key %q: %w", path, err)
	}
	defer f.Close()
	const max = 1 << 20
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading key %q: %w", path, err)
	}
	if len(b) > max {
		return nil, fmt.Errorf("%w: key file %q is larger than %d bytes", errUsage, path, max)
	}
	return b, nil
}

// connectKeys is connectService without the pipeline's stage lines: the
// key commands show their own progress.
func connectKeys(cmd *cobra.Command) (repo.Service, func() error, error) {
	opts := []repo.Option{repo.WithNotify(func(msg string) {
		if !globals.quiet {
			fmt.Fprintf(cmd.ErrOrStderr(), "repoctl: %s\n", msg)
		}
	})}
	if globals.config != "" {
		opts = append(opts, repo.WithConfigFile(globals.config))
	}
	return repo.Connect(cmd.Context(), globals.root, opts...)
}

// showRotation polls the rotation's progress while RotateKey runs (in this
// process or in the daemon) and draws it on a terminal: a bar of re-signed
// packages while that phase runs, the phase otherwise. The returned func
// stops it.
func showRotation(ctx context.Context, cmd *cobra.Command, svc repo.Service) func() {
	f := stderrTerminal(cmd)
	if f == nil {
		return func() {}
	}
	bar := newStageBar(f)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer bar.clear()
		last := ""
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			st, err := svc.KeyStatus(ctx)
			if err != nil || st.Rotation == nil {
				continue
			}
			rot := st.Rotation
			stage, total := "rotating "+rot.Phase, 0
			if rot.Phase == "packages" {
				stage, total = "re-signing", rot.Packages
			}
			if stage != last {
				bar.start(stage, total)
				last = stage
			}
			if total > 0 {
				bar.set(rot.Resigned)
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

func printRotation(w io.Writer, rot *repo.KeyRotation, resume bool) error {
	if globals.output == "json" {
		if rot == nil {
			return printJSONTo(w, struct{}{})
		}
		return printJSONTo(w, rot)
	}
	switch {
	case rot == nil && resume:
		fmt.Fprintln(w, "no key rotation is unfinished")
	case rot == nil:
	case rot.DryRun:
		to := rot.NewKeyID
		if to == "" {
			to = "a new " + rot.NewAlgorithm + " key"
		}
		fmt.Fprintf(w, "would rotate the signing key from %s to %s: re-sign %d packages and the repomd.xml.asc of %d repository directories\n",
			rot.OldKeyID, to, rot.Packages, rot.Dirs)
	case rot.Phase == "done":
		fmt.Fprintf(w, "rotated the signing key from %s to %s: %d packages re-signed (%d in place, %d rewritten), %d repository directories signed by %s\n",
			rot.OldKeyID, rot.NewKeyID, rot.Resigned, rot.InPlace, rot.Rewritten, rot.Dirs, rot.NewKeyID)
		fmt.Fprintf(w, "RPM-GPG-KEY-repoctl still serves %s; `repoctl key retire %s` drops it\n", rot.OldKeyID, rot.OldKeyID)
	default:
		fmt.Fprintf(w, "key rotation from %s to %s unfinished: phase %s, %d of %d packages re-signed; both keys stay served\n",
			rot.OldKeyID, rot.NewKeyID, rot.Phase, rot.Resigned, rot.Packages)
		for _, f := range rot.Failed {
			fmt.Fprintf(w, "  could not re-sign %s\n", f)
		}
	}
	return nil
}

func printKeyStatus(w io.Writer, st *repo.KeyStatus) error {
	if globals.output == "json" {
		return printJSONTo(w, st)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tALGORITHM\tPACKAGES\tSTATE\tUSER ID\tFINGERPRINT")
	for _, k := range st.Keys {
		state := "served"
		if k.Active {
			state = "active"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", k.KeyID, k.Algorithm, k.Packages, state, k.UserID, k.Fingerprint)
	}
	for id, n := range st.Unknown {
		fmt.Fprintf(tw, "%s\t?\t%d\tnot served\t\t\n", id, n)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if rot := st.Rotation; rot != nil {
		fmt.Fprintf(w, "rotation from %s to %s unfinished: phase %s, %d of %d packages re-signed (started %s by %s)\n",
			rot.OldKeyID, rot.NewKeyID, rot.Phase, rot.Resigned, rot.Packages, rot.Started.Format(time.RFC3339), rot.By)
	}
	return nil
}
