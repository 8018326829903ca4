package clusterapi

import (
	"sort"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/state"
)

// swapsView is GET /v1/cluster/swaps.
type swapsView struct {
	Object string `json:"object"`
	// Enabled: this edge runs model swapping (swap.enabled).
	Enabled bool `json:"enabled"`
	// Controller is the edge holding the swap lease ("" when none).
	Controller string `json:"controller"`
	// Services is the controller's state per service: the command in
	// flight, the swap under way, the cooldown.
	Services []*fleet.SwapControl `json:"services"`
	// Data are the recent decisions and outcomes, newest first.
	Data []fleet.SwapRecord `json:"data"`
}

// swaps answers GET /v1/cluster/swaps[?limit=N]: recent swap decisions
// (sent, refused by the hard limits, with the policy's reason) and their
// outcomes (done, failed with the upstream's error, expired), newest
// first, with the controller's per-service state.
func (a *API) swaps(ctx *fasthttp.RequestCtx) {
	n := state.SwapLogMax
	if l := ctx.QueryArgs().Peek("limit"); len(l) > 0 {
		v, err := strconv.Atoi(string(l))
		if err != nil || v < 1 {
			writeError(ctx, fasthttp.StatusBadRequest, "invalid_request_error", "invalid_value", "limit", "limit must be a positive integer")
			return
		}
		n = min(v, state.SwapLogMax)
	}
	c, cancel := opCtx(ctx)
	defer cancel()
	recs, err := a.d.Store.SwapRecords(c, n)
	if err != nil {
		edge.WriteError(ctx, err)
		return
	}
	ctl, err := a.d.Store.SwapControls(c)
	if err != nil {
		edge.WriteError(ctx, err)
		return
	}
	holder, err := a.d.Store.LeaseHolder(c, state.SwapLease)
	if err != nil {
		edge.WriteError(ctx, err)
		return
	}
	v := swapsView{Object: "list", Enabled: a.d.Swap != nil && a.d.Swap.Enabled, Controller: holder, Data: recs, Services: []*fleet.SwapControl{}}
	for _, s := range ctl {
		v.Services = append(v.Services, s)
	}
	sort.Slice(v.Services, func(i, j int) bool { return v.Services[i].Service < v.Services[j].Service })
	if v.Data == nil {
		v.Data = []fleet.SwapRecord{}
	}
	writeJSON(ctx, fasthttp.StatusOK, v)
}
