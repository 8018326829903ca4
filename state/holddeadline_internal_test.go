package state

import (
	"testing"
	"time"
)

// TestHoldDeadline: a node's later record never puts its deadline back
// while the node keeps its TTL (a PTTL read after a metrics event that
// arrived late estimates an earlier expiry); a changed TTL is taken as is.
func TestHoldDeadline(t *testing.T) {
	t0 := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	rec := func(ttl int, d time.Duration) NodeRecord {
		r := NodeRecord{Deadline: t0.Add(d)}
		r.State.TTLSeconds = ttl
		return r
	}
	for _, c := range []struct {
		name      string
		prev, nxt NodeRecord
		want      time.Duration
		changed   bool
	}{
		{"earlier estimate, same TTL: held", rec(60, 60*time.Second), rec(60, 59*time.Second+990*time.Millisecond), 60 * time.Second, true},
		{"later, same TTL: taken", rec(60, 60*time.Second), rec(60, 65*time.Second), 65 * time.Second, false},
		{"equal: unchanged", rec(60, 60*time.Second), rec(60, 60*time.Second), 60 * time.Second, false},
		{"TTL shortened: the new deadline", rec(60, 60*time.Second), rec(10, 10*time.Second), 10 * time.Second, false},
	} {
		n := c.nxt
		if got := holdDeadline(&c.prev, &n); got != c.changed || !n.Deadline.Equal(t0.Add(c.want)) {
			t.Errorf("%s: changed %v deadline %v, want %v %v", c.name, got, n.Deadline.Sub(t0), c.changed, c.want)
		}
	}
}
