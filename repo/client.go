package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/repoctl/repoctl/repo/input"
	"github.com/repoctl/repoctl/repo/serve"
)

// Client is a Service that talks to a running daemon over its control
// socket. It holds no lock and no database handle: the daemon does the
// work, so a CLI and a daemon never fight over the store.
type Client struct {
	socket string
	hc     *http.Client
	// progress, from Connect's WithProgress, counts the files of an Add
	// as the daemon answers each request (the daemon streams nothing).
	progress Progress
}

var _ Service = (*Client)(nil)

// Dial connects to the daemon's control socket and checks that it answers.
// It fails fast (within timeout) when no daemon listens.
func Dial(ctx context.Context, socket string, timeout time.Duration) (*Client, error) {
	d := net.Dialer{Timeout: timeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    2,
		IdleConnTimeout: 30 * time.Second,
	}
	c := &Client{socket: socket, hc: &http.Client{Transport: tr}}
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var p pingReply
	if err := c.call(pctx, apiPing, nil, &p); err != nil {
		tr.CloseIdleConnections()
		return nil, fmt.Errorf("connecting to daemon at %q: %w", socket, err)
	}
	return c, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

// remoteError is an error that happened in the daemon. Its message is the
// daemon's; errors.Is sees the sentinels the daemon reported.
type remoteError struct {
	msg       string
	sentinels []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.sentinels }

func fromWire(w *wireError) error {
	if w == nil {
		return nil
	}
	e := &remoteError{msg: w.Message}
	known := wireSentinels()
	for _, s := range w.Sentinels {
		for _, k := range known {
			if k.Error() == s {
				e.sentinels = append(e.sentinels, k)
			}
		}
	}
	return e
}

// call POSTs req to method and decodes the result into res (may be nil).
// Both a result and an error can come back (Add with rejected files).
func (c *Client) call(ctx context.Context, method string, req, res any) error {
	var body io.Reader = http.NoBody
	if req != nil {
		b, err := json.Marshal(req)
		if err != nil {
			return fmt.Errorf("encoding %s request: %w", method, err)
		}
		body = bytes.NewReader(b)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://repoctl"+apiPrefix+method, body)
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hreq)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("daemon %s: %w", method, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("daemon %s: HTTP %s: %s", method, resp.Status, bytes.TrimSpace(msg))
	}
	var reply wireReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<30)).Decode(&reply); err != nil {
		return fmt.Errorf("daemon %s: decoding reply: %w", method, err)
	}
	if res != nil && len(reply.Result) > 0 && string(reply.Result) != "null" {
		if err := json.Unmarshal(reply.Result, res); err != nil {
			return fmt.Errorf("daemon %s: decoding result: %w", method, err)
		}
	}
	return fromWire(reply.Error)
}

// Add opens each file itself, with the user's rights, and passes the open
// descriptors to the daemon: the daemon never opens a path for a client.
// A file the user cannot open is reported as rejected here, without
// troubling the daemon. Large adds go in requests of serve.MaxPassFiles.
func (c *Client) Add(ctx context.Context, paths []string, o AddOptions) ([]AddResult, error) {
	o.Move = false
	out := make([]AddResult, 0, len(paths))
	p, _ := c.progress.(StepProgress)
	if p != nil {
		p.Stage("adding", len(paths))
	}
	for len(paths) > 0 {
		n := min(len(paths), serve.MaxPassFiles)
		res, err := c.addChunk(ctx, paths[:n], o)
		out = append(out, res...)
		if err != nil {
			return out, err
		}
		if p != nil {
			p.Step(n)
		}
		paths = paths[n:]
	}
	return out, nil
}

func (c *Client) addChunk(ctx context.Context, paths []string, o AddOptions) ([]AddResult, error) {
	results := make([]AddResult, len(paths))
	var files []*os.File
	var names []string
	var slot []int // results index of each file sent
	defer func() { closeFiles(files) }()
	for i, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			abs = p
		}
		results[i] = AddResult{Path: abs}
		f, err := input.Open(abs, false)
		if err != nil {
			results[i].Action = ActionRejected
			results[i].Reason = reasonUnreadable + ": " + escapeText(err.Error())
			continue
		}
		files = append(files, f)
		names = append(names, abs)
		slot = append(slot, i)
	}
	if len(files) == 0 {
		// The daemon is still asked, with nothing: a standby refuses
		// before anything is read, and that, not a missing file, is why
		// nothing was done (exit 4, not 3).
		var none []AddResult
		return results, c.callWithFiles(ctx, apiAdd, addRequest{Options: o}, &none, nil)
	}
	var res []AddResult
	err := c.callWithFiles(ctx, apiAdd, addRequest{Names: names, Options: o}, &res, files)
	if err == nil && len(res) != len(files) {
		err = fmt.Errorf("daemon add: %d results for %d files", len(res), len(files))
	}
	if err != nil && len(res) != len(files) {
		return nil, err
	}
	for k, r := range res {
		results[slot[k]] = r
	}
	return results, err
}

// callWithFiles is call on a connection of its own whose first write
// carries files.
func (c *Client) callWithFiles(ctx context.Context, method string, req, res any, files []*os.File) error {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, "unix", c.socket)
			if err != nil {
				return nil, err
			}
			return serve.SendFiles(conn.(*net.UnixConn), files), nil
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	one := &Client{socket: c.socket, hc: &http.Client{Transport: tr}}
	return one.call(ctx, method, req, res)
}

func (c *Client) List(ctx context.Context, o ListOptions) ([]PackageRecord, error) {
	var res []PackageRecord
	err := c.call(ctx, apiList, o, &res)
	return res, err
}

func (c *Client) Status(ctx context.Context) (*Status, error) {
	var res Status
	if err := c.call(ctx, apiStatus, nil, &res); err != nil {
		return nil, err
	}
	res.Daemon = true
	return &res, nil
}

func (c *Client) History(ctx context.Context, o HistoryOptions) ([]Event, error) {
	var res []Event
	err := c.call(ctx, apiHistory, o, &res)
	return res, err
}

func (c *Client) Remove(ctx context.Context, nevra string, o RemoveOptions) (*RemoveResult, error) {
	var res RemoveResult
	if err := c.call(ctx, apiRemove, removeRequest{NEVRA: nevra, Options: o}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) Show(ctx context.Context, nevra string, o ShowOptions) (*ShowResult, error) {
	var res ShowResult
	if err := c.call(ctx, apiShow, showRequest{NEVRA: nevra, Options: o}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) Promote(ctx context.Context, r PromoteRequest) (*PromoteResult, error) {
	var res PromoteResult
	if err := c.call(ctx, apiPromote, r, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) Restore(ctx context.Context, r *PromoteResult) error {
	if r == nil {
		return errors.New("repo: Restore of a nil PromoteResult")
	}
	return c.call(ctx, apiRestore, r, nil)
}

func (c *Client) RecordRollout(ctx context.Context, e RolloutEvent) error {
	return c.call(ctx, apiRollout, e, nil)
}

func (c *Client) RepoFile(ctx context.Context, o RepoFileOptions) (*RepoFileResult, error) {
	var res *RepoFileResult
	err := c.call(ctx, apiRepoFile, o, &res)
	return res, err
}

func (c *Client) Fsck(ctx context.Context, o FsckOptions) (*FsckReport, error) {
	var res FsckReport
	if err := c.call(ctx, apiFsck, o, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) Republish(ctx context.Context, o RepublishOptions) (*RepublishResult, error) {
	var res RepublishResult
	if err := c.call(ctx, apiRepublish, o, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) RotateKey(ctx context.Context, r KeyRotateRequest) (*KeyRotation, error) {
	var res *KeyRotation
	err := c.call(ctx, apiKeyRotate, r, &res)
	return res, err
}

func (c *Client) RetireKey(ctx context.Context, r KeyRetireRequest) (*KeyRetireResult, error) {
	var res KeyRetireResult
	if err := c.call(ctx, apiKeyRetire, r, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) KeyStatus(ctx context.Context) (*KeyStatus, error) {
	var res KeyStatus
	if err := c.call(ctx, apiKeyStatus, nil, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// AdvisoryAdd reads req.File itself, with the user's rights, and sends
// its content: the daemon never opens a path for a client.
func (c *Client) AdvisoryAdd(ctx context.Context, req AdvisoryRequest) (*AdvisoryResult, error) {
	return c.advisoryFile(ctx, apiAdvisoryAdd, req, maxAdvisoryFile)
}

// AdvisoryImport reads req.File as AdvisoryAdd does.
func (c *Client) AdvisoryImport(ctx context.Context, req AdvisoryRequest) (*AdvisoryResult, error) {
	return c.advisoryFile(ctx, apiAdvisoryImport, req, maxImportFile)
}

func (c *Client) advisoryFile(ctx context.Context, method string, req AdvisoryRequest, max int) (*AdvisoryResult, error) {
	data, err := readAdvisoryInput(&req, max)
	if err != nil {
		return nil, err
	}
	req.Data = data
	var res AdvisoryResult
	if err := c.call(ctx, method, req, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) AdvisoryList(ctx context.Context, o AdvisoryOptions) ([]Advisory, error) {
	res := []Advisory{}
	if err := c.call(ctx, apiAdvisoryList, o, &res); err != nil {
		return nil, err
	}
	return res, nil
}

func (c *Client) AdvisoryShow(ctx context.Context, id string, o AdvisoryOptions) (*Advisory, error) {
	var res Advisory
	if err := c.call(ctx, apiAdvisoryShow, advisoryIDRequest{ID: id, Options: o}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (c *Client) AdvisoryRemove(ctx context.Context, id string, o AdvisoryOptions) (*AdvisoryResult, error) {
	var res AdvisoryResult
	if err := c.call(ctx, apiAdvisoryRemove, advisoryIDRequest{ID: id, Options: o}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
