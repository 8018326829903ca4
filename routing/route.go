package routing

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

// RequestFacts is what routing reads about a request: what the edge
// extracted from it before routing (and what POST /v1/cluster/routes/match
// describes).
type RequestFacts struct {
	// Operation is the kind the route implies (chat, embeddings, ...).
	Operation fleet.Kind
	// Model is the requested model or role exactly as sent.
	Model  string
	Stream bool
	// BodyBytes is the request body size.
	BodyBytes int
	// KeyID is the caller's key id ("" when auth is off).
	KeyID string
	// Text is the start of the prompt, for the routing text signal: the
	// last user message's text (its text parts joined by spaces), else a
	// top-level "prompt" string; at most TextBytes bytes, decoded, "" when
	// the request has none. It is prompt content: never log or store it.
	Text string
	// Now is the request's arrival time; strategies judge liveness against it.
	Now time.Time
	// MaxCandidates caps Plan.Candidates when > 0: a caller that tries at
	// most that many upstreams (the edge's failover.attempts) needs no
	// more. The candidates returned are the first MaxCandidates of the
	// full plan, in its order; when every target is scored they are found
	// by a bounded selection instead of sorting every candidate. 0: all.
	MaxCandidates int
}

// TextBytes is how much prompt text the edge puts in RequestFacts.Text.
const TextBytes = 256

// Candidate is one concrete place to send the request.
type Candidate struct {
	// Service is the snapshot entry picked (read-only, shared).
	Service *fleet.ServiceEntry
	// Asset is the upstream model name to put in the body.
	Asset string
	// Target is the decision target this candidate serves (carries the body
	// patch and the role it came from). Never nil.
	Target *policy.Target
	// Leased is true when the strategy already took an in-flight lease for
	// this candidate (least_loaded does, atomically with its pick); the
	// edge then ends Lease instead of calling Inflight.Begin itself.
	Leased bool
	Lease  state.Lease
}

// Plan is a strategy's answer: candidates in the order the edge tries them.
// The first is the strategy's pick; the rest are failover alternatives
// (other services of the same target group first, then later groups).
type Plan struct {
	Candidates []Candidate
	// Tried describes what was considered, for error messages and logs.
	Tried []string
	// Strategy names the strategy that produced the plan (for metrics/logs).
	Strategy string
}

// Planner turns a policy decision into a plan using live state; *Router is
// the implementation, the edge holds the interface.
//
// Implementations are safe for concurrent use. Plan must not block on
// anything but the at-most-one Redis round trip its strategy needs.
//
// # Errors
// A *NoCandidatesError (errors.Is(err, ErrNoCandidates)) when no target has
// a routable service of the right kind (the edge answers 503); a
// *SaturatedError (errors.Is(err, ErrSaturated)) when candidates exist but
// all are at their concurrency limit (429 with Retry-After). Any other error
// (Redis down for round_robin/least_loaded, ...) is answered 503 as well.
type Planner interface {
	Plan(ctx context.Context, snap *fleet.Snapshot, dec *policy.Decision, req *RequestFacts) (Plan, error)
}

// Feedback is optionally implemented by a Router that wants to learn the
// outcome of each attempt (e.g. to adapt scores). The edge calls it off the
// response path; implementations must not block.
type Feedback interface {
	Observe(c *Candidate, ok bool, latency time.Duration)
}

// ServiceFeedback is implemented by a Feedback that tells a failure of
// the whole service (connection refused or reset: nothing there answers)
// from a failure of one model on it (a 5xx or a timeout for that model).
type ServiceFeedback interface {
	ObserveServiceFailure(c *Candidate, latency time.Duration)
}

// Fail reports a failed attempt to fb: a service-wide failure through
// ServiceFeedback when fb implements it, else as Observe(c, false, ...).
// Observe(c, false, ...) itself counts against the (service, asset) pair
// only, so a client asking for a model whose upstream fails cannot cool
// the whole service down for everyone.
func Fail(fb Feedback, c *Candidate, serviceWide bool, latency time.Duration) {
	if sf, ok := fb.(ServiceFeedback); ok && serviceWide {
		sf.ObserveServiceFailure(c, latency)
		return
	}
	fb.Observe(c, false, latency)
}

// Sentinel errors, for errors.Is.
var (
	ErrNoCandidates = errors.New("no routable candidate")
	ErrSaturated    = errors.New("every candidate is saturated")
	// ErrSharedState wraps a failure of the shared state a strategy's pick
	// needs (round_robin's counter, least_loaded's in-flight sets): Redis
	// down or failing over. A retry may succeed; the edge answers 503.
	ErrSharedState = errors.New("shared state unavailable")
)

// NoCandidatesError says what was looked at when nothing was routable.
type NoCandidatesError struct {
	Model string
	Tried []string
}

func (e *NoCandidatesError) Error() string {
	var b strings.Builder
	b.WriteString("no routable service for ")
	b.WriteString(strconv.Quote(e.Model))
	if len(e.Tried) > 0 {
		b.WriteString(" (tried: ")
		b.WriteString(strings.Join(e.Tried, "; "))
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNoCandidates) true.
func (e *NoCandidatesError) Is(target error) bool { return target == ErrNoCandidates }

// SaturatedError says every candidate is at its concurrency limit.
type SaturatedError struct {
	Model      string
	RetryAfter time.Duration // 0 = 1s
	Tried      []string
}

func (e *SaturatedError) Error() string {
	var b strings.Builder
	b.WriteString("every service for ")
	b.WriteString(strconv.Quote(e.Model))
	b.WriteString(" is at its concurrency limit")
	if len(e.Tried) > 0 {
		b.WriteString(" (")
		b.WriteString(strings.Join(e.Tried, "; "))
		b.WriteString(")")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrSaturated) true.
func (e *SaturatedError) Is(target error) bool { return target == ErrSaturated }

// Accounter is optionally implemented by a Router that keeps its own
// per-service counts (for concurrency limits). When the Router implements
// it, the edge calls Begin right before sending to a candidate and End once
// the attempt is over (also on failure, panic and client abort), and does
// not touch state.Inflight itself. Begin must honour Candidate.Leased.
type Accounter interface {
	Begin(c *Candidate) state.Lease
	End(c *Candidate, l state.Lease)
}
