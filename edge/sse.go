package edge

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/edge/dialect"
)

var (
	sseDone = []byte("[DONE]")
	sseData = []byte("data:")
	// A comment line without the blank line that would end an event: some
	// clients (openai-go v1) dispatch an empty event on a bare comment
	// block and fail to decode it. The comment joins the next event, which
	// every SSE parser ignores.
	sseHeartbeat = []byte(": keep-alive\n")
)

// errClientGone ends an upstream read when a heartbeat to the client failed.
var errClientGone = errors.New("client went away")

// relay answers one client with an SSE stream relayed from an upstream
// response, event by event. It is the response's body stream: fasthttp's
// server goroutine for the client connection calls WriteTo (the relay says
// it supports it), whose writer frames each Write as one HTTP chunk and
// flushes it to the client. So the whole relay runs on that one goroutine —
// no pipe, no reader goroutine, no timer:
//
//   - it reads the upstream body and writes every complete event as soon as
//     a read brings it (events that arrive together go out in one chunk);
//   - while the upstream is silent, the upstream connection (an idleConn)
//     wakes the blocked read every Timeouts.Heartbeat and has the relay
//     write an SSE comment, so a client that went away is noticed (the
//     write fails) even then, and the read is abandoned at once;
//   - silence longer than Timeouts.StreamIdle ends the stream with an SSE
//     error event, as does an upstream that breaks off.
//
// fasthttp calls Close once the body is written or the response dropped;
// Close closes the upstream body (which closes the upstream connection
// when the stream did not end cleanly) and finishes the exchange.
type relay struct {
	s     *Server
	x     *exchange
	resp  *fasthttp.Response
	conn  *idleConn // nil: no heartbeats (not an edge upstream connection)
	strip bool
	w     io.Writer // the client's chunk writer, during WriteTo
	every time.Duration
	next  time.Time // next heartbeat due
	wrote bool      // WriteTo ran
	done  bool      // Close ran
	// client is the client connection: every write to it gets a deadline
	// (Timeouts.Write, never past the stream's end at StreamMax), so a
	// client that stops reading does not hold the stream, its upstream
	// connection and its in-flight lease.
	client  net.Conn
	end     time.Time
	scanned int // pending.B[:scanned] holds no event terminator
	limit   int // cap on one pending event (AnswerLimits.SSEEvent)
	// pending receives upstream reads and holds a partial event until its
	// end arrives; out collects what one read produced for the client.
	pending, out *bbuf
	// tr translates a Chat Completions stream into the client's dialect
	// (nil: relayed as is); native is the dialect of a stream relayed as
	// is from an upstream that speaks it (APIChat otherwise), whose end is
	// its own terminal event; events counts its events.
	tr     *dialect.Stream
	native dialect.API
	events int
}

// relayReadSize is the room made for each upstream read: SSE events are
// small, and a larger one simply takes several reads.
const relayReadSize = 4 << 10

var relayPool = sync.Pool{New: func() any { return new(relay) }}

// startRelay answers the client with an SSE stream relayed from resp. It
// takes ownership of resp and x: the relay closes the upstream body and
// finishes x.
func (s *Server) startRelay(ctx *fasthttp.RequestCtx, x *exchange, resp *fasthttp.Response, strip bool) {
	x.status = 200
	ctx.SetStatusCode(200)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	r := relayPool.Get().(*relay)
	*r = relay{s: s, x: x, resp: resp, strip: strip, every: s.cfg.Timeouts.Heartbeat, pending: r.pending, out: r.out,
		client: ctx.Conn(), end: x.upStart.Add(s.cfg.Timeouts.StreamMax), limit: int(s.cfg.AnswerLimits.SSEEvent)}
	if r.pending == nil {
		r.pending, r.out = new(bbuf), new(bbuf)
	}
	r.pending.B, r.out.B = r.pending.B[:0], r.out.B[:0]
	if a, ok := resp.LocalAddr().(*connAddr); ok {
		r.conn = a.c
	}
	if x.dreq != nil {
		if x.native {
			r.native = x.api
		} else {
			r.tr = x.dreq.Stream()
		}
	}
	x.relay = x.child("stream.relay", spanRelay)
	ctx.SetBodyStream(r, -1)
}

// SupportsBodyWriteTo tells fasthttp to use WriteTo: each Write of the
// relay is then one chunk, flushed to the client.
func (r *relay) SupportsBodyWriteTo() bool { return true }

// Read is never used: fasthttp writes the relay with WriteTo (a fasthttp
// that did not would fail the streaming tests loudly rather than stream
// nothing).
func (r *relay) Read([]byte) (int, error) {
	return 0, errors.New("edge: the SSE relay is written with WriteTo")
}

// heartbeat is called by the upstream connection when a read has waited
// until r.next: it writes an SSE comment to the client. Its error ends the
// blocked upstream read.
func (r *relay) heartbeat() error {
	r.writeDeadline()
	if _, err := r.w.Write(sseHeartbeat); err != nil {
		return errClientGone
	}
	r.next = time.Now().Add(r.every)
	return nil
}

// WriteTo relays the stream to w (fasthttp's chunk writer for the client).
func (r *relay) WriteTo(w io.Writer) (written int64, err error) {
	s, x := r.s, r.x
	r.w, r.wrote = w, true
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic relaying stream", "panic", p)
			x.status = 500
			err = errors.New("edge: panic relaying stream")
		}
	}()
	body := r.resp.BodyStream()
	if body == nil {
		return 0, nil
	}
	if r.conn != nil && r.every > 0 {
		r.next = time.Now().Add(r.every)
		r.conn.hb = r
	}
	var upErr error
	sawDone := false
	for {
		p := r.pending.B
		if cap(p)-len(p) < relayReadSize {
			p = append(p[:cap(p)], make([]byte, relayReadSize)...)[:len(p)]
		}
		n, rerr := body.Read(p[len(p):cap(p)])
		r.pending.B = p[:len(p)+n]
		if n > 0 {
			var d bool
			r.out.B, d = r.takeEvents(r.out.B[:0])
			sawDone = sawDone || d
			if len(r.pending.B) > r.limit && rerr == nil {
				// An event this long without its end: refuse to hold more.
				rerr = errEventTooLarge
				r.pending.B = r.pending.B[:0]
			}
			if out := r.out.B; len(out) > 0 {
				r.writeDeadline()
				m, werr := w.Write(out)
				written += int64(m)
				if werr != nil {
					x.aborted = true
					err = werr
					break
				}
				r.next = time.Now().Add(r.every)
			}
		}
		if rerr != nil {
			if errors.Is(rerr, errClientGone) {
				x.aborted = true
				err = rerr
			} else if rerr != io.EOF {
				upErr = rerr
			}
			break
		}
	}
	if r.conn != nil {
		r.conn.hb = nil
	}
	if x.aborted {
		x.bytesOut += int(written)
		return written, err
	}
	out := r.out.B[:0]
	if len(bytes.TrimSpace(r.pending.B)) > 0 {
		var d bool
		out, d = r.appendEvent(out, bytes.TrimRight(r.pending.B, "\r\n"))
		sawDone = sawDone || d
	}
	if r.tr != nil && r.tr.Done() {
		sawDone = true // the translator ended the stream (an upstream error event)
	}
	if upErr != nil || !sawDone {
		e := &APIError{Type: "server_error", Code: "upstream_stream_error", Message: "upstream " + x.service + " ended the stream early"}
		switch {
		case upErr == errEventTooLarge:
			e.Code, e.Message = "upstream_answer_too_large", "upstream "+x.service+" sent a stream event larger than this edge's limit ("+strconv.Itoa(r.limit)+" bytes)"
			r.s.log.Warn("stream event over the limit: stream cut", "service", x.service, "limit", r.limit)
		case upErr != nil && isTimeout(upErr):
			e.Code, e.Message = "upstream_timeout", "upstream "+x.service+" went silent for too long"
		}
		switch {
		case r.tr != nil:
			out = r.tr.Fail(out, dialect.ErrorInfo{Status: 502, Type: e.Type, Code: e.Code, Message: e.Message})
		case r.native != dialect.APIChat:
			out = appendNativeStreamError(out, r.native, e, r.events)
		default:
			out = append(out, "data: "...)
			out = appendErrorJSON(out, e)
			out = append(out, "\n\n"...)
		}
		x.errCode = e.Code
		x.status = 502
	}
	r.out.B = out
	if len(out) > 0 {
		r.writeDeadline()
		m, werr := w.Write(out)
		written += int64(m)
		if werr != nil {
			x.aborted = true
			err = werr
		}
	}
	x.bytesOut += int(written)
	return written, err
}

// Close ends the relay: fasthttp calls it once the body is written, or when
// it drops the response unwritten (the client went away first).
func (r *relay) Close() error {
	if r.done {
		return nil
	}
	r.done = true
	if r.conn != nil {
		r.conn.hb = nil
	}
	if !r.wrote {
		r.x.aborted = true
	}
	// Closing the body of an unfinished stream closes the upstream
	// connection: the upstream sees the client go.
	_ = r.resp.CloseBodyStream()
	fasthttp.ReleaseResponse(r.resp)
	r.x.finish()
	pending, out := r.pending, r.out
	*r = relay{pending: pending, out: out, done: true}
	if cap(pending.B) > 1<<20 || cap(out.B) > 1<<20 {
		pending.B, out.B = nil, nil // an oversized event: do not keep its buffers
	}
	relayPool.Put(r)
	return nil
}

// errEventTooLarge ends a stream whose pending event passed the limit.
var errEventTooLarge = errors.New("stream event too large")

// writeDeadline bounds the next write to the client: Timeouts.Write from
// now, and never past the stream's end.
func (r *relay) writeDeadline() {
	if r.client == nil {
		return
	}
	d := time.Now().Add(r.s.cfg.Timeouts.Write)
	if !r.end.IsZero() && r.end.Before(d) {
		d = r.end
	}
	_ = r.client.SetWriteDeadline(d)
}

// takeEvents appends every complete event of r.pending to out and keeps
// the incomplete rest. Each byte is scanned for a terminator once (the
// search resumes where the last one stopped, minus the two bytes a
// terminator may straddle), and the rest is moved to the front once per
// read, so an event arriving in many reads costs linear time.
func (r *relay) takeEvents(out []byte) ([]byte, bool) {
	buf := r.pending.B
	start, sawDone := 0, false
	for {
		end, next := eventEndFrom(buf, start, max(start, r.scanned-2))
		if end < 0 {
			break
		}
		var d bool
		out, d = r.appendEvent(out, buf[start:end])
		sawDone = sawDone || d
		start = next
	}
	if start > 0 {
		r.pending.B = append(buf[:0], buf[start:]...)
	}
	r.scanned = len(r.pending.B)
	return out, sawDone
}

// eventEnd finds the end of the first complete SSE event in b: end is the
// length of the event without its blank-line terminator, next the start of
// what follows. (-1, -1) when no event is complete.
func eventEnd(b []byte) (end, next int) {
	e, n := eventEndFrom(b, 0, 0)
	return e, n
}

// eventEndFrom is eventEnd for the event starting at b[start:], searching
// for its terminator from b[from:] (from >= start); offsets index b.
func eventEndFrom(b []byte, start, from int) (end, next int) {
	for i := from; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		// "\n\n" or "\n\r\n"
		if i+1 < len(b) && b[i+1] == '\n' {
			e := i
			if e > start && b[e-1] == '\r' {
				e--
			}
			return e, i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			e := i
			if e > start && b[e-1] == '\r' {
				e--
			}
			return e, i + 3
		}
	}
	return -1, -1
}

// appendEvent appends one event (given without terminator) plus "\n\n" to
// out; it strips reasoning fields from data lines when asked, and accounts
// tokens and TTFT. It reports whether the event was [DONE].
func (r *relay) appendEvent(out, ev []byte) ([]byte, bool) {
	x := r.x
	done := false
	isData := false
	rest := ev
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		if bytes.HasPrefix(line, sseData) {
			p := bytes.TrimLeft(line[len(sseData):], " ")
			if bytes.HasPrefix(p, sseDone) {
				done = true
			} else {
				isData = true
			}
		}
	}
	if isData {
		if x.ttft == 0 {
			x.ttft = time.Since(x.upStart)
		}
		x.tokens++
		if x.rt != nil {
			x.traceStreamUsage(ev)
		}
	}
	if mutant == "relay_drop_last" && done {
		return out, done
	}
	if r.tr != nil {
		return r.translate(out, ev, done)
	}
	if r.native != dialect.APIChat {
		r.events++
		done = nativeStreamEnd(ev)
	}
	if !r.strip || !isData || !bytes.Contains(ev, []byte(`"reasoning`)) {
		out = append(out, ev...)
		return append(out, "\n\n"...), done
	}
	rest = ev
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimRight(line, "\r")
		if bytes.HasPrefix(line, sseData) {
			p := bytes.TrimLeft(line[len(sseData):], " ")
			if len(p) > 0 && p[0] == '{' {
				out = append(out, "data: "...)
				out, _ = stripKeys(out, p, reasoningKeys)
				out = append(out, '\n')
				continue
			}
		}
		out = append(out, line...)
		out = append(out, '\n')
	}
	return append(out, '\n'), done
}

// translate appends the client events one upstream Chat Completions event
// makes (its data lines fed to the dialect's stream translator, stripped
// of reasoning first when the policy says so); [DONE] finishes the
// translated stream. It reports whether the stream is over.
func (r *relay) translate(out, ev []byte, done bool) ([]byte, bool) {
	if r.tr.Done() {
		return out, true
	}
	rest := ev
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		line = bytes.TrimRight(line, "\r")
		if !bytes.HasPrefix(line, sseData) {
			continue
		}
		p := bytes.TrimLeft(line[len(sseData):], " ")
		if bytes.HasPrefix(p, sseDone) {
			return r.tr.Finish(out), true
		}
		if r.strip && bytes.Contains(p, []byte(`"reasoning`)) {
			sb := getBuf()
			sb.B, _ = stripKeys(sb.B[:0], p, reasoningKeys)
			out, _ = r.tr.Feed(out, sb.B)
			putBuf(sb)
		} else {
			out, _ = r.tr.Feed(out, p)
		}
		if r.tr.Done() {
			return out, true
		}
	}
	return out, done
}
