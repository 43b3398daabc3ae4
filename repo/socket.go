package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/repoctl/repoctl/repo/serve"
)

// The control API is HTTP+JSON over the daemon's unix socket: one POST per
// Service method, at /v1/<method>. Every reply is a wireReply, which carries
// both the result and the error because Add returns per-file results
// together with ErrRejected.
const (
	apiPrefix    = "/v1/"
	maxAPIBody   = 16 << 20
	socketPerm   = 0o660
	apiPing      = "ping"
	apiAdd       = "add"
	apiList      = "list"
	apiStatus    = "status"
	apiHistory   = "history"
	apiRemove    = "remove"
	apiShow      = "show"
	apiPromote   = "promote"
	apiRestore   = "restore"
	apiRollout   = "rollout-event"
	apiRepoFile  = "repofile"
	apiFsck      = "fsck"
	apiRepublish = "republish"

	apiAdvisoryAdd    = "advisory-add"
	apiAdvisoryImport = "advisory-import"
	apiAdvisoryList   = "advisory-list"
	apiAdvisoryShow   = "advisory-show"
	apiAdvisoryRemove = "advisory-remove"
)

type wireError struct {
	Message string `json:"message"`
	// Sentinels are the messages of the sentinel errors err wraps, so that
	// the client can give errors.Is the same answers as in-process.
	Sentinels []string `json:"sentinels,omitempty"`
}

type wireReply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *wireError      `json:"error,omitempty"`
}

// addRequest comes with one descriptor per name (SCM_RIGHTS), in order.
// Names are the client's paths, used in messages and events only.
type addRequest struct {
	Names   []string   `json:"names"`
	Options AddOptions `json:"options"`
	// Paths is what a CLI older than descriptor passing sent; the daemon
	// refuses it rather than open paths with its own rights.
	Paths []string `json:"paths,omitempty"`
}

type removeRequest struct {
	NEVRA   string        `json:"nevra"`
	Options RemoveOptions `json:"options"`
}

type showRequest struct {
	NEVRA   string      `json:"nevra"`
	Options ShowOptions `json:"options"`
}

// advisoryIDRequest names one advisory for show and remove.
type advisoryIDRequest struct {
	ID      string          `json:"id"`
	Options AdvisoryOptions `json:"options"`
}

type pingReply struct {
	PID  int    `json:"pid"`
	Root string `json:"root"`
}

// wireSentinels are the errors that survive the socket with their identity.
func wireSentinels() []error {
	return append([]error{context.Canceled, context.DeadlineExceeded, ErrBadRequest}, Sentinels...)
}

func toWire(err error) *wireError {
	if err == nil {
		return nil
	}
	w := &wireError{Message: err.Error()}
	for _, s := range wireSentinels() {
		if errors.Is(err, s) {
			w.Sentinels = append(w.Sentinels, s.Error())
		}
	}
	return w
}

// quietAPI are the read-only methods, logged at debug level: a script
// polling them must not flood the log.
var quietAPI = map[string]bool{apiPing: true, apiStatus: true, apiList: true, apiHistory: true, apiRepoFile: true,
	apiKeyStatus: true, apiRejectedList: true, apiRejectedShow: true, apiShow: true,
	apiChannelLog: true, apiChannelShow: true, apiChannelDiff: true, apiCompsShow: true, apiAdvisoryList: true, apiAdvisoryShow: true}

// newSocketHandler serves svc. Requests other than ping wait for ready to be
// closed, so the daemon can listen before Resume has finished: a CLI that
// connects early waits instead of falling back to a lock it cannot get.
func newSocketHandler(svc socketService, root string, ready <-chan struct{}, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	handle := func(name string, fn func(ctx context.Context, body []byte) (any, error)) {
		fn = gateWrites(svc, name, fn) // a standby of an HA pair changes nothing
		mux.HandleFunc("POST "+apiPrefix+name, func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ctx := r.Context()
			// Every event made for this request names the kernel's peer
			// (peerCaller put it into the connection's context).
			caller := callerFrom(ctx)
			if _, ok := serve.PeerFrom(ctx); !ok || caller == nil {
				http.Error(w, "control requests come over the unix socket", http.StatusForbidden)
				return
			}
			if name != apiPing {
				select {
				case <-ready:
				case <-ctx.Done():
					return
				}
			}
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
			// Descriptors arrive with the request's first bytes; only add
			// takes them, every other request closes what came.
			files, ferr := serve.TakeFiles(ctx)
			if errors.Is(ferr, serve.ErrTooManyFiles) {
				ferr = fmt.Errorf("%w: more than %d descriptors in one request", ErrBadRequest, serve.MaxPassFiles)
			}
			if err == nil {
				err = ferr
			}
			var res any
			if err == nil {
				res, err = fn(withFiles(ctx, files), body)
			}
			closeFiles(files)
			reply := wireReply{Error: toWire(err)}
			if res != nil {
				if b, merr := json.Marshal(res); merr != nil {
					reply.Error = toWire(fmt.Errorf("encoding %s reply: %w", name, merr))
				} else {
					reply.Result = b
				}
			}
			w.Header().Set("Content-Type", "application/json")
			if err := json.NewEncoder(w).Encode(reply); err != nil {
				log.Warn("control socket: writing reply", "method", name, "err", err)
			}
			lvl := slog.LevelDebug
			if !quietAPI[name] {
				lvl = slog.LevelInfo
			}
			attrs := []any{"method", name, "caller", caller.String(), "took", time.Since(start).Round(time.Microsecond)}
			if err != nil {
				attrs = append(attrs, "err", err)
			}
			log.Log(ctx, lvl, "control request", attrs...)
		})
	}
	decode := func(body []byte, v any) error {
		if len(body) == 0 {
			return nil
		}
		if err := json.Unmarshal(body, v); err != nil {
			return fmt.Errorf("%w: decoding request: %v", ErrBadRequest, err)
		}
		return nil
	}
	handle(apiPing, func(ctx context.Context, body []byte) (any, error) {
		return pingReply{PID: os.Getpid(), Root: root}, nil
	})
	handle(apiAdd, func(ctx context.Context, body []byte) (any, error) {
		var req addRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		if len(req.Paths) > 0 {
			return nil, fmt.Errorf("%w: add by path is no longer served (the daemon only reads files the client passes open); use a repoctl CLI of the daemon's version", ErrBadRequest)
		}
		files := filesFrom(ctx)
		if len(files) != len(req.Names) {
			return nil, fmt.Errorf("%w: add names %d files but %d descriptors came with it", ErrBadRequest, len(req.Names), len(files))
		}
		// A socket client's files are the user's and are never moved.
		return svc.AddFiles(ctx, files, req.Names, req.Options)
	})
	handle(apiList, func(ctx context.Context, body []byte) (any, error) {
		var o ListOptions
		if err := decode(body, &o); err != nil {
			return nil, err
		}
		return svc.List(ctx, o)
	})
	handle(apiStatus, func(ctx context.Context, body []byte) (any, error) {
		st, err := svc.Status(ctx)
		if st != nil {
			st.Daemon = true
		}
		return st, err
	})
	handle(apiHistory, func(ctx context.Context, body []byte) (any, error) {
		var o HistoryOptions
		if err := decode(body, &o); err != nil {
			return nil, err
		}
		return svc.History(ctx, o)
	})
	handle(apiRemove, func(ctx context.Context, body []byte) (any, error) {
		var req removeRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.Remove(ctx, req.NEVRA, req.Options)
	})
	handle(apiShow, func(ctx context.Context, body []byte) (any, error) {
		var req showRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.Show(ctx, req.NEVRA, req.Options)
	})
	handle(apiPromote, func(ctx context.Context, body []byte) (any, error) {
		var req PromoteRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.Promote(ctx, req)
	})
	handle(apiRestore, func(ctx context.Context, body []byte) (any, error) {
		var req PromoteResult
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return nil, svc.Restore(ctx, &req)
	})
	handle(apiRollout, func(ctx context.Context, body []byte) (any, error) {
		var e RolloutEvent
		if err := decode(body, &e); err != nil {
			return nil, err
		}
		return nil, svc.RecordRollout(ctx, e)
	})
	handle(apiFsck, func(ctx context.Context, body []byte) (any, error) {
		var o FsckOptions
		if err := decode(body, &o); err != nil {
			return nil, err
		}
		return svc.Fsck(ctx, o)
	})
	handle(apiRepublish, func(ctx context.Context, body []byte) (any, error) {
		var o RepublishOptions
		if err := decode(body, &o); err != nil {
			return nil, err
		}
		return svc.Republish(ctx, o)
	})
	handle(apiRepoFile, func(ctx context.Context, body []byte) (any, error) {
		var o RepoFileOptions
		if err := decode(body, &o); err != nil {
			return nil, err
		}
		return svc.RepoFile(ctx, o)
	})
	for name, fn := range map[string]func(context.Context, AdvisoryRequest) (*AdvisoryResult, error){
		apiAdvisoryAdd: svc.AdvisoryAdd, apiAdvisoryImport: svc.AdvisoryImport} {
		handle(name, func(ctx context.Context, body []byte) (any, error) {
			var req AdvisoryRequest
			if err := decode(body, &req); err != nil {
				return nil, err
			}
			if req.Data == nil {
				// The daemon reads no path a client names: the client
				// sends the file's content.
				return nil, fmt.Errorf("%w: %s without the file's content", ErrBadRequest, name)
			}
			return fn(ctx, req)
		})
	}
	handle(apiAdvisoryList, func(ctx context.Context, body []byte) (any, error) {
		var o AdvisoryOptions
		if err := decode(body, &o); err != nil {
			return nil, err
		}
		return svc.AdvisoryList(ctx, o)
	})
	handle(apiAdvisoryShow, func(ctx context.Context, body []byte) (any, error) {
		var req advisoryIDRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.AdvisoryShow(ctx, req.ID, req.Options)
	})
	handle(apiAdvisoryRemove, func(ctx context.Context, body []byte) (any, error) {
		var req advisoryIDRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return svc.AdvisoryRemove(ctx, req.ID, req.Options)
	})
	handleKeys(svc, handle, decode)
	handleRejected(svc, handle, decode)
	handleChannels(svc, handle, decode)
	handleComps(svc, handle, decode)
	return mux
}

// socketService is what the control socket serves: a Service that can
// also take files as descriptors.
type socketService interface {
	Service
	AddFiles(ctx context.Context, files []*os.File, names []string, o AddOptions) ([]AddResult, error)
}

// peerCaller is the control socket's connection context: the events of
// every request on it name the kernel's peer, looked up once per
// connection.
func peerCaller(ctx context.Context, p serve.Peer) context.Context {
	return withCaller(ctx, newCaller(p.UID, p.GID, p.PID))
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

type filesKey struct{}

func withFiles(ctx context.Context, files []*os.File) context.Context {
	return context.WithValue(ctx, filesKey{}, files)
}

func filesFrom(ctx context.Context) []*os.File {
	f, _ := ctx.Value(filesKey{}).([]*os.File)
	return f
}

// ErrBadRequest is a malformed control-socket request.
var ErrBadRequest = errors.New("repo: bad control request")
