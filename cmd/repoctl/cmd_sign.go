package main

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/spf13/cobra"

	"github.com/repoctl/repoctl/sign"
)

// errSignRefused: some files were refused (corrupt, not RPMs); the others
// were signed.
var errSignRefused = errors.New("some packages were refused")

func init() {
	var keyFile, ppFile, journalDir string
	var legacy, dryRun bool
	var workers int
	cmd := &cobra.Command{
		Use:   "sign [--key FILE] [--legacy] FILE...",
		Short: "Add header-only OpenPGP signatures to RPM files, like rpmsign --addsign",
		Long: `Signs each RPM with the signing key (default ROOT/keys/signing.asc), in place
when the signature fits the package's reserved space, else by an atomic
rewrite. Each package's own digests are checked first; corrupt packages are
refused and left untouched (exit code 3). A package already signed by this key
is left alone; one signed by another key gets its signature replaced.
Prints one line per file: path, action (signed|replaced|unchanged; with
--dry-run "would sign" or "would replace"), key ID.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pp, err := readPassphrase(ppFile)
			if err != nil {
				return err
			}
			if keyFile == "" {
				keyFile, _ = sign.DefaultKeyPaths(globals.root)
			}
			opts := []sign.SignerOption{sign.WithLegacy(legacy), sign.WithDryRun(dryRun)}
			if journalDir != "" {
				opts = append(opts, sign.WithJournalDir(journalDir))
			}
			if workers > 0 {
				opts = append(opts, sign.WithWorkers(workers))
			}
			w := cmd.OutOrStdout()
			if globals.output != "json" {
				opts = append(opts, sign.WithProgress(&signPrinter{w: w, dryRun: dryRun}))
			}
			res, err := sign.SignFilesWithKey(cmd.Context(), keyFile, pp, args, opts...)
			if globals.output == "json" && res != nil {
				if jerr := printJSONTo(w, signResultsJSON(res, dryRun)); jerr != nil && err == nil {
					err = jerr
				}
			}
			if err != nil {
				return err
			}
			n := 0
			for _, r := range res {
				if r.Err != nil {
					n++
				}
			}
			if n > 0 {
				return fmt.Errorf("%w: %d of %d", errSignRefused, n, len(res))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&keyFile, "key", "", "private key file (default ROOT/keys/signing.asc)")
	f.StringVar(&ppFile, "passphrase-file", "", "file holding the key's passphrase (else env REPOCTL_KEY_PASSPHRASE)")
	f.BoolVar(&legacy, "legacy", false, "also write the header+payload signature for rpm < 4.14")
	f.BoolVar(&dryRun, "dry-run", false, "check and report what would be done, write nothing")
	f.StringVar(&journalDir, "journal-dir", "", "where crash journals go (default beside each file)")
	f.IntVar(&workers, "workers", 0, "packages signed in parallel (default: number of CPUs)")
	rootCmd.AddCommand(cmd)
}

// signPrinter prints each file's line as its batch completes; a dry run
// says what it would do.
type signPrinter struct {
	mu     sync.Mutex
	w      io.Writer
	dryRun bool
}

// wouldDo is what a dry run says for a result's action.
var wouldDo = map[string]string{sign.ActionSigned: "would sign", sign.ActionReplaced: "would replace"}

func (p *signPrinter) Start(int) {}

func (p *signPrinter) Done(r sign.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Err != nil {
		fmt.Fprintf(p.w, "%s\trefused\t%s\t%v\n", r.Path, r.KeyID, r.Err)
		return
	}
	action := r.Action
	if w, ok := wouldDo[action]; ok && p.dryRun {
		action = w
	}
	fmt.Fprintf(p.w, "%s\t%s\t%s\n", r.Path, action, r.KeyID)
}

type signResultJSON struct {
	sign.Result
	// DryRun: Action is what would have been done; nothing was written.
	DryRun bool   `json:"dry_run,omitempty"`
	Error  string `json:"error,omitempty"`
}

func signResultsJSON(res []sign.Result, dryRun bool) []signResultJSON {
	out := make([]signResultJSON, len(res))
	for i, r := range res {
		out[i].Result, out[i].DryRun = r, dryRun
		if r.Err != nil {
			out[i].Action = "refused"
			out[i].Error = r.Err.Error()
		}
	}
	return out
}
