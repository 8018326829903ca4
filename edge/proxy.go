package edge

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge/dialect"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/rawjson"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/routing"
	"github.com/geniehive/geniehive/state"
)

// exchange is one client request's state, pooled. It is owned by the
// handler until a stream writer takes it over; finish releases it.
type exchange struct {
	s        *Server
	start    time.Time
	endpoint string
	op       fleet.Kind
	key      *fleet.APIKey
	snap     *fleet.Snapshot // the one snapshot this request decides and plans on
	scan     bodyScan
	in       policy.Input
	dec      policy.Decision
	rf       routing.RequestFacts
	model    string
	mLabel   string
	rLabel   string
	service  string
	asset    string
	status   int
	attempts int
	stream   bool
	ttft     time.Duration
	gen      time.Duration // generation time of a whole (non-streamed) answer
	upStart  time.Time
	tokens   int
	bytesIn  int
	bytesOut int
	clientIP string
	errCode  string
	aborted  bool
	thinkOff bool // the edge wrote a thinking-off switch for the current candidate

	text []byte // scratch for rf.Text
	body *bbuf  // the request body as read (readBody); released by finish

	// api is the client's API on the agent-facing routes (dialects.go);
	// dreq its parsed body, released by finish; native: the current
	// attempt passes the body through rather than translating it.
	api    dialect.API
	dreq   *dialect.Request
	native bool

	cand   *routing.Candidate
	lease  state.Lease
	leased bool
	plan   routing.Plan

	// OpenTelemetry (tracing.go): rt is nil unless the Server traces.
	rt                  *reqTrace // the request's spans, until traceEnd hands them to the export queue
	relay               int       // the stream relay's span in rt while it runs (0: none)
	inTokens, outTokens int       // usage the answer reported
}

var exchangePool = sync.Pool{New: func() any { return new(exchange) }}

var (
	thinkOn  = true
	thinkOff = false
)

func (s *Server) acquireExchange(rt string, op fleet.Kind) *exchange {
	x := exchangePool.Get().(*exchange)
	dec, text := x.dec, x.text
	*x = exchange{s: s, start: time.Now(), endpoint: rt, op: op, status: 200, text: text[:0]}
	dec.Targets = dec.Targets[:0]
	dec.Tried = dec.Tried[:0]
	x.dec = dec
	s.open.Add(1)
	s.met.inflightOf(rt).Inc()
	return x
}

// endAttempt releases the in-flight lease of the current candidate.
func (x *exchange) endAttempt() {
	if !x.leased {
		return
	}
	x.leased = false
	if x.s.usage != nil {
		x.s.usage.End(x.cand.Service.ID, x.cand.Asset)
	}
	if mutant == "inflight_leak" {
		return
	}
	if x.s.acct != nil {
		x.s.acct.End(x.cand, x.lease)
	} else {
		x.s.inflight.End(x.lease)
	}
}

func (x *exchange) beginAttempt(c *routing.Candidate) {
	x.cand = c
	x.leased = true
	if x.s.usage != nil {
		x.s.usage.Begin(c.Service.ID, c.Asset)
	}
	if x.s.acct != nil {
		x.lease = x.s.acct.Begin(c)
		return
	}
	if c.Leased {
		x.lease = c.Lease
	} else {
		x.lease = x.s.inflight.Begin(c.Service.ID)
	}
}

// finish accounts the request (in-flight, metrics, stats, access log) and
// releases x. Called exactly once, by the handler or by the stream writer.
func (x *exchange) finish() {
	s := x.s
	x.endAttempt()
	// Leases the strategy took for candidates never tried.
	for i := range x.plan.Candidates {
		c := &x.plan.Candidates[i]
		if c.Leased && i >= x.attempts && s.acct == nil {
			s.inflight.End(c.Lease)
		}
	}
	var end time.Time // the request's end, when read here (the server span's)
	if x.service != "" && x.status < 500 && !x.aborted {
		up := time.Since(x.upStart)
		end = x.upStart.Add(up)
		gen := x.gen
		if gen == 0 && x.ttft > 0 {
			gen = up - x.ttft // streamed: first token to last
		}
		s.stats.observe(x.service, true, up, x.ttft, x.tokens, gen)
		s.met.upLatency(x.service).Observe(up.Seconds())
		if x.ttft > 0 {
			s.met.upTTFT(x.service).Observe(x.ttft.Seconds())
		}
	}
	mLabel := x.mLabel
	if mLabel == "" {
		mLabel = "unknown"
	}
	st := x.status
	if x.aborted {
		st = 499
		s.met.aborted.Inc()
	}
	x.traceEnd(st, end)
	s.met.request(reqLabels{endpoint: x.endpoint, model: mLabel, role: x.rLabel, service: x.service, status: st}).Inc()
	s.met.inflightOf(x.endpoint).Dec()
	if s.access && s.log.Enabled(context.Background(), slog.LevelInfo) {
		keyID := ""
		if x.key != nil {
			keyID = x.key.ID
		}
		attrs := [...]slog.Attr{
			slog.String("endpoint", x.endpoint),
			slog.String("model", clipName(x.model)),
			slog.String("asset", x.asset),
			slog.String("role", x.rLabel),
			slog.String("service", x.service),
			slog.Int("status", st),
			slog.Bool("stream", x.stream),
			slog.Int("attempts", x.attempts),
			slog.Float64("dur_ms", float64(time.Since(x.start).Microseconds())/1000),
			slog.Float64("ttft_ms", float64(x.ttft.Microseconds())/1000),
			slog.Int("bytes_in", x.bytesIn),
			slog.Int("bytes_out", x.bytesOut),
			slog.String("key", keyID),
			slog.String("client", x.clientIP),
			slog.String("error", x.errCode),
		}
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs[:]...)
	}
	if x.body != nil {
		putBuf(x.body)
		x.body = nil
	}
	s.open.Add(-1)
	if x.dreq != nil {
		dialect.ReleaseRequest(x.dreq)
		x.dreq = nil
	}
	x.s = nil
	x.key = nil
	x.cand = nil
	x.plan = routing.Plan{}
	x.in = policy.Input{}
	exchangePool.Put(x)
}

var statusTexts sync.Map

func statusText(code int) string {
	if v, ok := statusTexts.Load(code); ok {
		return v.(string)
	}
	s := strconv.Itoa(code)
	statusTexts.Store(code, s)
	return s
}

// fail answers with err (mapped by classify) and records it on x.
func (x *exchange) fail(ctx *fasthttp.RequestCtx, err error) {
	e := Classify(err)
	x.status = e.Status
	x.errCode = e.Code
	writeError(ctx, e)
}

var reasoningKeys = []string{"reasoning_content", "reasoning"}

// serveInference handles every proxied OpenAI endpoint, as a pipeline:
// authenticate -> parse -> decide -> plan -> forward (attempt each
// candidate, respond with the first that answers). Every step's failure
// goes to x.fail, which maps it with Classify.
func (s *Server) serveInference(ctx *fasthttp.RequestCtx, op fleet.Kind, api dialect.API, rt, upPath string) {
	x := s.acquireExchange(rt, op)
	x.api = api
	x.traceStart(ctx)
	handedOff := false
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic serving request", "endpoint", rt, "panic", r, "stack", string(debug.Stack()))
			x.fail(ctx, errInternal)
			handedOff = false
		}
		if !handedOff {
			x.bytesOut = len(ctx.Response.Body())
			x.finish()
		}
	}()
	if s.access {
		x.clientIP = ctx.RemoteIP().String()
	}
	if !s.authenticate(ctx, x) {
		return
	}
	x.body = getBuf()
	body, err := readBody(ctx, s.cfg.limitFor(op), x.body)
	if err != nil {
		x.fail(ctx, err)
		return
	}
	mp, err := s.parse(ctx, x, body)
	if err == nil {
		err = s.decide(ctx, x, body)
	}
	if err == nil {
		err = s.plan(ctx, x, body, mp)
		if api == dialect.APICountTokens {
			s.countTokens(ctx, x, body, err)
			return
		}
	}
	if err != nil {
		x.fail(ctx, err)
		return
	}
	handedOff = s.forward(ctx, x, body, mp, upPath)
}

// authenticate refuses requests while the edge drains and checks the key;
// on false the answer is written.
func (s *Server) authenticate(ctx *fasthttp.RequestCtx, x *exchange) bool {
	if s.draining.Load() {
		x.fail(ctx, errShuttingDown)
		return false
	}
	key, ok := s.authorize(ctx, fleet.ScopeClient)
	if !ok {
		x.status, x.errCode = ctx.Response.StatusCode(), "auth"
		return false
	}
	x.key = key
	return true
}

// parse checks the body's size and reads what the policy decides on: the
// model (and, for JSON, stream, max_tokens, thinking and the prompt spans)
// in one pass over the body. Transcriptions are multipart; mp is then set.
func (s *Server) parse(ctx *fasthttp.RequestCtx, x *exchange, body []byte) (mp *multipartInfo, err error) {
	x.bytesIn = len(body)
	if len(body) > s.cfg.limitFor(x.op) {
		return nil, errTooLarge
	}
	if x.api != dialect.APIChat {
		return nil, s.parseDialect(x, body)
	}
	if x.op == fleet.KindTranscription {
		info, err := parseMultipart(body, ctx.Request.Header.ContentType())
		if err != nil {
			return nil, err
		}
		x.model = info.model
		return &info, nil
	}
	if err := scanRequest(body, &x.scan); err != nil {
		return nil, err
	}
	if !x.scan.modelOK {
		return nil, errNoModel
	}
	raw := body[x.scan.modelStart:x.scan.modelEnd]
	if x.scan.modelEscaped {
		x.model = rawjson.Unquote(raw)
	} else {
		x.model = s.names.intern(raw[1 : len(raw)-1])
	}
	x.stream = x.scan.stream && x.op == fleet.KindChat
	if x.model == "" {
		return nil, errNoModel
	}
	return nil, nil
}

// decide evaluates the policy: targets, or a denial (an error here).
func (s *Server) decide(ctx *fasthttp.RequestCtx, x *exchange, body []byte) error {
	in := &x.in
	in.SchemaVersion = policy.SchemaVersion
	in.Operation = x.op
	if x.op == fleet.KindChat {
		in.API = apiNames[x.api]
	}
	in.Model = x.model
	in.ModelKey = policies.NormalizeModel(x.model)
	in.Service = nil
	if ix := s.services.Load(); ix != nil {
		in.Service = (*ix)[in.ModelKey]
	}
	in.Stream = x.stream
	in.MaxTokens = x.scan.maxTokens
	switch x.scan.thinking {
	case 1:
		in.Thinking = &thinkOn
	case -1:
		in.Thinking = &thinkOff
	}
	in.BodyBytes = len(body)
	if x.key != nil {
		in.Key = policy.Key{ID: x.key.ID, Scope: x.key.Scope, Roles: x.key.Roles}
	}
	x.snap = s.watcher.Current()
	e := s.Engine()
	t0 := time.Now()
	sp := x.childAt("policy.evaluate", spanEval, t0) // the span's times are the metric's
	err := e.Eval(ctx, in, &x.dec)
	el := time.Since(t0)
	s.met.evalLatency(e.Name()).Observe(el.Seconds())
	x.traceEval(sp, e.Name(), err, t0.Add(el))
	if err != nil {
		s.log.Error("policy evaluation failed", "err", err, "engine", e.Name())
		return err
	}
	if d := x.dec.Deny; d != nil {
		return denied{d}
	}
	if len(x.dec.Targets) == 0 {
		if r, ok := x.snap.Role(strings.TrimSpace(x.model)); ok && roleOp(r) == x.op {
			// A role that exists but resolves to nothing routable now (its
			// candidates gone, a fallback cycle cut): 503 naming what was
			// tried, not "does not exist".
			return &routing.NoCandidatesError{Model: x.model, Tried: x.dec.Tried}
		}
		return unknownModel(x.snap, x.model, x.op, x.dec.Tried)
	}
	first := &x.dec.Targets[0]
	if first.Role != "" {
		x.mLabel, x.rLabel = first.Role, first.Role
	} else {
		x.mLabel = first.Name
	}
	return nil
}

// plan asks the router where the decision's targets are served now.
func (s *Server) plan(ctx *fasthttp.RequestCtx, x *exchange, body []byte, mp *multipartInfo) error {
	x.rf = routing.RequestFacts{Operation: x.op, Model: x.model, Stream: x.stream, BodyBytes: len(body), Now: x.start}
	if x.key != nil {
		x.rf.KeyID = x.key.ID
	}
	if mp == nil && (x.scan.nText > 0 || x.scan.prompt.e > 0) {
		x.text = appendText(x.text[:0], body, &x.scan, routing.TextBytes)
		x.rf.Text = string(x.text)
	} else if x.dreq != nil && x.dreq.Facts().Text != "" {
		x.rf.Text = string(append(x.text[:0], x.dreq.Facts().Text...)) // a copy: Facts view reused buffers
	}
	// Only the first failover.attempts candidates are ever tried, so the
	// router returns no more (and finds them without sorting a wide asset's
	// every service). Not when the edge reorders the plan afterwards
	// (preferLoaded, below) or scans all of it (countTokens looks for any
	// candidate speaking count_tokens natively).
	if s.usage == nil && x.api != dialect.APICountTokens {
		x.rf.MaxCandidates = s.cfg.Failover.Attempts
	}
	if s.usage != nil {
		if err := s.awaitLoad(ctx, x); err != nil {
			return err
		}
	}
	sp := x.child("routing.plan", spanPlan)
	plan, err := s.router.Plan(ctx, x.snap, &x.dec, &x.rf)
	x.tracePlan(sp, &plan, err)
	if err != nil {
		return err
	}
	x.plan = plan
	if s.usage != nil {
		preferLoaded(x.plan.Candidates)
	}
	if len(plan.Candidates) == 0 {
		return &routing.NoCandidatesError{Model: x.model, Tried: plan.Tried}
	}
	for k, v := range x.dec.Headers {
		ctx.Response.Header.Set(k, v)
	}
	return nil
}

// forward tries the plan's candidates in order until one answers before
// its first byte (attempt), and relays that answer (respond). It reports
// whether a stream writer took ownership of x.
func (s *Server) forward(ctx *fasthttp.RequestCtx, x *exchange, body []byte, mp *multipartInfo, upPath string) bool {
	n := min(len(x.plan.Candidates), s.cfg.Failover.Attempts)
	if mutant == "failover_off" {
		n = min(n, 1)
	}
	var lastErr error
	rbuf := getBuf()
	defer putBuf(rbuf)
	for i := 0; i < n; i++ {
		c := &x.plan.Candidates[i]
		x.attempts = i + 1
		path := upPath
		var upBody []byte
		var err error
		if x.dreq != nil {
			upBody, path, err = s.rewriteDialect(rbuf, body, x, c)
		} else {
			upBody, err = s.rewrite(rbuf, body, x, c, mp)
		}
		if err == errSkipCandidate {
			continue
		}
		if err != nil {
			x.fail(ctx, err)
			return false
		}
		resp, err := s.attempt(ctx, x, c, upBody, path)
		if err == nil {
			return s.respond(ctx, x, c, resp)
		}
		if errors.Is(err, errClientGone) {
			x.errCode = "client_gone"
			ctx.SetConnectionClose()
			return false
		}
		lastErr = err
		if ue, ok := err.(*upstreamError); ok && !ue.retryable() {
			break
		}
		if i+1 < n {
			s.met.failovers.WithLabelValues(c.Service.ID).Inc()
			s.log.Debug("failover", "from", c.Service.ID, "err", err)
		}
	}
	if lastErr == nil {
		lastErr = &routing.NoCandidatesError{Model: x.model, Tried: x.plan.Tried}
	}
	s.logUpstreamFailure(lastErr)
	x.fail(ctx, lastErr)
	return false
}

// attempt sends the request to candidate c. On success it returns the
// upstream's 2xx response (the caller releases it) with the candidate's
// in-flight lease still held; on failure an *upstreamError, with the
// lease ended, the failure counted and reported to the router.
func (s *Server) attempt(ctx *fasthttp.RequestCtx, x *exchange, c *routing.Candidate, upBody []byte, upPath string) (*fasthttp.Response, error) {
	uc, err := s.clients.get(c.Service.Endpoint)
	if err != nil {
		return nil, &upstreamError{service: c.Service.ID, err: err}
	}
	x.beginAttempt(c)
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	req.Header.SetMethod(fasthttp.MethodPost)
	ub := getBuf()
	ub.B = append(append(ub.B[:0], c.Service.Endpoint...), upPath...)
	req.SetRequestURIBytes(ub.B)
	putBuf(ub)
	copyRequestHeaders(req, &ctx.Request.Header)
	ub = getBuf()
	ub.B = appendIP(ub.B[:0], ctx.RemoteIP())
	req.Header.SetBytesV("X-Forwarded-For", ub.B)
	req.Header.SetBytesV("X-Real-IP", ub.B)
	putBuf(ub)
	req.SetBodyRaw(upBody)
	x.upStart = time.Now()
	sp := x.attemptSpan(c, x.attempts, req, x.upStart) // the span starts as the attempt's clock
	if x.stream {
		resp.StreamBody = true
		err = uc.stream.DoDeadline(req, resp, x.upStart.Add(s.cfg.Timeouts.StreamMax))
	} else {
		err = s.doPlain(ctx, uc.plainFor(x.op), req, resp, x.upStart.Add(s.cfg.Timeouts.Request))
	}
	fasthttp.ReleaseRequest(req)
	var ue *upstreamError
	switch {
	case errors.Is(err, errClientGone):
		// The client left: no upstream failure, no failover.
		fasthttp.ReleaseResponse(resp)
		x.endAttempt()
		x.aborted = true
		x.traceAttempt(sp, 0, err)
		return nil, err
	case err != nil:
		ue = &upstreamError{service: c.Service.ID, err: err}
	case resp.StatusCode() < 200 || resp.StatusCode() > 299:
		ue = &upstreamError{service: c.Service.ID, status: resp.StatusCode()}
		if x.stream {
			if bs := resp.BodyStream(); bs != nil {
				ue.body, _ = io.ReadAll(io.LimitReader(bs, 64<<10))
			}
			_ = resp.CloseBodyStream()
		} else {
			ue.body = append([]byte(nil), resp.Body()...)
		}
	default:
		x.traceAttempt(sp, resp.StatusCode(), nil)
		return resp, nil
	}
	x.traceAttempt(sp, ue.status, ue)
	fasthttp.ReleaseResponse(resp)
	x.endAttempt()
	reason := "status_" + statusText(ue.status)
	if ue.err != nil {
		reason = "transport"
		if isTimeout(ue.err) {
			reason = "timeout"
		}
	}
	s.met.upErrors.WithLabelValues(c.Service.ID, reason).Inc()
	if s.feedback != nil && (ue.err != nil || ue.status >= 500) {
		routing.Fail(s.feedback, c, ue.err != nil && !isTimeout(ue.err), time.Since(x.upStart))
	}
	return nil, ue
}

// respond relays candidate c's successful answer: an SSE stream through
// the relay (it then owns x: respond returns true), or a whole body,
// stripped of reasoning when the policy says so. It releases resp.
func (s *Server) respond(ctx *fasthttp.RequestCtx, x *exchange, c *routing.Candidate, resp *fasthttp.Response) bool {
	x.service, x.asset = c.Service.ID, c.Asset
	if c.Target != nil && c.Target.Role == "" {
		x.mLabel = c.Asset
	}
	if s.feedback != nil {
		s.feedback.Observe(c, true, time.Since(x.upStart))
	}
	strip := x.dec.StripReasoning
	if c.Target != nil && c.Target.Patch != nil {
		strip = c.Target.Patch.StripReasoning || strip
	}
	if !strip && x.thinkOff && !keepsReasoning(x.snap, c) {
		// The edge turned thinking off; an upstream that reasons anyway
		// (an old server, a model that ignores the switch) must not leak it.
		strip = true
	}
	ctx.Response.Header.Set("X-GenieHive-Service", c.Service.ID)
	ctx.Response.Header.Set("X-GenieHive-Model", c.Asset)
	if x.stream && bytes.HasPrefix(resp.Header.ContentType(), []byte("text/event-stream")) {
		s.startRelay(ctx, x, resp, strip)
		return true
	}
	x.status = resp.StatusCode()
	ctx.SetStatusCode(x.status)
	ctx.Response.Header.SetContentTypeBytes(resp.Header.ContentType())
	var rb []byte
	if x.stream {
		// Asked for a stream, got a plain answer: relay it whole.
		var err error
		limit := s.cfg.answerLimitFor(x.op)
		rb, err = io.ReadAll(io.LimitReader(resp.BodyStream(), int64(limit)+1))
		_ = resp.CloseBodyStream()
		if err == nil && len(rb) > limit {
			err = fasthttp.ErrBodyTooLarge
		}
		if err != nil {
			fasthttp.ReleaseResponse(resp)
			x.fail(ctx, &upstreamError{service: c.Service.ID, err: err})
			return false
		}
	} else {
		// Hand the upstream's body buffer to the client response and the
		// client response's (empty) one to resp: both go back to their
		// pools with their capacity, so no body is allocated per request.
		rb = resp.SwapBody(ctx.Response.SwapBody(nil)[:0])
	}
	fasthttp.ReleaseResponse(resp)
	x.ttft = time.Since(x.upStart)
	var ct int
	x.tokens, x.gen, ct = answerTiming(rb, x.ttft)
	x.traceUsage(rb, ct)
	if x.dreq != nil && !x.native {
		if strip && bytes.Contains(rb, []byte(`"reasoning`)) {
			sb := getBuf()
			sb.B, _ = stripKeys(sb.B[:0], rb, reasoningKeys)
			rb = append(rb[:0], sb.B...)
			putBuf(sb)
		}
		s.respondTranslated(ctx, x, rb)
		return false
	}
	if strip && bytes.Contains(rb, []byte(`"reasoning`)) {
		sb := getBuf()
		sb.B, _ = stripKeys(sb.B[:0], rb, reasoningKeys)
		ctx.SetBody(sb.B)
		putBuf(sb)
	} else {
		ctx.Response.SwapBody(rb)
	}
	return false
}

// keepsReasoning reports whether the request policy of c's role or asset
// says strip_reasoning: false (keep reasoning even when the edge turned
// thinking off).
func keepsReasoning(snap *fleet.Snapshot, c *routing.Candidate) bool {
	if snap == nil || snap.Catalog == nil || c.Target == nil {
		return false
	}
	if c.Target.Role != "" {
		if r, ok := snap.Catalog.Role(c.Target.Role); ok && r.RequestPolicy != nil && r.RequestPolicy.StripReasoning != nil {
			return !*r.RequestPolicy.StripReasoning
		}
	}
	if p := snap.Catalog.AssetPolicies[c.Asset]; p != nil && p.StripReasoning != nil {
		return !*p.StripReasoning
	}
	return false
}

// appendIP appends ip in text form (IPv4 without allocating).
func appendIP(dst []byte, ip net.IP) []byte {
	if ip4 := ip.To4(); ip4 != nil {
		return fasthttp.AppendIPv4(dst, ip4)
	}
	return append(dst, ip.String()...)
}

// internTable hands out one string per model name seen, so the request
// path does not allocate the same name again and again. It holds at most
// internMax names (client input: past that, names are simply allocated).
type internTable struct{ cowMap[string, string] }

const internMax = 1024

func (t *internTable) intern(b []byte) string {
	if s, ok := t.load()[string(b)]; ok { // no allocation: map index by string(b)
		return s
	}
	s := string(b)
	if len(b) <= 256 {
		t.add(s, s, internMax)
	}
	return s
}

var (
	completionTokensKey = []byte(`"completion_tokens":`)
	evalCountKey        = []byte(`"eval_count":`)
	evalDurationKey     = []byte(`"eval_duration":`)
	predictedNKey       = []byte(`"predicted_n":`)
	predictedMSKey      = []byte(`"predicted_ms":`)
)

func completionTokens(b []byte) int { return intAfter(b, completionTokensKey) }

// intAfter reads the non-negative integer after the first key in b (0 when
// absent; a fraction is cut).
func intAfter(b, key []byte) int {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0
	}
	return intAt(b, i+len(key))
}

// intAt reads the non-negative integer at b[i:], after white space.
func intAt(b []byte, i int) int {
	i = rawjson.SkipWS(b, i)
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return rawjson.IntLit(b, i, j)
}

// answerTiming returns the generated tokens of a whole answer and how long
// generating them took: the upstream's own figures where it reports them
// (Ollama's native eval_count and eval_duration in ns, api/types.go
// Metrics; llama.cpp's timings.predicted_n and predicted_ms,
// tools/server/server-task.cpp), else the usage's completion_tokens over
// the whole exchange (a non-streamed body arrives whole: time to its first
// byte says nothing about generation). ct is where it found the usage's
// completion_tokens key (-1: it did not read it), for traceUsage.
func answerTiming(b []byte, exchange time.Duration) (n int, d time.Duration, ct int) {
	if n, d := intAfter(b, evalCountKey), intAfter(b, evalDurationKey); n > 0 && d > 0 {
		return n, time.Duration(d), -1
	}
	if n, ms := intAfter(b, predictedNKey), intAfter(b, predictedMSKey); n > 0 && ms > 0 {
		return n, time.Duration(ms) * time.Millisecond, -1
	}
	ct = bytes.Index(b, completionTokensKey)
	if ct < 0 {
		return 0, exchange, -1
	}
	return intAt(b, ct+len(completionTokensKey)), exchange, ct
}

// rewrite returns the body to send to candidate c: the client's body when
// nothing changes, else a rewritten copy in buf.
func (s *Server) rewrite(bb *bbuf, body []byte, x *exchange, c *routing.Candidate, mp *multipartInfo) ([]byte, error) {
	var patch *policy.Patch
	if c.Target != nil {
		patch = c.Target.Patch
	}
	if mp != nil {
		if mp.model == c.Asset || c.Asset == "" {
			return body, nil
		}
		bb.B = spliceMultipartModel(bb.B[:0], body, mp, c.Asset)
		return bb.B, nil
	}
	r := policies.Rewrite{Dialect: policies.DialectOpenAI, Model: c.Asset}
	if c.Service.Protocol == fleet.ProtocolOllama {
		// The edge speaks to Ollama's OpenAI layer (/v1/*), never /api/*.
		r.Dialect = policies.DialectOllamaOpenAI
	}
	if x.op == fleet.KindChat {
		r.Thinking = thinkingFor(&x.scan, patch, r.Dialect)
		if r.Thinking > 0 && x.scan.effortLevel && r.Dialect == policies.DialectOllamaOpenAI {
			r.EffortLevels = takesEffortLevels(c)
		}
	}
	x.thinkOff = r.Thinking < 0 || patch != nil && patch.DisableThinking
	if patch.Empty() && r.Thinking == 0 {
		if c.Asset == "" || c.Asset == x.model {
			return body, nil
		}
		bb.B = setModel(bb.B[:0], body, &x.scan, c.Asset)
		return bb.B, nil
	}
	out, err := policies.ApplyRewrite(body, patch, r)
	if err != nil {
		return nil, badRequest("invalid_request", "", "request body could not be rewritten: "+err.Error())
	}
	bb.B = append(bb.B[:0], out...)
	return bb.B, nil
}

// thinkingFor is the thinking switch to write for a target: off when the
// policy turns thinking off; else the client's own choice when it was sent
// in a switch the upstream does not read (or switches that disagree), so
// that the upstream does what the client asked; else 0 (body as it is).
func thinkingFor(f *bodyScan, patch *policy.Patch, dialect string) int8 {
	if patch != nil && patch.DisableThinking {
		return -1
	}
	want := f.thinking
	if want == 0 {
		return 0
	}
	disagree := func(t int8) bool { return t != 0 && t != want }
	if disagree(f.thinkNative) || disagree(f.thinkKwargs) || disagree(f.thinkEffort) || disagree(f.thinkReasoning) {
		return want
	}
	switch dialect {
	case policies.DialectOllamaOpenAI:
		// Off is read only from reasoning_effort / reasoning.effort; on is
		// Ollama's default for a thinking model, but an effort level is
		// refused for any model but gpt-oss.
		if want < 0 && f.thinkEffort == 0 && f.thinkReasoning == 0 || want > 0 && f.effortLevel {
			return want
		}
	default:
		// chat_template_kwargs.enable_thinking is the switch; a top-level
		// think is Ollama's, reasoning_effort "none" is not vLLM's.
		if f.thinkNative != 0 || f.thinkEffort < 0 || f.thinkReasoning < 0 || want < 0 && f.thinkKwargs == 0 {
			return want
		}
	}
	return 0
}

// takesEffortLevels reports whether Ollama takes reasoning effort levels
// for c's model: only gpt-oss (server/routes.go: string think values are
// for the harmony parser; other models answer 400).
func takesEffortLevels(c *routing.Candidate) bool {
	if a, ok := c.Service.Asset(c.Asset); ok {
		return strings.Contains(strings.ToLower(a.Family), "gptoss") || strings.Contains(strings.ToLower(a.Family), "gpt-oss")
	}
	return false
}
