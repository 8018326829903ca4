package state

import "context"

// RefreshNow runs one lease refresh now (Run does it every lease TTL/3).
func (f *Inflight) RefreshNow(ctx context.Context) { f.refresh(ctx) }
