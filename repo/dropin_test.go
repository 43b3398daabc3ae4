package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// decodeJSON decodes what `repoctl -o json` printed into v: the command's
// value, or the "result" of the error object a failed command prints.
func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	var e struct {
		Error  json.RawMessage `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	if json.Unmarshal([]byte(out), &e) == nil && len(e.Error) > 0 {
		out = string(e.Result)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}
}

func rpmBytes(t testing.TB, s testrpm.Spec) []byte {
	t.Helper()
	b, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publishedIn waits until every NEVRA is in the repodata of dir (relative
// to ROOT/repo).
func publishedIn(t *testing.T, root, dir string, nvras ...string) {
	t.Helper()
	repoDir := filepath.Join(root, "repo", filepath.FromSlash(dir))
	waitFor(t, 2*time.Minute, fmt.Sprintf("%v published in %s", nvras, dir), func() (bool, string) {
		pk, err := repodataPackages(repoDir)
		if err != nil {
			return false, err.Error()
		}
		for _, n := range nvras {
			if _, ok := pk[n]; !ok {
				return false, fmt.Sprintf("%s has %v; rejected/ has %v", dir, keys(pk), listDir(t, filepath.Join(root, "rejected")))
			}
		}
		return true, ""
	})
}

func rejectEvents(t *testing.T, root string) []Event {
	t.Helper()
	out, errOut, code := runCLI(t, root, "-o", "json", "history", "--action", EventReject)
	var evs []Event
	if code != 0 {
		t.Fatalf("history: exit %d\n%s%s", code, out, errOut)
	}
	decodeJSON(t, out, &evs)
	return evs
}

// Writers that write a package in place, in 4 chunks 1 s apart, as scp
// and slow links do: one keeps the file open throughout (scp), the other
// opens, appends and closes each time (`cat part >> file`), so that its
// every close looks like the end. Both are published, neither rejected.
func TestDropInPlaceSlowWriters(t *testing.T) {
	root, _ := newTestRoot(t, "") // the default settle
	d := startDaemon(t, root)
	inc := filepath.Join(root, "incoming")
	chunks := func(b []byte) [][]byte {
		n := len(b) / 4
		return [][]byte{b[:n], b[n : 2*n], b[2*n : 3*n], b[3*n:]}
	}
	scp := rpmBytes(t, helloSpec("inplace-scp"))
	app := rpmBytes(t, helloSpec("inplace-append"))
	errc := make(chan error, 2)
	go func() {
		f, err := os.Create(filepath.Join(inc, "inplace-scp.rpm"))
		if err != nil {
			errc <- err
			return
		}
		for i, c := range chunks(scp) {
			if i > 0 {
				time.Sleep(time.Second)
			}
			if _, err := f.Write(c); err != nil {
				errc <- err
				return
			}
		}
		errc <- f.Close()
	}()
	go func() {
		p := filepath.Join(inc, "inplace-append.rpm")
		for i, c := range chunks(app) {
			flags := os.O_WRONLY | os.O_APPEND
			if i == 0 {
				flags |= os.O_CREATE | os.O_EXCL
			} else {
				time.Sleep(time.Second)
			}
			// The daemon may have the file for a moment, taken at the
			// last close, until it finds it still being written and puts
			// it back; this writer appends to it, never recreates it. If
			// the daemon rejected it instead, it never comes back.
			var f *os.File
			var err error
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				if f, err = os.OpenFile(p, flags, 0o644); !errors.Is(err, fs.ErrNotExist) || time.Now().After(deadline) {
					break
				}
			}
			if err != nil {
				errc <- fmt.Errorf("chunk %d: %w (rejected/ has %v)", i, err, listDir(t, filepath.Join(root, "rejected")))
				return
			}
			if _, err := f.Write(c); err != nil {
				if err := f.Close(); err != nil {
					t.Error(err)
				}
				errc <- err
				return
			}
			if err := f.Close(); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	publishedIn(t, root, "main/staging/el/9/x86_64", "inplace-scp-1.0-1.el9.x86_64", "inplace-append-1.0-1.el9.x86_64")
	if got := listDir(t, filepath.Join(root, "rejected")); len(got) != 0 {
		t.Errorf("rejected/ has %v", got)
	}
	if evs := rejectEvents(t, root); len(evs) != 0 {
		t.Errorf("reject events: %+v", evs)
	}
	d.stop()
}

// A writer that stalls far longer than the settle interval with the file
// still open (scp over a link that stops for a while) is not taken before
// it is done: the kernel says the file is open for writing.
func TestDropInStalledWriter(t *testing.T) {
	root, _ := newTestRoot(t, "[daemon]\nsettle = \"300ms\"\n")
	d := startDaemon(t, root)
	body := rpmBytes(t, helloSpec("stalled"))
	f, err := os.Create(filepath.Join(root, "incoming", "stalled.rpm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(body[:len(body)/2]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the stall: many settle intervals
	if _, err := f.Write(body[len(body)/2:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	publishedIn(t, root, "main/staging/el/9/x86_64", "stalled-1.0-1.el9.x86_64")
	if got := listDir(t, filepath.Join(root, "rejected")); len(got) != 0 {
		t.Errorf("rejected/ has %v", got)
	}
	d.stop()
}

// Subdirectories of a drop-in directory are watched: present at start,
// made after it (mkdir, cp -r, mv), down to DropInDepth levels; their
// files go in with the drop-in directory's repository, channel and
// release; status counts them, and what lies deeper as skipped.
func TestDropInSubdirectories(t *testing.T) {
	needTools(t, "cp")
	root, _ := newTestRoot(t, "[[dropin]]\ndir = \"incoming\"\n[[dropin]]\ndir = \"el8in\"\nrelease = \"el/8\"\n")
	inc := filepath.Join(root, "incoming")
	write := func(dir string, s testrpm.Spec) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, s.FileName()), rpmBytes(t, s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Before the daemon: status counts what waits in subdirectories, and
	// a directory deeper than DropInDepth as skipped.
	write(filepath.Join(inc, "el9", "x86_64"), helloSpec("sub-early"))
	deep := filepath.Join(inc, "a", "b", "c", "d", "e")
	write(deep, helloSpec("sub-deep"))
	out, errOut, code := runCLI(t, root, "-o", "json", "status")
	var st Status
	if code != 0 {
		t.Fatalf("status: exit %d\n%s%s", code, out, errOut)
	}
	decodeJSON(t, out, &st)
	if st.Incoming != 1 || st.Skipped != 1 {
		t.Errorf("status before the daemon: incoming %d skipped %d, want 1 and 1", st.Incoming, st.Skipped)
	}

	d := startDaemon(t, root)
	// Made after the start: mkdir, then a file renamed into it.
	if err := os.Mkdir(filepath.Join(inc, "x86_64"), 0o755); err != nil {
		t.Fatal(err)
	}
	late := helloSpec("sub-late")
	dropFile(t, filepath.Join(inc, "x86_64"), late.FileName(), rpmBytes(t, late))
	// cp -r of a directory tree, as the issue did it.
	src := filepath.Join(t.TempDir(), "aarch64")
	write(filepath.Join(src, "nested"), helloSpec("sub-cpr"))
	if b, err := exec.Command("cp", "-r", src, inc+"/").CombinedOutput(); err != nil {
		t.Fatalf("cp -r: %v\n%s", err, b)
	}
	// A tree moved in whole: its files get no event of their own.
	mv := filepath.Join(root, "staged-tree")
	write(filepath.Join(mv, "deeper"), helloSpec("sub-mv"))
	if err := os.Rename(mv, filepath.Join(inc, "moved")); err != nil {
		t.Fatal(err)
	}
	// The deepest level that is watched.
	write(filepath.Join(inc, "a", "b", "c", "d"), helloSpec("sub-depth4"))
	// A drop-in directory's release applies to its subdirectories too.
	write(filepath.Join(root, "el8in", "x86_64"), helloSpec("sub-el8"))

	publishedIn(t, root, "main/staging/el/9/x86_64", "sub-early-1.0-1.el9.x86_64", "sub-late-1.0-1.el9.x86_64",
		"sub-cpr-1.0-1.el9.x86_64", "sub-mv-1.0-1.el9.x86_64", "sub-depth4-1.0-1.el9.x86_64")
	publishedIn(t, root, "main/staging/el/8/x86_64", "sub-el8-1.0-1.el9.x86_64")
	waitFor(t, time.Minute, "status: nothing incoming, the deep directory skipped", func() (bool, string) {
		out, _, code := runCLI(t, root, "-o", "json", "status")
		st = Status{}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
			return false, out
		}
		return st.Incoming == 0 && st.Skipped == 1 && st.InFlight == 0, out
	})
	if _, err := os.Stat(filepath.Join(deep, helloSpec("sub-deep").FileName())); err != nil {
		t.Errorf("the file below DropInDepth: %v (want it left alone)", err)
	}
	if pk := mustPkgs(t, filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")); len(pk) != 5 {
		t.Errorf("el9 repodata has %v", keys(pk))
	}
	d.stop()
}

// A drop-in rejected into rejected/, fixed in place there and retried, is
// published; one retried unfixed stays under its name with a new .reason.
// Purge --older-than removes only old entries. Through the daemon and
// without one.
func TestRejectedRetryAndPurge(t *testing.T) {
	root, _ := newTestRoot(t, "")
	rej := filepath.Join(root, "rejected")
	inc := filepath.Join(root, "incoming")
	d := startDaemon(t, root)
	junk := []byte("this is not an rpm, just text\n")
	for _, n := range []string{"fixme.rpm", "old1.rpm", "old2.rpm", "new.rpm"} {
		dropFile(t, inc, n, junk)
	}
	waitFor(t, time.Minute, "four drop-ins rejected", func() (bool, string) {
		n := len(listDir(t, rej))
		return n == 8, fmt.Sprint(listDir(t, rej))
	})

	out, _, code := runCLI(t, root, "-o", "json", "rejected", "list")
	var list []RejectedEntry
	decodeJSON(t, out, &list)
	if code != 0 || len(list) != 4 {
		t.Fatalf("rejected list: exit %d, %+v", code, list)
	}
	for _, e := range list {
		if e.Code != reasonInvalid || e.Type != RejectedFile || e.Repo != "main" || e.Channel != "staging" ||
			e.Source != filepath.Join(inc, e.Name) || e.Size != int64(len(junk)) {
			t.Errorf("entry %+v", e)
		}
	}
	out, _, code = runCLI(t, root, "rejected", "show", "fixme.rpm")
	if code != 0 || !strings.Contains(out, "invalid: ") || !strings.Contains(out, "file: "+filepath.Join(inc, "fixme.rpm")) {
		t.Errorf("rejected show: exit %d\n%s", code, out)
	}
	if _, _, code := runCLI(t, root, "rejected", "show", "../repoctl.db"); code != 2 {
		t.Errorf("rejected show ../repoctl.db: exit %d, want 2", code)
	}
	if _, _, code := runCLI(t, root, "rejected", "retry", "nothing-here.rpm"); code != 2 {
		t.Errorf("rejected retry of a missing entry: exit %d, want 2", code)
	}

	// Unfixed: rejected again, under the same name, its .reason rewritten
	// and still naming where it came from.
	out, errOut, code := runCLI(t, root, "-o", "json", "rejected", "retry", "fixme.rpm")
	var res []AddResult
	decodeJSON(t, out, &res)
	if code != 3 || len(res) != 1 || res[0].Action != ActionRejected || res[0].Rejected != filepath.Join(rej, "fixme.rpm") {
		t.Errorf("retry unfixed: exit %d, want 3: %+v\n%s", code, res, errOut)
	}
	after, err := os.ReadFile(filepath.Join(rej, "fixme.rpm.reason"))
	if err != nil || !strings.HasPrefix(string(after), reasonInvalid+": ") || !strings.Contains(string(after), "\nfile: "+filepath.Join(inc, "fixme.rpm")+"\n") {
		t.Errorf(".reason after retry: %q %v", after, err)
	}
	if got := listDir(t, rej); len(got) != 8 {
		t.Errorf("rejected/ after an unfixed retry: %v", got)
	}

	// Fixed in place: published, and gone from rejected/.
	good := helloSpec("fixed")
	if err := os.WriteFile(filepath.Join(rej, "fixme.rpm"), rpmBytes(t, good), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, root, "-o", "json", "rejected", "retry", "fixme.rpm")
	res = nil
	decodeJSON(t, out, &res)
	if code != 0 || len(res) != 1 || res[0].Action != ActionAdded || res[0].NEVRA != "fixed-1.0-1.el9.x86_64" {
		t.Fatalf("retry fixed: exit %d %+v\n%s", code, res, errOut)
	}
	publishedIn(t, root, "main/staging/el/9/x86_64", "fixed-1.0-1.el9.x86_64")
	for _, n := range []string{"fixme.rpm", "fixme.rpm.reason"} {
		if _, err := os.Lstat(filepath.Join(rej, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("rejected/%s after it was published: %v", n, err)
		}
	}

	// Purge by age: two entries were rejected ten days ago.
	old := time.Now().Add(-10 * 24 * time.Hour)
	for _, n := range []string{"old1.rpm", "old1.rpm.reason", "old2.rpm", "old2.rpm.reason"} {
		if err := os.Chtimes(filepath.Join(rej, n), old, old); err != nil {
			t.Fatal(err)
		}
	}
	out, _, code = runCLI(t, root, "-o", "json", "rejected", "purge", "--older-than", "7d", "--dry-run")
	var pr RejectedPurgeResult
	decodeJSON(t, out, &pr)
	if code != 0 || !pr.DryRun || len(pr.Purged) != 2 || pr.Kept != 1 || len(listDir(t, rej)) != 6 {
		t.Errorf("purge --dry-run: exit %d %+v; rejected/ %v", code, pr, listDir(t, rej))
	}
	if _, _, code := runCLI(t, root, "rejected", "purge", "--older-than", "soon"); code != 2 {
		t.Errorf("purge --older-than soon: exit %d, want 2", code)
	}
	out, _, code = runCLI(t, root, "rejected", "purge", "--older-than", "7d")
	if code != 0 || !strings.Contains(out, "purged old1.rpm") || !strings.Contains(out, "purged old2.rpm") {
		t.Errorf("purge: exit %d\n%s", code, out)
	}
	if got := listDir(t, rej); !reflect.DeepEqual(got, []string{"new.rpm", "new.rpm.reason"}) {
		t.Errorf("rejected/ after purge --older-than 7d: %v", got)
	}
	d.stop()

	// Without a daemon, the CLI does the same itself.
	if err := os.WriteFile(filepath.Join(rej, "new.rpm"), rpmBytes(t, helloSpec("fixed-local")), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, root, "rejected", "retry", "new.rpm"); code != 0 || !strings.Contains(out, "added") {
		t.Errorf("local retry: exit %d\n%s%s", code, out, errOut)
	}
	if got := listDir(t, rej); len(got) != 0 {
		t.Errorf("rejected/ after the local retry: %v", got)
	}
	if out, _, code := runCLI(t, root, "-o", "json", "rejected", "list"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty rejected list: exit %d %q", code, out)
	}

	// Each retry and each purged entry is an event, with the caller.
	out, _, code = runCLI(t, root, "-o", "json", "history", "--action", "rejected")
	var evs []Event
	decodeJSON(t, out, &evs)
	var got []string
	for _, e := range evs {
		got = append(got, e.Action+" "+e.Path+" "+e.Details["outcome"])
		if e.Caller == nil || e.Caller.UID != uint32(os.Getuid()) {
			t.Errorf("event %+v: caller not recorded", e)
		}
	}
	want := []string{"rejected.retry fixme.rpm rejected", "rejected.retry fixme.rpm added",
		"rejected.purge old1.rpm ", "rejected.purge old2.rpm ", "rejected.retry new.rpm added"}
	if code != 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("events %q, want %q", got, want)
	}
}

// `repoctl add` of a bad file, with and without the daemon: exit 3 with
// the reason, the file where it was, nothing in rejected/, the rejection
// recorded.
func TestAddJunkNotKept(t *testing.T) {
	root, _ := newTestRoot(t, "")
	junk := filepath.Join(t.TempDir(), "junk.rpm")
	if err := os.WriteFile(junk, []byte("not an rpm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	try := func(how string) {
		t.Helper()
		out, errOut, code := runCLI(t, root, "add", junk)
		if code != 3 || !strings.Contains(out, "rejected   "+junk) || !strings.Contains(out, "invalid: ") || strings.Contains(out, "kept as") {
			t.Errorf("%s: exit %d, want 3 with the reason\n%s%s", how, code, out, errOut)
		}
		out, _, code = runCLI(t, root, "-o", "json", "add", junk)
		var res []AddResult
		decodeJSON(t, out, &res)
		if code != 3 || len(res) != 1 || res[0].Action != ActionRejected || !strings.HasPrefix(res[0].Reason, reasonInvalid+": ") || res[0].Rejected != "" {
			t.Errorf("%s -o json: exit %d %+v", how, code, res)
		}
		if got := listDir(t, filepath.Join(root, "rejected")); len(got) != 0 {
			t.Errorf("%s: rejected/ has %v", how, got)
		}
		if b, err := os.ReadFile(junk); err != nil || string(b) != "not an rpm\n" {
			t.Errorf("%s: the caller's file: %q %v", how, b, err)
		}
	}
	try("without the daemon")
	d := startDaemon(t, root)
	try("through the daemon")
	d.stop()
	evs := rejectEvents(t, root)
	if len(evs) != 4 {
		t.Fatalf("%d reject events, want 4", len(evs))
	}
	for _, e := range evs {
		if e.Path != junk || !strings.HasPrefix(e.Details["reason"], reasonInvalid+": ") || e.Details["kept"] != "" {
			t.Errorf("reject event %+v", e)
		}
	}
}

// The pipeline returns a drop-in that fails while it is still being
// written to its directory instead of rejecting it: when it changed since
// the watcher saw it, or was written within the settle interval and not
// renamed into place. A renamed-in file, an old one, or one with a future
// mtime is judged as it is.
func TestDropInStillWrittenDeferred(t *testing.T) {
	ctx := context.Background()
	r := openPL(t, filepath.Join(t.TempDir(), "root"))
	inc := r.Config().DropIns[0].Dir
	rej := r.Config().Paths.Rejected
	full := rpmBytes(t, spec("grow", "1", "1.el9", "x86_64"))
	p := filepath.Join(inc, "grow.rpm")
	if err := os.WriteFile(p, full[:len(full)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	ingest := func(seen dropSeen, settle time.Duration) AddResult {
		t.Helper()
		o := AddOptions{Move: true}
		o.drop = &dropBatch{settle: settle, files: map[string]dropSeen{p: seen}}
		res, err := r.Ingest(ctx, []string{p}, o)
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	stat := func(renamed bool) dropSeen {
		t.Helper()
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return dropSeen{Root: inc, Size: fi.Size(), ModTime: fi.ModTime(), Renamed: renamed}
	}
	deferred := func(what string, res AddResult) {
		t.Helper()
		if res.Action != ActionDeferred || res.Rejected != "" {
			t.Errorf("%s: %+v, want deferred", what, res)
		}
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s: not back in the drop-in directory: %v", what, err)
		}
		if got := listDir(t, rej); len(got) != 0 {
			t.Errorf("%s: rejected/ has %v", what, got)
		}
	}

	// It grew since the watcher saw it.
	seen := stat(true)
	seen.Size -= 100
	deferred("grown since seen", ingest(seen, time.Millisecond))
	// Closed after writing just now, within the settle interval.
	deferred("written within the settle", ingest(stat(false), time.Hour))
	// Renamed into place: complete by its uploader's word, so judged.
	if res := ingest(stat(true), time.Hour); res.Action != ActionRejected || res.Rejected == "" {
		t.Errorf("renamed in: %+v, want rejected", res)
	}
	evs, err := r.History(ctx, HistoryOptions{Action: EventReject})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 {
		t.Errorf("%d reject events, want 1 (deferrals are not rejections)", len(evs))
	}
	// Still open for writing by someone: deferred, renamed in or not.
	for _, n := range listDir(t, rej) {
		if err := os.Remove(filepath.Join(rej, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p, full[:len(full)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(p, past, past); err != nil {
		t.Fatal(err)
	}
	res := ingest(stat(true), time.Millisecond)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	deferred("open for writing", res)
	if !strings.Contains(res.Reason, "open for writing") {
		t.Errorf("reason %q", res.Reason)
	}
	// Old or future mtimes: judged.
	for what, mtime := range map[string]time.Time{"old": time.Now().Add(-2 * time.Hour), "future": time.Now().Add(time.Hour)} {
		if err := os.WriteFile(p, full[:len(full)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		if res := ingest(stat(false), time.Hour); res.Action != ActionRejected {
			t.Errorf("%s mtime: %+v, want rejected", what, res)
		}
	}
	// Finished, it goes in.
	if err := os.WriteFile(p, full, 0o644); err != nil {
		t.Fatal(err)
	}
	if res := ingest(stat(false), time.Millisecond); res.Action != ActionAdded {
		t.Errorf("complete: %+v, want added", res)
	}
}

// The rejected/ methods cross the socket with their arguments, results
// and errors intact.
func TestSocketRejected(t *testing.T) {
	svc := &echoService{}
	ready := make(chan struct{})
	close(ready)
	c, err := Dial(context.Background(), startSocket(t, svc, ready), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	list, err := c.RejectedList(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "junk.rpm" || list[0].Size != 5 || !list[0].Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("RejectedList = %+v, %v", list, err)
	}
	e, err := c.RejectedShow(ctx, "junk.rpm")
	if err != nil || !strings.HasPrefix(e.Reason, "invalid: not an RPM\n") {
		t.Errorf("RejectedShow = %+v, %v", e, err)
	}
	if _, err := c.RejectedShow(ctx, "other"); !errors.Is(err, ErrBadOption) {
		t.Errorf("RejectedShow of a missing entry: %v, want ErrBadOption", err)
	}
	res, err := c.RejectedRetry(ctx, RejectedRetryRequest{Names: []string{"a.rpm", "b.rpm"}})
	if err != nil || len(res) != 2 || res[0].Rejected != "/r/rejected/a.rpm" || res[1].Action != ActionAdded {
		t.Errorf("RejectedRetry = %+v, %v", res, err)
	}
	if svc.gotCaller == nil || svc.gotCaller.UID != uint32(os.Getuid()) {
		t.Errorf("RejectedRetry ran as %+v, want the peer's identity", svc.gotCaller)
	}
	pr, err := c.RejectedPurge(ctx, RejectedPurgeRequest{OlderThan: "30d", DryRun: true})
	if err != nil || !pr.DryRun || pr.Kept != 2 || len(pr.Purged) != 1 || pr.OlderThan != "30d" {
		t.Errorf("RejectedPurge = %+v, %v", pr, err)
	}
	if _, err := c.RejectedPurge(ctx, RejectedPurgeRequest{OlderThan: "-1d"}); !errors.Is(err, ErrBadOption) {
		t.Errorf("RejectedPurge with a bad age: %v, want ErrBadOption", err)
	}
}

func TestParseAge(t *testing.T) {
	for in, want := range map[string]time.Duration{"30d": 30 * 24 * time.Hour, "1.5d": 36 * time.Hour, "12h": 12 * time.Hour, "90m": 90 * time.Minute} {
		if got, err := ParseAge(in); err != nil || got != want {
			t.Errorf("ParseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1d", "0d", "d", "soon", "1e9d"} {
		if _, err := ParseAge(in); !errors.Is(err, ErrBadOption) {
			t.Errorf("ParseAge(%q) = %v, want ErrBadOption", in, err)
		}
	}
}
