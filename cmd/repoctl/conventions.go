package main

// What every command shares, so that no command has to remember it: usage
// errors exit 2, -o json output (errors included), empty lists as [],
// -q, confirmations and completion. main.go calls wireCommands once every
// cmd_*.go file has added its commands.

import (
	"bufio"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// started is set when a command's own code begins (its Run, or a hook
// that fails): an error before that came from cobra reading the command
// line (unknown command or flag, a bad flag value, wrong number of
// arguments, a required flag missing), which main makes a usage error
// whatever cobra's message says. That is the one place cobra's errors
// become exit 2.
var (
	startedMu sync.Mutex
	started   bool
)

func markStarted(cmd *cobra.Command) {
	startedMu.Lock()
	defer startedMu.Unlock()
	if started {
		return
	}
	started = true
	if globals.quiet && globals.output != "json" {
		// Text output goes nowhere; errors still go to stderr, and
		// -o json still prints its JSON.
		cmd.Root().SetOut(io.Discard)
	}
}

func hasStarted() bool {
	startedMu.Lock()
	defer startedMu.Unlock()
	return started
}

// usageError marks err, from reading cmd's command line, as a usage error
// (exit 2) and names the command's usage line.
type usageError struct {
	err error
	use string
}

func newUsageError(cmd *cobra.Command, err error) error {
	if errors.Is(err, errUsage) {
		return err
	}
	if cmd == nil {
		cmd = rootCmd
	}
	return &usageError{err: err, use: cmd.UseLine()}
}

func (e *usageError) Error() string   { return fmt.Sprintf("%v (usage: %s)", e.err, e.use) }
func (e *usageError) Unwrap() []error { return []error{errUsage, e.err} }

// wireCommands applies the conventions to c and every command below it.
func wireCommands(c *cobra.Command) {
	for _, sub := range c.Commands() {
		wireCommands(sub)
	}
	if c.HasParent() && c.HasSubCommands() && !c.Runnable() {
		// "repoctl key bogus" would print the help and exit 0.
		c.RunE = groupRunE
	}
	if c.HasParent() {
		// Root keeps no Args: cobra then reports an unknown command.
		a := c.Args
		if a == nil {
			a = cobra.ArbitraryArgs
		}
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := a(cmd, args); err != nil {
				return err
			}
			// Cobra checks these only after the hooks have run; here a
			// missing flag is refused before any of the command's code,
			// so that main sees it as cobra's (a usage error).
			if err := cmd.ValidateRequiredFlags(); err != nil {
				return err
			}
			return cmd.ValidateFlagGroups()
		}
	}
	wrapHooks(c)
	registerFlagCompletions(c)
}

func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	hint := ""
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		hint = "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return newUsageError(cmd, fmt.Errorf("unknown command %q for %q%s", args[0], cmd.CommandPath(), hint))
}

// wrapHooks marks the command started when its Run begins, or when one of
// its pre-run hooks fails: that error is the hook's own, classified by
// exitCode like any other. (Cobra checks required flags between the hooks
// and Run; the Args wrapper above already did.)
func wrapHooks(c *cobra.Command) {
	failed := func(f func(*cobra.Command, []string) error) func(*cobra.Command, []string) error {
		if f == nil {
			return nil
		}
		return func(cmd *cobra.Command, args []string) error {
			err := f(cmd, args)
			if err != nil {
				markStarted(cmd)
			}
			return err
		}
	}
	c.PersistentPreRunE, c.PreRunE = failed(c.PersistentPreRunE), failed(c.PreRunE)
	if f := c.RunE; f != nil {
		c.RunE = func(cmd *cobra.Command, args []string) error {
			markStarted(cmd)
			return f(cmd, args)
		}
	}
	if f := c.Run; f != nil {
		c.Run = func(cmd *cobra.Command, args []string) {
			markStarted(cmd)
			f(cmd, args)
		}
	}
}

// jsonRequested finds -o json on a command line cobra could not parse, so
// that its usage error is JSON as well.
func jsonRequested(args []string) bool {
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "-o" || a == "--output":
			if i+1 < len(args) && args[i+1] == "json" {
				return true
			}
		case a == "-ojson" || a == "-o=json" || a == "--output=json":
			return true
		}
	}
	return false
}

// Output. With -o json, printJSONTo holds what a command prints on stdout
// until it ends: main writes it alone on success, and on an error inside
// the one error object, so that stdout is always exactly one JSON value.
var (
	pendingMu   sync.Mutex
	pendingJSON []any
)

// printJSONTo writes v as indented JSON, nil slices anywhere in it as []
// (scripts iterate them; null is not a list).
func printJSONTo(w io.Writer, v any) error {
	v = emptyLists(v)
	if f, ok := w.(*os.File); ok && f == os.Stdout {
		pendingMu.Lock()
		pendingJSON = append(pendingJSON, v)
		pendingMu.Unlock()
		return nil
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// errorJSON is what -o json prints on stdout for a failed command. Kind
// names the exit code; Result is what the command had to say before it
// failed (the per-file results of a partly rejected add, a halted
// rollout's state), if anything.
type errorJSON struct {
	Error struct {
		Code    int    `json:"code"`
		Kind    string `json:"kind"`
		Message string `json:"message"`
	} `json:"error"`
	Result any `json:"result,omitempty"`
}

// exitKinds names the exit codes in the error object.
var exitKinds = map[int]string{
	exitError:       "error",
	exitUsage:       "usage",
	exitRejected:    "rejected",
	exitBusy:        "busy",
	exitHalted:      "halted",
	exitInterrupted: "interrupted",
}

// flushJSON writes the command's JSON to w: what it printed, or on err the
// error object holding it.
func flushJSON(w io.Writer, err error, code int) error {
	pendingMu.Lock()
	pending := pendingJSON
	pendingJSON = nil
	pendingMu.Unlock()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err == nil {
		for _, v := range pending {
			if werr := enc.Encode(v); werr != nil {
				return werr
			}
		}
		return nil
	}
	var e errorJSON
	e.Error.Code, e.Error.Kind, e.Error.Message = code, exitKinds[code], err.Error()
	if e.Error.Kind == "" {
		e.Error.Kind = "error"
	}
	switch len(pending) {
	case 0:
	case 1:
		e.Result = pending[0]
	default:
		e.Result = pending
	}
	return enc.Encode(e)
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
)

// emptyLists returns a copy of v in which every nil slice is an empty one,
// so that encoding/json writes [] rather than null. Values that marshal
// themselves are left as they are, and so are the fields of an embedded
// struct of an unexported type (reflection cannot set them: give such a
// field a non-nil value itself); v itself is not modified.
func emptyLists(v any) any {
	if v == nil {
		return nil
	}
	return emptyListsValue(reflect.ValueOf(v), 0).Interface()
}

func emptyListsValue(v reflect.Value, depth int) reflect.Value {
	t := v.Type()
	if depth > 64 || marshalsItself(t) {
		return v
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(emptyListsValue(v.Elem(), depth+1))
		return p
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(t).Elem()
		out.Set(emptyListsValue(v.Elem(), depth+1))
		return out
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return v // []byte is base64 text, not a list
		}
		if v.IsNil() {
			return reflect.MakeSlice(t, 0, 0)
		}
		out := reflect.MakeSlice(t, v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(emptyListsValue(v.Index(i), depth+1))
		}
		return out
	case reflect.Array:
		out := reflect.New(t).Elem()
		for i := range v.Len() {
			out.Index(i).Set(emptyListsValue(v.Index(i), depth+1))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		out := reflect.MakeMapWithSize(t, v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), emptyListsValue(it.Value(), depth+1))
		}
		return out
	case reflect.Struct:
		out := reflect.New(t).Elem()
		out.Set(v)
		for i := range t.NumField() {
			f := out.Field(i)
			if !t.Field(i).IsExported() || !f.CanSet() || t.Field(i).Tag.Get("json") == "-" {
				continue
			}
			f.Set(emptyListsValue(v.Field(i), depth+1))
		}
		return out
	}
	return v
}

func marshalsItself(t reflect.Type) bool {
	if t.Kind() == reflect.Interface {
		return false
	}
	return t.Implements(jsonMarshaler) || t.Implements(textMarshaler) ||
		reflect.PointerTo(t).Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(textMarshaler)
}

// confirm asks on the terminal before a change that reaches prod or its
// hosts: change says what ("remove changes prod"), preview writes the
// details to the prompt's writer. --yes (yes) skips it; without a
// terminal to ask on it refuses, as a usage error.
func confirm(cmd *cobra.Command, yes bool, change string, preview func(io.Writer)) error {
	if yes {
		return nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return fmt.Errorf("%w: %s; pass --yes when not on a terminal", errUsage, change)
	}
	w := cmd.ErrOrStderr()
	if preview != nil {
		preview(w)
	}
	fmt.Fprint(w, "Proceed? [y/N] ")
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		return fmt.Errorf("%w: not confirmed", errUsage)
	}
	return nil
}

// stderrTerminal is stderr when it is a terminal that progress may draw on
// (not with -q or -o json), else nil.
func stderrTerminal(cmd *cobra.Command) *os.File {
	f, ok := cmd.ErrOrStderr().(*os.File)
	if !ok || globals.quiet || globals.output == "json" || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return f
}
