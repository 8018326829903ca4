package loadtest

import (
	"bufio"
	"errors"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Forwarder is a zero-logic fasthttp reverse proxy: every request goes to
// one upstream as it came, and the answer comes back as it left. Bodies
// of unknown length (SSE streams) are relayed read by read with a flush
// after each, so chunks are not buffered. It is the floor of any extra
// HTTP hop on a machine: what an edge costs beyond it is the edge's logic.
//
// Start with StartForwarder; Close stops it. Safe for concurrent use.
type Forwarder struct {
	upstream string
	hc       *fasthttp.HostClient
	srv      *fasthttp.Server
	ln       net.Listener
	url      string
}

// NewForwarder returns a forwarder to upstream (a base URL such as
// "http://127.0.0.1:9000") without a listener; serve Handler yourself.
func NewForwarder(upstream string) (*Forwarder, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, errors.New("forwarder: upstream must be an http:// URL with a host")
	}
	addr := u.Host
	if u.Port() == "" {
		addr += ":80"
	}
	f := &Forwarder{upstream: upstream}
	f.hc = &fasthttp.HostClient{
		Addr:                          addr,
		MaxConns:                      1 << 16,
		MaxIdleConnDuration:           time.Minute,
		ReadTimeout:                   10 * time.Minute,
		WriteTimeout:                  time.Minute,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		ReadBufferSize:                16 << 10,
	}
	return f, nil
}

// StartForwarder listens on addr ("127.0.0.1:0" for any port) and forwards
// to upstream.
func StartForwarder(addr, upstream string) (*Forwarder, error) {
	f, err := NewForwarder(upstream)
	if err != nil {
		return nil, err
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	f.ln = ln
	f.url = "http://" + ln.Addr().String()
	f.srv = &fasthttp.Server{
		Handler:                       f.Handler,
		Name:                          "loadtest-forwarder",
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		DisableHeaderNamesNormalizing: true,
		ReadBufferSize:                16 << 10,
		MaxRequestBodySize:            64 << 20,
		Concurrency:                   1 << 20,
	}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// URL is the forwarder's base URL.
func (f *Forwarder) URL() string { return f.url }

// Close stops listening and closes idle connections.
func (f *Forwarder) Close() error {
	if f.srv == nil {
		return nil
	}
	return f.srv.Shutdown()
}

// Handler forwards one request.
func (f *Forwarder) Handler(ctx *fasthttp.RequestCtx) {
	req := fasthttp.AcquireRequest()
	ctx.Request.CopyTo(req)
	req.Header.Del("Connection")
	resp := fasthttp.AcquireResponse()
	resp.StreamBody = true
	err := f.hc.Do(req, resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		code := fasthttp.StatusBadGateway
		if errors.Is(err, fasthttp.ErrTimeout) {
			code = fasthttp.StatusGatewayTimeout
		}
		ctx.SetStatusCode(code)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"error":{"message":"forwarder: ` + strings.ReplaceAll(err.Error(), `"`, `'`) + `","type":"upstream_error","code":null,"param":null}}`)
		return
	}
	resp.Header.CopyTo(&ctx.Response.Header)
	ctx.Response.Header.Del("Connection")
	body := resp.BodyStream()
	if resp.Header.ContentLength() >= 0 || body == nil {
		// Known length: copy it whole (small JSON answers).
		ctx.Response.SetBody(resp.Body()) // Body reads and closes the stream
		fasthttp.ReleaseResponse(resp)
		return
	}
	ctx.Response.Header.SetContentLength(-1)
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		buf := make([]byte, 16<<10)
		for {
			n, err := body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					break
				}
				if werr := w.Flush(); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = resp.CloseBodyStream()
		fasthttp.ReleaseResponse(resp)
	})
}
