package edge

import (
	"bytes"
	"errors"
	"io"

	"github.com/valyala/fasthttp"
)

// The edge reads request bodies itself (the fasthttp server streams them:
// Server.StreamRequestBody), so that nothing is read, let alone allocated,
// before the key and the declared size were checked from the headers, and
// so that a body's buffer grows with the bytes that actually arrived rather
// than with what Content-Length announces (fasthttp sizes a non-streamed
// body's buffer from Content-Length before reading a byte: 40 connections
// announcing 25 MiB pinned 1 GiB).

// hdrRefused marks a request whose body the header hook refused: "401"
// (no valid key, or a key header twice, while auth is on; the handler
// answers 401 or 400) or "413" (declared size over the route's limit). A
// client's own header of that name is removed first.
var hdrRefused = []byte("X-Geniehive-Refused")

// headerReceived is the fasthttp server's HeaderReceived hook: it runs
// when a request's headers are in and before any body byte is read
// (fasthttp would otherwise wait for the first 8 KiB of the body before
// calling the handler). A body that will be refused — no valid key while
// auth is on, or a Content-Length over the route's limit — is not read at
// all: the request is handed to the handler as bodiless, with
// Connection: close (the unread body must not be taken for the next
// request), and the handler answers 401 or 413 from the headers.
// Otherwise the route's limit bounds what fasthttp prefetches.
func (s *Server) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	h.DelBytes(hdrRefused)
	cl := h.ContentLength()
	if cl == 0 || cl == -2 {
		return fasthttp.RequestConfig{}
	}
	limit, known := s.routeBodyLimit(h.RequestURI())
	snap := s.watcher.Current()
	switch {
	case s.keys.authEnabled(snap) && (duplicateKeyHeader(h) || s.keys.lookup(presentedKey(h), snap) == nil):
		h.SetBytesKV(hdrRefused, strNoKey)
	case known && cl > limit:
		h.SetBytesKV(hdrRefused, strTooLarge)
	default:
		if known {
			return fasthttp.RequestConfig{MaxRequestBodySize: limit}
		}
		return fasthttp.RequestConfig{}
	}
	h.SetContentLength(0)
	h.SetConnectionClose()
	return fasthttp.RequestConfig{}
}

var (
	strTooLarge = []byte("413")
	strNoKey    = []byte("401")
)

// expectContinue is the fasthttp server's ExpectHandler, called for a
// request with "Expect: 100-continue" after its headers (and
// headerReceived) and before "100 Continue" is sent. A request the header
// hook refused (no valid key, or a declared size over the route's limit)
// gets its 401 or 413 now, so the client never sends the body: the
// handler runs here (it answers from the headers, reading no body) and its
// status is returned; fasthttp then writes that answer, closes the
// connection and does not call the handler again. Without it fasthttp
// sent "100 Continue" first and the client started sending its body.
func (s *Server) expectContinue(ctx *fasthttp.RequestCtx) int {
	if len(ctx.Request.Header.PeekBytes(hdrRefused)) == 0 {
		return fasthttp.StatusContinue
	}
	s.Handler(ctx)
	if st := ctx.Response.StatusCode(); st != fasthttp.StatusContinue && st >= 400 {
		return st
	}
	// The handler let it through after all (it cannot, from a refusal
	// mark, but a refusal must never turn into a body read).
	return fasthttp.StatusExpectationFailed
}

// routeBodyLimit is the body limit of the route a raw request URI names
// (known false for paths it does not recognise: their handlers apply
// their own limits, or read no body).
func (s *Server) routeBodyLimit(uri []byte) (int, bool) {
	for i, c := range uri {
		if c == '?' {
			uri = uri[:i]
			break
		}
	}
	for i := range inferenceRoutes {
		if string(uri) == inferenceRoutes[i].full {
			return s.cfg.limitFor(inferenceRoutes[i].kind), true
		}
	}
	if len(uri) > len("/v1/cluster/") && string(uri[:len("/v1/cluster/")]) == "/v1/cluster/" {
		return clusterBodyLimit, true
	}
	return 0, false
}

// bodyReadChunk is the first allocation for a body of unknown or large
// size; the buffer then doubles as bytes arrive.
const bodyReadChunk = 16 << 10

var errBodyRead = &APIError{Status: 400, Type: "invalid_request_error", Code: "malformed_request",
	Message: "request body could not be read"}

var errBodyTimeout = &APIError{Status: 408, Type: "invalid_request_error", Code: "request_timeout",
	Message: "request body not received in time"}

// readBody returns the request body, at most limit bytes, read into bb
// (which the caller releases after its last use of the body). A declared
// Content-Length over limit is refused before any byte is read; a body that
// turns out longer is refused as soon as it passes limit. Either way the
// answer is errTooLarge (413) and the connection is closed (fasthttp does
// not drain more than 256 KiB of an unread body).
func readBody(ctx *fasthttp.RequestCtx, limit int, bb *bbuf) ([]byte, error) {
	if cl := ctx.Request.Header.ContentLength(); cl > limit || bytes.Equal(ctx.Request.Header.PeekBytes(hdrRefused), strTooLarge) {
		ctx.SetConnectionClose()
		return nil, errTooLarge
	}
	rs := ctx.RequestBodyStream()
	if rs == nil {
		// Not streamed: a body fasthttp already holds (no body, or a
		// server built without StreamRequestBody).
		b := ctx.Request.Body()
		if len(b) > limit {
			return nil, errTooLarge
		}
		return b, nil
	}
	b := bb.B[:0]
	for {
		if len(b) == cap(b) {
			n := max(2*cap(b), bodyReadChunk)
			n = min(n, limit+1)
			if n <= len(b) {
				n = len(b) + 1
			}
			nb := make([]byte, len(b), n)
			copy(nb, b)
			b = nb
		}
		n, err := rs.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		bb.B = b
		if len(b) > limit {
			ctx.SetConnectionClose()
			return nil, errTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			ctx.SetConnectionClose()
			if isTimeout(err) {
				return nil, errBodyTimeout
			}
			if errors.Is(err, fasthttp.ErrBodyTooLarge) {
				return nil, errTooLarge
			}
			return nil, errBodyRead
		}
	}
}
