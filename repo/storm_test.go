package repo

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repoctl/repoctl/internal/testrpm"
)

// stormInput is one file of a storm and what must become of it.
type stormInput struct {
	name   string // file name as dropped
	body   []byte
	nvra   string // N-V-R.A when it must be published
	reject string // expected start of the .reason when it must be rejected
}

// junkInputs are files that must be rejected: not RPMs at all, RPMs cut
// short, and an empty file.
func junkInputs(tag string, n int) []stormInput {
	var in []stormInput
	for i := 0; i < n; i++ {
		var body []byte
		name := fmt.Sprintf("junk-%s-%d.rpm", tag, i)
		switch i % 3 {
		case 0:
			body = []byte(strings.Repeat("this is not an rpm\n", 10+i))
		case 1:
			full, err := testrpm.Build(testrpm.Small(90000 + i))
			if err != nil {
				panic(err)
			}
			body = full[:len(full)/2]
			name = fmt.Sprintf("truncated-%s-%d.rpm", tag, i)
		case 2:
			body = append([]byte{0xed, 0xab, 0xee, 0xdb}, make([]byte, 200)...) // RPM lead magic, garbage after
			name = fmt.Sprintf("badlead-%s-%d.rpm", tag, i)
		}
		in = append(in, stormInput{name: name, body: body})
	}
	return in
}

func validInput(t testing.TB, s testrpm.Spec) stormInput {
	t.Helper()
	b, err := testrpm.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return stormInput{name: s.FileName(), body: b, nvra: fmt.Sprintf("%s-%s-%s.%s", s.Name, s.Version, s.Release, s.Arch)}
}

// checkAccounted asserts that every input ended where it must: published
// ones in the repository directory and its repodata, rejected ones in
// rejected/ with a .reason; and that nothing is left in incoming/ or in the
// spool.
func checkAccounted(t testing.TB, root string, inputs []stormInput) {
	t.Helper()
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	pk, err := repodataPackages(repoDir)
	if err != nil {
		t.Fatalf("repodata: %v", err)
	}
	rejectedDir := filepath.Join(root, "rejected")
	published, rejected := 0, 0
	for _, in := range inputs {
		if in.nvra != "" {
			p, ok := pk[in.nvra]
			if !ok {
				t.Errorf("%s: not in repodata", in.name)
				continue
			}
			if _, err := os.Stat(filepath.Join(repoDir, filepath.FromSlash(p.Location.Href))); err != nil {
				t.Errorf("%s: repodata lists it but the file is missing: %v", in.name, err)
				continue
			}
			published++
			continue
		}
		reason, err := os.ReadFile(filepath.Join(rejectedDir, in.name+".reason"))
		if err != nil {
			t.Errorf("%s: no .reason in rejected/: %v", in.name, err)
			continue
		}
		if _, err := os.Stat(filepath.Join(rejectedDir, in.name)); err != nil {
			t.Errorf("%s: .reason but no file in rejected/: %v", in.name, err)
			continue
		}
		if in.reject != "" && !strings.HasPrefix(string(reason), in.reject) {
			t.Errorf("%s: reason %q, want %q…", in.name, strings.SplitN(string(reason), "\n", 2)[0], in.reject)
		}
		rejected++
	}
	if published+rejected != len(inputs) {
		t.Errorf("accounted for %d published + %d rejected of %d inputs", published, rejected, len(inputs))
	}
	if left := listDir(t, filepath.Join(root, "incoming")); len(left) != 0 {
		t.Errorf("left in incoming/: %v", left)
	}
	for _, n := range listDir(t, filepath.Join(root, "spool")) {
		if strings.HasSuffix(n, ".rpm") {
			t.Errorf("left in spool/: %s", n)
		}
	}
}

// drained reports whether incoming/ is empty and the daemon has nothing in
// flight (spool holds no package).
func drained(root string) (bool, string) {
	in, err := os.ReadDir(filepath.Join(root, "incoming"))
	if err != nil {
		return false, err.Error()
	}
	sp, err := os.ReadDir(filepath.Join(root, "spool"))
	if err != nil {
		return false, err.Error()
	}
	n := 0
	for _, e := range sp {
		if strings.HasSuffix(e.Name(), ".rpm") {
			n++
		}
	}
	return len(in) == 0 && n == 0, fmt.Sprintf("incoming %d, spool %d", len(in), n)
}

// 200 files dropped at once while 4 `repoctl add` run through the socket:
// every good package lands and is in repodata; junk, truncated and
// duplicate-NEVRA-different-bytes files end in rejected/ with reasons.
func TestDaemonStorm(t *testing.T) {
	root, _ := newTestRoot(t, "")
	d := startDaemon(t, root)
	incoming := filepath.Join(root, "incoming")
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")

	// Originals of the duplicates, published before the storm.
	var inputs []stormInput
	var dupOrig []testrpm.Spec
	for i := 0; i < 5; i++ {
		s := helloSpec(fmt.Sprintf("dup%d", i))
		dupOrig = append(dupOrig, s)
		in := validInput(t, s)
		inputs = append(inputs, in)
		dropFile(t, incoming, in.name, in.body)
	}
	waitFor(t, time.Minute, "the duplicates' originals", func() (bool, string) {
		pk, err := repodataPackages(repoDir)
		return err == nil && len(pk) == 5, fmt.Sprint(len(pk), err)
	})

	// The storm: 183 good, 12 junk/truncated, 5 same NEVRA different bytes.
	stage := t.TempDir()
	var storm []stormInput
	for i := 0; i < 183; i++ {
		storm = append(storm, validInput(t, testrpm.Small(i)))
	}
	storm = append(storm, junkInputs("s", 12)...)
	for i, s := range dupOrig {
		s.Files = append(s.Files, testrpm.File{Name: "/usr/share/" + s.Name + "/EXTRA", Body: []byte("different bytes")})
		in := validInput(t, s)
		in.name = fmt.Sprintf("dup%d-rebuilt.rpm", i)
		in.nvra, in.reject = "", "duplicate-nevra"
		storm = append(storm, in)
	}
	if len(storm) != 200 {
		t.Fatalf("storm has %d files", len(storm))
	}
	rand.Shuffle(len(storm), func(i, j int) { storm[i], storm[j] = storm[j], storm[i] })
	for _, in := range storm {
		if err := os.WriteFile(filepath.Join(stage, in.name), in.body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Four CLI adds of 10 packages each, from the user's own directory.
	addDir := t.TempDir()
	var adds [4][]string
	var addInputs []stormInput
	for i := 0; i < 40; i++ {
		in := validInput(t, testrpm.Small(1000+i))
		p := filepath.Join(addDir, in.name)
		if err := os.WriteFile(p, in.body, 0o644); err != nil {
			t.Fatal(err)
		}
		adds[i%4] = append(adds[i%4], p)
		addInputs = append(addInputs, in)
	}

	var wg sync.WaitGroup
	addErrs := make([]string, 4)
	for i := range adds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, stderr, code := runCLI(t, root, append([]string{"add"}, adds[i]...)...)
			if code != 0 || strings.Contains(strings.ToLower(stderr), "locked") {
				addErrs[i] = fmt.Sprintf("add %d: exit %d\n%s\n%s", i, code, out, stderr)
			}
		}()
	}
	for _, in := range storm {
		if err := os.Rename(filepath.Join(stage, in.name), filepath.Join(incoming, in.name)); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for _, e := range addErrs {
		if e != "" {
			t.Error(e)
		}
	}
	inputs = append(append(inputs, storm...), addInputs...)
	want := 0
	for _, in := range inputs {
		if in.nvra != "" {
			want++
		}
	}
	waitFor(t, 3*time.Minute, "the storm to drain", func() (bool, string) {
		ok, state := drained(root)
		pk, err := repodataPackages(repoDir)
		return ok && err == nil && len(pk) == want, fmt.Sprintf("%s; repodata %d/%d %v", state, len(pk), want, err)
	})
	checkAccounted(t, root, inputs)
	for _, p := range append(adds[0], adds[1]...) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("add changed the caller's file: %v", err)
		}
	}
	// How many batches the storm took depends on how the machine kept up,
	// so it is only logged: the outcome of every input is what is
	// asserted here, and coalescing has its own test
	// (TestWatcherBurstCoalesces).
	pubs := strings.Count(d.log(), `"msg":"ingest batch"`)
	t.Logf("%d inputs (%d published) in %d drop-in batches", len(inputs), want, pubs)
	d.stop()
}

// kill -9 of the daemon at random moments of a storm, then a restart:
// every accepted package is in the repository and its repodata, every
// other file is in incoming/ (then ingested) or in rejected/, and dnf reads
// the final repodata.
func TestDaemonKill9(t *testing.T) {
	needTools(t, "dnf")
	root, url := newTestRoot(t, "")
	incoming := filepath.Join(root, "incoming")
	repoDir := filepath.Join(root, "repo", "main", "staging", "el", "9", "x86_64")
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("REPOCTL_KILL_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (REPOCTL_KILL_SEED=%d repeats the delays)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	const trials = 22
	var inputs []stormInput
	next := 0
	kills := map[string]int{}
	for trial := 0; trial <= trials; trial++ {
		d := startDaemon(t, root)
		// Whatever the last kill interrupted is finished now.
		waitFor(t, 2*time.Minute, fmt.Sprintf("trial %d: recovery to drain", trial), func() (bool, string) {
			return drained(root)
		})
		if trial > 0 {
			checkAccounted(t, root, inputs)
			if t.Failed() {
				t.Fatalf("after kill %d (%s)", trial, strings.Join(sortedKillNotes(kills), ", "))
			}
		}
		if trial == trials {
			d.stop()
			break
		}
		// A storm of 30: 27 good packages and 3 bad files.
		var batch []stormInput
		for i := 0; i < 27; i++ {
			batch = append(batch, validInput(t, testrpm.Small(2000+next)))
			next++
		}
		batch = append(batch, junkInputs(fmt.Sprint(trial), 3)...)
		inputs = append(inputs, batch...)
		logStart := len(d.log())
		for _, in := range batch {
			dropFile(t, incoming, in.name, in.body)
		}
		// Every third kill waits for the signer's temporary files, every
		// third for the publisher's new generation, so that both states
		// are hit whatever the machine's speed; the rest land at random
		// (a batch of 30 takes a few hundred ms here).
		var delay time.Duration
		aimed := ""
		switch trial % 3 {
		case 1:
			aimed = "signing"
			waitUntil(30*time.Second, func() bool { return signing(root) })
		case 2:
			aimed = "publishing"
			waitUntil(30*time.Second, func() bool { return publishing(repoDir) })
		default:
			delay = time.Duration(rng.IntN(250)) * time.Millisecond
			if trial%5 == 4 {
				delay = time.Duration(250+rng.IntN(1000)) * time.Millisecond
			}
			time.Sleep(delay)
		}
		hitSigning, hitPublishing := signing(root), publishing(repoDir)
		d.kill9()
		// Note what the kill interrupted, for the failure message.
		_, state := drained(root)
		log := d.log()
		if len(log) >= logStart {
			log = log[logStart:]
		}
		note := "before pickup"
		switch {
		case aimed == "signing" && hitSigning:
			note = "signing"
		case aimed == "publishing" && hitPublishing:
			note = "publishing"
		case strings.Contains(log, `"msg":"ingest batch"`):
			note = "after batch"
		case strings.Contains(log, `"msg":"published"`):
			note = "after publish"
		case !strings.Contains(state, "spool 0"):
			note = "in pipeline"
		}
		kills[note]++
		t.Logf("trial %d: kill -9 after %v (%s: %s)", trial, delay, note, state)
		// Right after the kill, the repodata clients see is consistent, and
		// every file of this storm is somewhere: still in incoming/, in the
		// spool (journaled), in rejected/, or placed in the repository.
		if _, err := repodataPackages(repoDir); err != nil {
			t.Fatalf("trial %d: repodata after kill -9: %v", trial, err)
		}
		found := 0
		for _, in := range batch {
			for _, p := range []string{filepath.Join(incoming, in.name), filepath.Join(root, "rejected", in.name), filepath.Join(repoDir, in.name)} {
				if _, err := os.Stat(p); err == nil {
					found++
					break
				}
			}
		}
		spooled := 0
		for _, n := range listDir(t, filepath.Join(root, "spool")) {
			if strings.HasSuffix(n, ".rpm") {
				spooled++
			}
		}
		if found+spooled < len(batch) {
			t.Fatalf("trial %d: after kill -9 only %d of %d files found (+%d in spool)", trial, found, len(batch), spooled)
		}
	}
	// dnf reads the final state with both checks on.
	d := startDaemon(t, root)
	defer d.stop()
	repofile, stderr, code := runCLI(t, root, "repofile", "--channel", "staging")
	if code != 0 {
		t.Fatalf("repofile: exit %d: %s", code, stderr)
	}
	reposd := t.TempDir()
	if err := os.WriteFile(filepath.Join(reposd, "repoctl.repo"), []byte(repofile), 0o644); err != nil {
		t.Fatal(err)
	}
	installroot := t.TempDir()
	out, err := exec.Command("dnf", "-y", "-q", "--installroot", installroot, "--releasever", "9", "--forcearch", "x86_64",
		"--setopt=reposdir="+reposd, "--setopt=cachedir="+filepath.Join(installroot, "cache"),
		"--repo", "main-staging-el", "list", "--available").CombinedOutput()
	if err != nil {
		t.Fatalf("dnf list from %s: %v\n%s", url, err, out)
	}
	want := 0
	for _, in := range inputs {
		if in.nvra != "" {
			want++
			name := strings.SplitN(in.nvra, "-", 2)[0]
			if !strings.Contains(string(out), name+".x86_64") {
				t.Errorf("dnf list lacks %s", in.nvra)
			}
		}
	}
	t.Logf("%d kills (%v); dnf lists %d packages", trials, kills, want)
	if kills["signing"] == 0 || kills["publishing"] == 0 {
		t.Errorf("kills landed %v: want at least one while signing and one while publishing", kills)
	}
}

func sortedKillNotes(m map[string]int) []string {
	var out []string
	for k, v := range m {
		out = append(out, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(out)
	return out
}

// SIGTERM in the middle of a batch: the daemon lets the batch finish (or
// journals it), exits 0, and after a restart every file is accounted for.
func TestDaemonSIGTERMMidBatch(t *testing.T) {
	root, _ := newTestRoot(t, "")
	d := startDaemon(t, root)
	var inputs []stormInput
	for i := 0; i < 27; i++ {
		inputs = append(inputs, validInput(t, testrpm.Small(5000+i)))
	}
	inputs = append(inputs, junkInputs("term", 3)...)
	for _, in := range inputs {
		dropFile(t, filepath.Join(root, "incoming"), in.name, in.body)
	}
	// The signal comes while the batch is signing.
	waitUntil(time.Minute, func() bool { return signing(root) })
	if !signing(root) {
		t.Fatal("never saw the batch signing")
	}
	d.stop() // fails the test unless the exit is clean
	log := d.log()
	if !strings.Contains(log, `"msg":"stopped"`) {
		t.Error("daemon log has no clean stop")
	}
	// The batch in flight was let finish within the grace: it ends after
	// the stop began.
	if stop, done := strings.Index(log, `"msg":"stopping"`), strings.LastIndex(log, `"msg":"ingest batch"`); stop < 0 || done < stop {
		t.Errorf("SIGTERM did not land mid-batch (stopping at %d, batch done at %d)", stop, done)
	}
	d = startDaemon(t, root)
	waitFor(t, time.Minute, "the batch to drain after restart", func() (bool, string) { return drained(root) })
	checkAccounted(t, root, inputs)
	d.stop()
}

// waitUntil polls cond as fast as it can, up to timeout: the windows it
// looks for last milliseconds.
func waitUntil(timeout time.Duration, cond func() bool) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		if cond() {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// signing reports whether the signer is rewriting a spool file (its
// temporary files are hidden .tmp files beside them).
func signing(root string) bool {
	ents, err := os.ReadDir(filepath.Join(root, "spool"))
	if err != nil {
		return false // no spool yet: nothing is being signed
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), ".tmp") {
			return true
		}
	}
	return false
}

// publishing reports whether a new repodata generation is being built.
func publishing(repoDir string) bool {
	_, err := os.Stat(filepath.Join(repoDir, ".repodata.new"))
	return err == nil
}
