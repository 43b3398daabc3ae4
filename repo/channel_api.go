package repo

import "context"

// The control-socket side of channel versions (channel.go).
const (
	apiChannelLog      = "channel-log"
	apiChannelShow     = "channel-show"
	apiChannelDiff     = "channel-diff"
	apiChannelRollback = "channel-rollback"
	apiPrune           = "prune"
)

// serveAPI registers one method whose request and result are plain JSON.
func serveAPI[Req any, Res any](handle func(string, func(context.Context, []byte) (any, error)), decode func([]byte, any) error,
	name string, fn func(context.Context, Req) (Res, error)) {
	handle(name, func(ctx context.Context, body []byte) (any, error) {
		var req Req
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return fn(ctx, req)
	})
}

func handleChannels(svc socketService, handle func(string, func(context.Context, []byte) (any, error)), decode func([]byte, any) error) {
	serveAPI(handle, decode, apiChannelLog, svc.ChannelLog)
	serveAPI(handle, decode, apiChannelShow, svc.ChannelShow)
	serveAPI(handle, decode, apiChannelDiff, svc.ChannelDiff)
	serveAPI(handle, decode, apiChannelRollback, svc.ChannelRollback)
	serveAPI(handle, decode, apiPrune, svc.Prune)
}

// callAPI is the client side of serveAPI.
func callAPI[Res any](ctx context.Context, c *Client, name string, req any) (Res, error) {
	var res Res
	err := c.call(ctx, name, req, &res)
	return res, err
}

func (c *Client) ChannelLog(ctx context.Context, o ChannelLogOptions) ([]ChannelVersion, error) {
	return callAPI[[]ChannelVersion](ctx, c, apiChannelLog, o)
}

func (c *Client) ChannelShow(ctx context.Context, o ChannelShowOptions) (*ChannelSnapshot, error) {
	return callAPI[*ChannelSnapshot](ctx, c, apiChannelShow, o)
}

func (c *Client) ChannelDiff(ctx context.Context, o ChannelDiffOptions) (*ChannelDiff, error) {
	return callAPI[*ChannelDiff](ctx, c, apiChannelDiff, o)
}

func (c *Client) ChannelRollback(ctx context.Context, r ChannelRollbackRequest) (*ChannelChange, error) {
	return callAPI[*ChannelChange](ctx, c, apiChannelRollback, r)
}

func (c *Client) Prune(ctx context.Context, r PruneRequest) (*PruneResult, error) {
	return callAPI[*PruneResult](ctx, c, apiPrune, r)
}
