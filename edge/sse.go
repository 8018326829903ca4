package edge

import (
	"bufio"
	"bytes"
	"io"
	"time"

	"github.com/valyala/fasthttp"
)

type sseChunk struct {
	b   []byte
	err error
}

var (
	sseDone = []byte("[DONE]")
	sseData = []byte("data:")
	// A comment line without the blank line that would end an event: some
	// clients (openai-go v1) dispatch an empty event on a bare comment
	// block and fail to decode it. The comment joins the next event, which
	// every SSE parser ignores.
	sseHeartbeat = []byte(": keep-alive\n")
)

// startRelay answers the client with an SSE stream relayed from resp, event
// by event with a flush per event. It takes ownership of resp and x: the
// stream writer closes the upstream body and finishes x.
//
// A reader goroutine reads the upstream body; the writer (fasthttp's stream
// writer goroutine) writes whole events and flushes each. While the
// upstream is silent the writer sends SSE comment heartbeats, so a client
// that went away is noticed (a write or flush fails) even then; the
// upstream body is closed at once, which closes the upstream connection.
func (s *Server) startRelay(ctx *fasthttp.RequestCtx, x *exchange, resp *fasthttp.Response, strip bool) {
	x.status = 200
	ctx.SetStatusCode(200)
	ctx.SetContentType("text/event-stream")
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.Response.Header.Set("X-Accel-Buffering", "no")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("panic relaying stream", "panic", r)
				x.status = 500
			}
			fasthttp.ReleaseResponse(resp)
			x.finish()
		}()
		s.relay(w, x, resp, strip)
	})
}

func (s *Server) relay(w *bufio.Writer, x *exchange, resp *fasthttp.Response, strip bool) {
	body := resp.BodyStream()
	if body == nil {
		_ = resp.CloseBodyStream()
		return
	}
	ch := make(chan sseChunk)
	ack := make(chan struct{})
	done := make(chan struct{})
	exited := make(chan struct{})
	rb := getBuf()
	if cap(rb.B) < 16<<10 {
		rb.B = make([]byte, 16<<10)
	}
	rb.B = rb.B[:cap(rb.B)]
	go func() {
		defer close(exited)
		for {
			n, err := body.Read(rb.B)
			select {
			case ch <- sseChunk{rb.B[:n], err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
			select {
			case <-ack:
			case <-done:
				return
			}
		}
	}()

	pending := getBuf()
	scratch := getBuf()
	hbEvery := s.cfg.Timeouts.Heartbeat
	hb := time.NewTimer(hbEvery)
	var upErr error
	sawDone := false
	ended := false
loop:
	for {
		select {
		case c := <-ch:
			if len(c.b) > 0 {
				pending.B = append(pending.B, c.b...)
				wrote := false
				for {
					end, next := eventEnd(pending.B)
					if end < 0 {
						break
					}
					d, n := s.writeEvent(w, x, pending.B[:end], strip, scratch)
					sawDone = sawDone || d
					x.bytesOut += n
					wrote = true
					pending.B = append(pending.B[:0], pending.B[next:]...)
				}
				if wrote {
					if err := w.Flush(); err != nil {
						x.aborted = true
						break loop
					}
					hb.Reset(hbEvery)
				}
			}
			if c.err != nil {
				if c.err != io.EOF {
					upErr = c.err
				}
				ended = true
				break loop
			}
			ack <- struct{}{}
		case <-hb.C:
			if _, err := w.Write(sseHeartbeat); err != nil {
				x.aborted = true
				break loop
			}
			if err := w.Flush(); err != nil {
				x.aborted = true
				break loop
			}
			hb.Reset(hbEvery)
		}
	}
	hb.Stop()
	close(done)
	_ = resp.CloseBodyStream() // interrupts a blocked read: the upstream sees the connection close
	<-exited
	putBuf(rb)
	if !x.aborted {
		if ended && len(bytes.TrimSpace(pending.B)) > 0 {
			d, n := s.writeEvent(w, x, bytes.TrimRight(pending.B, "\r\n"), strip, scratch)
			sawDone = sawDone || d
			x.bytesOut += n
		}
		if upErr != nil || !sawDone {
			e := &APIError{Type: "server_error", Code: "upstream_stream_error", Message: "upstream " + x.service + " ended the stream early"}
			if upErr != nil && isTimeout(upErr) {
				e.Code, e.Message = "upstream_timeout", "upstream "+x.service+" went silent for too long"
			}
			scratch.B = append(scratch.B[:0], "data: "...)
			scratch.B = appendErrorJSON(scratch.B, e)
			scratch.B = append(scratch.B, "\n\n"...)
			_, _ = w.Write(scratch.B)
			x.errCode = e.Code
			x.status = 502
		}
		if err := w.Flush(); err != nil {
			x.aborted = true
		}
	}
	putBuf(pending)
	putBuf(scratch)
}

// eventEnd finds the end of the first complete SSE event in b: end is the
// length of the event without its blank-line terminator, next the start of
// what follows. (-1, -1) when no event is complete.
func eventEnd(b []byte) (end, next int) {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' {
			continue
		}
		// "\n\n" or "\n\r\n"
		if i+1 < len(b) && b[i+1] == '\n' {
			e := i
			if e > 0 && b[e-1] == '\r' {
				e--
			}
			return e, i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			e := i
			if e > 0 && b[e-1] == '\r' {
				e--
			}
			return e, i + 3
		}
	}
	return -1, -1
}

// writeEvent writes one event (without terminator) plus "\n\n"; it strips
// reasoning fields from data lines when asked, and accounts tokens and
// TTFT. It reports whether the event was [DONE] and the bytes written.
func (s *Server) writeEvent(w *bufio.Writer, x *exchange, ev []byte, strip bool, scratch *bbuf) (bool, int) {
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
	}
	if !strip || !isData || !bytes.Contains(ev, []byte(`"reasoning`)) {
		n, _ := w.Write(ev)
		m, _ := w.WriteString("\n\n")
		return done, n + m
	}
	out := scratch.B[:0]
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
	out = append(out, '\n')
	scratch.B = out
	n, _ := w.Write(out)
	return done, n
}
