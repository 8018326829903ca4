package edge

import (
	"encoding/json"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/geniehive/geniehive/fleet"
)

// Degradation codes: what an edge that still serves is missing. Each is a
// value of the "reason" label of geniehive_degraded, a reason in /readyz's
// body and in GET /v1/cluster/health (status "degraded"). None makes
// /readyz answer 503: the edge serves what it safely can (the last good
// catalog, data and policy; with a broken keyring nobody passes).
const (
	// DegradedKeyringEmpty: auth is on (a key was ever stored, or
	// auth_required) but no key is configured or stored: every request
	// gets 401.
	DegradedKeyringEmpty = "keyring_empty"
	// DegradedKeyringUnreadable: the stored keyring has entries that do not
	// parse, or is not a hash: those entries authenticate nobody.
	DegradedKeyringUnreadable = "keyring_unreadable"
	// DegradedCatalogUnreadable: the stored role catalog does not decode;
	// the edge serves the last good one.
	DegradedCatalogUnreadable = "catalog_unreadable"
	// DegradedPolicyData: the policy engine refused the latest data
	// document (too large, a derived rule that failed); it decides on the
	// previous one, so later catalog and fleet changes are not seen.
	DegradedPolicyData = "policy_data_refused"
	// DegradedPolicyRefused: a newer policy bundle was refused; the edge
	// runs an older one.
	DegradedPolicyRefused = "policy_refused"
)

var degradedCodes = [...]string{DegradedKeyringEmpty, DegradedKeyringUnreadable, DegradedCatalogUnreadable,
	DegradedPolicyData, DegradedPolicyRefused}

// Problem is one reason the edge is degraded.
type Problem struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Problems lists why this edge is degraded now (none when healthy), in the
// order of degradedCodes.
func (s *Server) Problems() []Problem {
	return s.problems(s.watcher.Current())
}

func (s *Server) problems(snap *fleet.Snapshot) []Problem {
	var out []Problem
	if s.keys.authEnabled(snap) && len(s.keys.byHash) == 0 && len(snap.Keys) == 0 {
		out = append(out, Problem{DegradedKeyringEmpty, "auth is on but no key is configured or stored: every request is refused (401); add one with geniehive keys add"})
	}
	if snap.KeysError != "" {
		out = append(out, Problem{DegradedKeyringUnreadable, snap.KeysError})
	}
	if snap.CatalogError != "" {
		out = append(out, Problem{DegradedCatalogUnreadable, snap.CatalogError + " (serving the last good catalog)"})
	}
	if p := s.dataErr.Load(); p != nil {
		out = append(out, Problem{DegradedPolicyData, *p})
	}
	if e := s.PolicyError(); e != "" {
		out = append(out, Problem{DegradedPolicyRefused, e})
	}
	return out
}

func hasProblem(ps []Problem, code string) bool {
	for _, p := range ps {
		if p.Code == code {
			return true
		}
	}
	return false
}

// registerDegraded adds geniehive_degraded{reason} (1 while that reason
// holds) to the edge's metrics, computed at scrape time.
func (s *Server) registerDegraded() {
	for _, code := range degradedCodes {
		code := code
		s.met.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "geniehive_degraded",
			Help:        "1 while the edge is degraded for this reason (see /readyz and /v1/cluster/health for details).",
			ConstLabels: prometheus.Labels{"reason": code},
		}, func() float64 {
			if hasProblem(s.Problems(), code) {
				return 1
			}
			return 0
		}))
	}
}

// logProblems logs each problem once when it appears (at error level: the
// edge is refusing or ignoring something an operator relies on) and once
// when it clears.
func (s *Server) logProblems(snap *fleet.Snapshot) {
	if !snap.RedisOK {
		return // not read yet, or Redis down: nothing new to report
	}
	ps := s.problems(snap)
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.Code)
		b.WriteByte('\x00')
		b.WriteString(p.Detail)
		b.WriteByte('\n')
	}
	key := b.String()
	if old := s.lastProblems.Swap(&key); old != nil && *old == key {
		return
	}
	for _, p := range ps {
		s.log.Error("EDGE DEGRADED: "+p.Code, "detail", p.Detail)
	}
	if len(ps) == 0 {
		s.log.Info("edge no longer degraded")
	}
}

// readyBody appends the problems to a /readyz body ({"status":...}).
func readyBody(status string, redisDown bool, ps []Problem) []byte {
	v := struct {
		Status   string    `json:"status"`
		Redis    string    `json:"redis,omitempty"`
		Degraded []Problem `json:"degraded,omitempty"`
	}{Status: status, Degraded: ps}
	if redisDown {
		v.Redis = "down"
	}
	b, _ := json.Marshal(v)
	return b
}
