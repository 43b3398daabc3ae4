package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/repoctl/repoctl/metadata"
	"github.com/repoctl/repoctl/repo/serve"
)

// echoService records what reaches the daemon side so the test can check
// that the socket carries every method's arguments and results intact,
// including errors that must keep their sentinel identity.
type echoService struct {
	gotPaths  []string
	gotBodies []string // what the passed descriptors read
	gotAdd    AddOptions
	gotCaller *Caller
	gotEvent  RolloutEvent
	gotList   ListOptions
}

func (s *echoService) Add(ctx context.Context, paths []string, o AddOptions) ([]AddResult, error) {
	return nil, errors.New("Add over the socket must pass descriptors (AddFiles)")
}

func (s *echoService) AddFiles(ctx context.Context, files []*os.File, paths []string, o AddOptions) ([]AddResult, error) {
	s.gotPaths, s.gotAdd, s.gotCaller = paths, o, callerFrom(ctx)
	for _, f := range files {
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, err
		}
		s.gotBodies = append(s.gotBodies, string(b))
	}
	return []AddResult{
			{Path: paths[0], NEVRA: "a-0:1-1.el9.x86_64", Action: ActionAdded, KeyID: "0123456789abcdef", RepoPaths: []string{"main/staging/el/9/x86_64/a-1-1.el9.x86_64.rpm"}},
			{Path: paths[1], Action: ActionRejected, Reason: "not an RPM"},
		},
		fmt.Errorf("adding %q: %w", paths[1], ErrRejected)
}

func (s *echoService) List(ctx context.Context, o ListOptions) ([]PackageRecord, error) {
	s.gotList = o
	return []PackageRecord{{Repo: o.Repo, NEVRA: "a-0:1-1.el9.x86_64", Placements: []Placement{{Channel: "staging"}}, Added: time.Unix(1700000000, 0).UTC()}}, nil
}

func (s *echoService) Show(ctx context.Context, nevra string, o ShowOptions) (*ShowResult, error) {
	if nevra == "missing" {
		return nil, fmt.Errorf("showing %q: %w", nevra, ErrNotFound)
	}
	return &ShowResult{PackageRecord: PackageRecord{Repo: o.Repo, NEVRA: nevra, SHA256: "ab", Placements: []Placement{{Channel: "prod", Dir: "r/prod/el/9/x86_64"}}},
		Published:  []Publication{{Placement: Placement{Channel: "prod", Dir: "r/prod/el/9/x86_64"}, URL: "http://x/r/prod/el/9/x86_64/", Listed: true}},
		Events:     []Event{{Seq: 4, Action: "promote", Details: map[string]string{"nevras": nevra}}},
		Advisories: []string{"APP-1"}}, nil
}

func (s *echoService) Status(ctx context.Context) (*Status, error) {
	return &Status{Root: "/r", Packages: 3}, nil
}

func (s *echoService) History(ctx context.Context, o HistoryOptions) ([]Event, error) {
	if o.Verify {
		return nil, fmt.Errorf("event 7: %w", ErrTampered)
	}
	return []Event{{Seq: 1, Action: "add", Details: map[string]string{"k": "v"}}}, nil
}

func (s *echoService) Remove(ctx context.Context, nevra string, o RemoveOptions) (*RemoveResult, error) {
	if nevra == "missing" {
		return nil, fmt.Errorf("removing %q: %w", nevra, ErrNotFound)
	}
	return &RemoveResult{NEVRA: nevra, DryRun: o.DryRun}, nil
}

func (s *echoService) Promote(ctx context.Context, r PromoteRequest) (*PromoteResult, error) {
	return &PromoteResult{NEVRA: r.Package, To: r.To, Previous: "a-0:0.9-1.el9.x86_64"}, nil
}

func (s *echoService) Restore(ctx context.Context, r *PromoteResult) error {
	if r.NEVRA != "a" {
		return errors.New("restore got the wrong result")
	}
	return nil
}

func (s *echoService) RecordRollout(ctx context.Context, e RolloutEvent) error {
	if e.Kind != "started" {
		return errors.New("wrong event")
	}
	s.gotEvent = e
	return nil
}

func (s *echoService) RepoFile(ctx context.Context, o RepoFileOptions) (*RepoFileResult, error) {
	return &RepoFileResult{Channel: o.Channel, Dist: o.Dist, Sections: []RepoSection{{ID: "main", BaseURL: o.BaseURL}}}, nil
}

func (s *echoService) Fsck(ctx context.Context, o FsckOptions) (*FsckReport, error) {
	if len(o.Dirs) == 1 && o.Dirs[0] == "nowhere" {
		return nil, fmt.Errorf("%w: %q is not a repository directory", ErrBadOption, o.Dirs[0])
	}
	return &FsckReport{Dirs: o.Dirs, Packages: 2, Repair: o.Repair, Findings: []FsckFinding{
		{Kind: FsckStrayFile, Dir: o.Dirs[0], File: o.Dirs[0] + "/x.rpm", Message: "stray", Repairable: true, Repaired: o.Repair}}}, nil
}

func (s *echoService) Republish(ctx context.Context, o RepublishOptions) (*RepublishResult, error) {
	return &RepublishResult{DryRun: o.DryRun, Dirs: []RepublishedDir{{Dir: o.Dirs[0], Packages: 3, Changed: true, Revision: "17"}}}, nil
}

func (s *echoService) RotateKey(ctx context.Context, r KeyRotateRequest) (*KeyRotation, error) {
	if r.Resume {
		// A failed step returns the state reached along with the error.
		return &KeyRotation{OldKeyID: "a", NewKeyID: "b", Phase: phasePackages, Resigned: 1, Packages: 3},
			fmt.Errorf("%w: re-signing stopped", ErrRotationUnfinished)
	}
	return &KeyRotation{OldKeyID: "a", NewKeyID: "b", NewAlgorithm: r.Algo, Phase: phaseDone, Packages: 3, Resigned: 3,
		InPlace: 2, Rewritten: 1, DryRun: r.DryRun, By: string(r.Import)}, nil
}

func (s *echoService) RetireKey(ctx context.Context, r KeyRetireRequest) (*KeyRetireResult, error) {
	if r.KeyID == "busy" {
		return nil, fmt.Errorf("%w: %w", ErrKeyInUse, ErrRotationUnfinished)
	}
	return &KeyRetireResult{KeyID: r.KeyID, Served: []string{"b"}, DryRun: r.DryRun}, nil
}

func (s *echoService) KeyStatus(ctx context.Context) (*KeyStatus, error) {
	return &KeyStatus{Active: "b", Keys: []ServedKey{{KeyID: "b", Active: true, Packages: 2}, {KeyID: "a", Packages: 1}},
		Rotation: &KeyRotation{OldKeyID: "a", NewKeyID: "b", Phase: phaseRepodata}}, nil
}

func (s *echoService) RejectedList(ctx context.Context) ([]RejectedEntry, error) {
	return []RejectedEntry{{Name: "junk.rpm", Type: RejectedFile, Code: "invalid", Size: 5, Time: time.Unix(1700000000, 0).UTC()}}, nil
}

func (s *echoService) RejectedShow(ctx context.Context, name string) (*RejectedEntry, error) {
	if name != "junk.rpm" {
		return nil, fmt.Errorf("%w: no entry %q in rejected/", ErrBadOption, name)
	}
	return &RejectedEntry{Name: name, Code: "invalid", Reason: "invalid: not an RPM\nfile: /in/junk.rpm\n"}, nil
}

func (s *echoService) RejectedRetry(ctx context.Context, r RejectedRetryRequest) ([]AddResult, error) {
	s.gotCaller = callerFrom(ctx)
	return []AddResult{{Path: "/r/rejected/" + r.Names[0], Action: ActionRejected, Reason: "invalid: still junk", Rejected: "/r/rejected/" + r.Names[0]},
		{Path: "/r/rejected/" + r.Names[1], Action: ActionAdded, NEVRA: "a-1-1.el9.x86_64"}}, nil
}

func (s *echoService) RejectedPurge(ctx context.Context, r RejectedPurgeRequest) (*RejectedPurgeResult, error) {
	if _, err := ParseAge(r.OlderThan); err != nil {
		return nil, err
	}
	return &RejectedPurgeResult{Purged: []RejectedEntry{{Name: "old.rpm"}}, Kept: 2, OlderThan: r.OlderThan, DryRun: r.DryRun}, nil
}

func (s *echoService) CompsSet(ctx context.Context, r CompsSetRequest) (*CompsResult, error) {
	s.gotCaller = callerFrom(ctx)
	if _, err := metadata.ParseComps(r.XML); err != nil {
		return nil, fmt.Errorf("setting the comps file of %q: %w", r.Repo, err)
	}
	return &CompsResult{Repo: r.Repo, Action: CompsActionSet, DryRun: r.DryRun, Dirs: []string{"main/prod/el/9/x86_64"},
		Comps: &CompsInfo{Repo: r.Repo, Size: int64(len(r.XML)), Groups: []string{"g"}, Who: r.Who}}, nil
}

func (s *echoService) CompsShow(ctx context.Context, r CompsShowRequest) (*CompsInfo, error) {
	if r.Repo != "main" {
		return nil, fmt.Errorf("showing the comps file of %q: %w", r.Repo, ErrNoComps)
	}
	return &CompsInfo{Repo: r.Repo, XML: []byte("<comps/>"), Groups: []string{"g"}, Set: time.Unix(1700000000, 0).UTC()}, nil
}

func (s *echoService) CompsRemove(ctx context.Context, r CompsRemoveRequest) (*CompsResult, error) {
	return &CompsResult{Repo: r.Repo, Action: CompsActionRemoved, DryRun: r.DryRun, Dirs: []string{}}, nil
}

func startSocket(t *testing.T, svc socketService, ready chan struct{}) string {
	t.Helper()
	// unix socket paths are limited to 108 bytes; t.TempDir can be long.
	dir, err := os.MkdirTemp("", "sock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Error(err)
		}
	})
	path := filepath.Join(dir, "repoctl.sock")
	ln, err := serve.ListenSocket(path, socketPerm)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	srv := serve.NewSocketServer(newSocketHandler(svc, dir, ready, log), log, peerCaller)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- serve.Run(ctx, ln, srv, time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file left behind: %v", err)
		}
	})
	return path
}

func TestSocketRoundTrip(t *testing.T) {
	svc := &echoService{}
	ready := make(chan struct{})
	close(ready)
	path := startSocket(t, svc, ready)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	ctx := context.Background()
	c, err := Dial(ctx, path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	files := t.TempDir()
	a, b := filepath.Join(files, "rel.rpm"), filepath.Join(files, "junk")
	if err := os.WriteFile(a, []byte("first file"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("second file"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(files)
	res, err := c.Add(ctx, []string{"rel.rpm", b, filepath.Join(files, "missing.rpm")}, AddOptions{Repo: "main", Move: true})
	if !errors.Is(err, ErrRejected) || errors.Is(err, ErrNotFound) {
		t.Errorf("Add error %v: want ErrRejected only", err)
	}
	if len(res) != 3 || res[0].KeyID != "0123456789abcdef" || res[1].Reason != "not an RPM" {
		t.Errorf("Add results %+v", res)
	}
	// The file the client cannot open never reaches the daemon.
	if len(res) == 3 && (res[2].Action != ActionRejected || !strings.Contains(res[2].Reason, "no such file")) {
		t.Errorf("Add of a missing file: %+v", res[2])
	}
	if !reflect.DeepEqual(svc.gotPaths, []string{a, b}) {
		t.Errorf("daemon got names %v, want %v (absolute)", svc.gotPaths, []string{a, b})
	}
	if !reflect.DeepEqual(svc.gotBodies, []string{"first file", "second file"}) {
		t.Errorf("daemon read %q through the passed descriptors", svc.gotBodies)
	}
	if svc.gotAdd.Move || svc.gotAdd.Repo != "main" {
		t.Errorf("daemon got options %+v: Move must never cross the socket", svc.gotAdd)
	}
	if c := svc.gotCaller; c == nil || c.UID != uint32(os.Getuid()) || c.PID != int32(os.Getpid()) {
		t.Errorf("daemon saw caller %+v, want uid %d pid %d from SO_PEERCRED", c, os.Getuid(), os.Getpid())
	}

	lo := ListOptions{Repo: "r", Channel: "prod", Name: "a", Names: []string{"b*", "c?"}, Arch: "noarch", Release: "el/9"}
	list, err := c.List(ctx, lo)
	if err != nil || len(list) != 1 || list[0].Repo != "r" || !list[0].Added.Equal(time.Unix(1700000000, 0)) || !list[0].InChannel("staging") {
		t.Errorf("List = %+v, %v", list, err)
	}
	if !reflect.DeepEqual(svc.gotList, lo) {
		t.Errorf("List options %+v reached the daemon as %+v", lo, svc.gotList)
	}
	sh, err := c.Show(ctx, "a-1-1.el9.x86_64", ShowOptions{Repo: "r"})
	if err != nil || sh.Repo != "r" || sh.NEVRA != "a-1-1.el9.x86_64" || sh.SHA256 != "ab" || len(sh.Placements) != 1 ||
		len(sh.Published) != 1 || !sh.Published[0].Listed || sh.Published[0].Dir != "r/prod/el/9/x86_64" || sh.Published[0].URL == "" ||
		len(sh.Events) != 1 || sh.Events[0].Details["nevras"] != sh.NEVRA || !reflect.DeepEqual(sh.Advisories, []string{"APP-1"}) {
		t.Errorf("Show = %+v, %v", sh, err)
	}
	if _, err := c.Show(ctx, "missing", ShowOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Show error %v, want ErrNotFound", err)
	}
	st, err := c.Status(ctx)
	if err != nil || !st.Daemon || st.Packages != 3 {
		t.Errorf("Status = %+v, %v", st, err)
	}
	ev, err := c.History(ctx, HistoryOptions{})
	if err != nil || !reflect.DeepEqual(ev[0].Details, map[string]string{"k": "v"}) {
		t.Errorf("History = %+v, %v", ev, err)
	}
	if _, err := c.History(ctx, HistoryOptions{Verify: true}); !errors.Is(err, ErrTampered) || !strings.Contains(err.Error(), "event 7") {
		t.Errorf("History verify error %v", err)
	}
	if _, err := c.Remove(ctx, "missing", RemoveOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove error %v, want ErrNotFound", err)
	}
	rr, err := c.Remove(ctx, "x", RemoveOptions{DryRun: true})
	if err != nil || !rr.DryRun || rr.NEVRA != "x" {
		t.Errorf("Remove = %+v, %v", rr, err)
	}
	pr, err := c.Promote(ctx, PromoteRequest{Package: "a", To: "prod"})
	if err != nil || pr.To != "prod" || pr.Previous == "" {
		t.Errorf("Promote = %+v, %v", pr, err)
	}
	if err := c.Restore(ctx, pr); err != nil {
		t.Errorf("Restore: %v", err)
	}
	if err := c.RecordRollout(ctx, RolloutEvent{Kind: "started", Rollout: "r1", Host: "app1"}); err != nil {
		t.Errorf("RecordRollout: %v", err)
	}
	if svc.gotEvent.Host != "app1" || svc.gotEvent.Rollout != "r1" {
		t.Errorf("RecordRollout carried %+v", svc.gotEvent)
	}
	if err := c.RecordRollout(ctx, RolloutEvent{Kind: "other", Rollout: "r1"}); err == nil || err.Error() != "wrong event" {
		t.Errorf("RecordRollout error %v", err)
	}
	rf, err := c.RepoFile(ctx, RepoFileOptions{BaseURL: "http://x/", Channel: "prod", Dist: "fc"})
	if err != nil || rf.Channel != "prod" || rf.Dist != "fc" || len(rf.Sections) != 1 || rf.Sections[0].BaseURL != "http://x/" {
		t.Errorf("RepoFile = %+v, %v", rf, err)
	}
	fr, err := c.Fsck(ctx, FsckOptions{Dirs: []string{"main/prod/el/9/x86_64"}, Repair: true})
	if err != nil || !fr.Repair || fr.Packages != 2 || len(fr.Findings) != 1 || fr.Findings[0].Kind != FsckStrayFile ||
		!fr.Findings[0].Repaired || fr.Findings[0].File != "main/prod/el/9/x86_64/x.rpm" || fr.Err() != nil {
		t.Errorf("Fsck = %+v, %v", fr, err)
	}
	if _, err := c.Fsck(ctx, FsckOptions{Dirs: []string{"nowhere"}}); !errors.Is(err, ErrBadOption) {
		t.Errorf("Fsck of an unknown directory: %v, want ErrBadOption", err)
	}
	pb, err := c.Republish(ctx, RepublishOptions{Dirs: []string{"main/staging"}, DryRun: true})
	if err != nil || !pb.DryRun || len(pb.Dirs) != 1 || pb.Dirs[0] != (RepublishedDir{Dir: "main/staging", Packages: 3, Changed: true, Revision: "17"}) {
		t.Errorf("Republish = %+v, %v", pb, err)
	}
	kr, err := c.RotateKey(ctx, KeyRotateRequest{Algo: "ed25519", Import: []byte("key bytes"), DryRun: true})
	if err != nil || kr.NewAlgorithm != "ed25519" || !kr.DryRun || kr.By != "key bytes" || kr.Rewritten != 1 || kr.Phase != phaseDone {
		t.Errorf("RotateKey = %+v, %v", kr, err)
	}
	kr, err = c.RotateKey(ctx, KeyRotateRequest{Resume: true})
	if !errors.Is(err, ErrRotationUnfinished) || kr == nil || kr.Resigned != 1 || kr.Packages != 3 {
		t.Errorf("RotateKey --resume = %+v, %v; want the state reached and ErrRotationUnfinished", kr, err)
	}
	rt, err := c.RetireKey(ctx, KeyRetireRequest{KeyID: "a", DryRun: true})
	if err != nil || rt.KeyID != "a" || !rt.DryRun || len(rt.Served) != 1 {
		t.Errorf("RetireKey = %+v, %v", rt, err)
	}
	if _, err := c.RetireKey(ctx, KeyRetireRequest{KeyID: "busy"}); !errors.Is(err, ErrKeyInUse) || !errors.Is(err, ErrRotationUnfinished) {
		t.Errorf("RetireKey of a needed key: %v, want ErrKeyInUse and ErrRotationUnfinished", err)
	}
	ks, err := c.KeyStatus(ctx)
	if err != nil || ks.Active != "b" || len(ks.Keys) != 2 || ks.Keys[1].Packages != 1 || ks.Rotation == nil || ks.Rotation.Phase != phaseRepodata {
		t.Errorf("KeyStatus = %+v, %v", ks, err)
	}
	comps := []byte("<comps><group><id>g</id><name>G</name></group></comps>")
	cr, err := c.CompsSet(ctx, CompsSetRequest{Repo: "main", XML: comps, Who: "alice", DryRun: true})
	if err != nil || cr.Action != CompsActionSet || !cr.DryRun || cr.Comps == nil || cr.Comps.Size != int64(len(comps)) || cr.Comps.Who != "alice" || len(cr.Dirs) != 1 {
		t.Errorf("CompsSet = %+v, %v", cr, err)
	}
	if svc.gotCaller == nil || svc.gotCaller.UID != uint32(os.Getuid()) {
		t.Errorf("CompsSet reached the daemon with caller %+v", svc.gotCaller)
	}
	// A validation error keeps both sentinels across the socket.
	_, err = c.CompsSet(ctx, CompsSetRequest{Repo: "main", XML: []byte(`<!DOCTYPE comps [ <!ENTITY x "y"> ]><comps/>`)})
	if !errors.Is(err, metadata.ErrBadComps) || !errors.Is(err, metadata.ErrCompsEntity) || errors.Is(err, metadata.ErrCompsID) {
		t.Errorf("CompsSet of an entity declaration: %v, want ErrBadComps and ErrCompsEntity", err)
	}
	if _, err := c.CompsSet(ctx, CompsSetRequest{Repo: "main", XML: make([]byte, metadata.MaxCompsSize+1)}); !errors.Is(err, metadata.ErrCompsTooLarge) {
		t.Errorf("CompsSet of an oversized file: %v", err)
	}
	ci, err := c.CompsShow(ctx, CompsShowRequest{Repo: "main"})
	if err != nil || string(ci.XML) != "<comps/>" || len(ci.Groups) != 1 || !ci.Set.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("CompsShow = %+v, %v", ci, err)
	}
	if _, err := c.CompsShow(ctx, CompsShowRequest{Repo: "other"}); !errors.Is(err, ErrNoComps) {
		t.Errorf("CompsShow of a repository without comps: %v, want ErrNoComps", err)
	}
	if cr, err := c.CompsRemove(ctx, CompsRemoveRequest{Repo: "main", DryRun: true}); err != nil || cr.Action != CompsActionRemoved || !cr.DryRun {
		t.Errorf("CompsRemove = %+v, %v", cr, err)
	}
}

// Before the daemon is ready (Resume running) requests wait rather than
// fail, so a CLI never falls back to the lock the daemon holds.
func TestSocketWaitsForReady(t *testing.T) {
	ready := make(chan struct{})
	path := startSocket(t, &echoService{}, ready)
	ctx := context.Background()
	c, err := Dial(ctx, path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := c.Status(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Status before ready: %v, want it to wait", err)
	}
	go func() { time.Sleep(200 * time.Millisecond); close(ready) }()
	if _, err := c.Status(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestDialNoDaemon(t *testing.T) {
	if _, err := Dial(context.Background(), filepath.Join(t.TempDir(), "none.sock"), time.Second); err == nil {
		t.Fatal("Dial to a missing socket succeeded")
	}
}
