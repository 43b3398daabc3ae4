package repo

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func (s *echoService) ChannelLog(ctx context.Context, o ChannelLogOptions) ([]ChannelVersion, error) {
	return []ChannelVersion{{Repo: o.Repo, Channel: o.Channel, Version: uint64(o.Limit), Cause: "echo"}}, nil
}

func (s *echoService) ChannelShow(ctx context.Context, o ChannelShowOptions) (*ChannelSnapshot, error) {
	return &ChannelSnapshot{ChannelVersion: ChannelVersion{Channel: o.Channel, Version: o.Version}, NEVRAs: []string{"a-1-1.noarch"}}, nil
}

func (s *echoService) ChannelDiff(ctx context.Context, o ChannelDiffOptions) (*ChannelDiff, error) {
	return &ChannelDiff{Channel: o.Channel, From: o.From, To: o.To}, nil
}

func (s *echoService) ChannelRollback(ctx context.Context, r ChannelRollbackRequest) (*ChannelChange, error) {
	return nil, fmt.Errorf("rolling back %s to %d: %w", r.Channel, r.To, ErrFilesGone)
}

func (s *echoService) Prune(ctx context.Context, r PruneRequest) (*PruneResult, error) {
	return &PruneResult{Repo: r.Repo, DryRun: r.DryRun, Channels: []PrunedChannel{{Channel: r.Channel, Rule: Retention{Keep: *r.Keep}}}}, nil
}

// The channel methods cross the socket with arguments, results and
// sentinel errors intact.
func TestSocketChannels(t *testing.T) {
	svc := &echoService{}
	ready := make(chan struct{})
	close(ready)
	c, err := Dial(context.Background(), startSocket(t, svc, ready), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log, err := c.ChannelLog(ctx, ChannelLogOptions{Repo: "main", Channel: "prod", Limit: 7})
	if err != nil || len(log) != 1 || log[0].Version != 7 || log[0].Channel != "prod" {
		t.Errorf("ChannelLog: %+v, %v", log, err)
	}
	snap, err := c.ChannelShow(ctx, ChannelShowOptions{Channel: "prod", Version: 3})
	if err != nil || snap.Version != 3 || len(snap.NEVRAs) != 1 {
		t.Errorf("ChannelShow: %+v, %v", snap, err)
	}
	d, err := c.ChannelDiff(ctx, ChannelDiffOptions{Channel: "prod", From: 2, To: 5})
	if err != nil || d.From != 2 || d.To != 5 {
		t.Errorf("ChannelDiff: %+v, %v", d, err)
	}
	keep := 3
	pr, err := c.Prune(ctx, PruneRequest{Repo: "main", Channel: "staging", Keep: &keep, DryRun: true})
	if err != nil || !pr.DryRun || len(pr.Channels) != 1 || pr.Channels[0].Rule.Keep != 3 {
		t.Errorf("Prune: %+v, %v", pr, err)
	}
	if _, err := c.ChannelRollback(ctx, ChannelRollbackRequest{Channel: "prod", To: 1}); !errors.Is(err, ErrFilesGone) {
		t.Errorf("ChannelRollback: err %v, want ErrFilesGone", err)
	}
}
