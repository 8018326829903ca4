package edge

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// upstreams caches one pair of HostClients per upstream endpoint: a
// buffered one for ordinary answers (bounded by Timeouts.Request through
// DoDeadline) and a streaming one whose connections apply Timeouts.StreamIdle
// to every read, so a stream may last long while silence may not.
type upstreams struct {
	cfg *Config
	m   sync.Map // endpoint -> *upClient
}

type upClient struct {
	plain, stream *fasthttp.HostClient
}

func (u *upstreams) get(endpoint string) (*upClient, error) {
	if v, ok := u.m.Load(endpoint); ok {
		return v.(*upClient), nil
	}
	pu, err := url.Parse(endpoint)
	if err != nil || pu.Host == "" {
		return nil, errors.New("bad service endpoint " + endpoint)
	}
	tls := pu.Scheme == "https"
	addr := pu.Host
	if _, _, err := net.SplitHostPort(addr); err != nil {
		if tls {
			addr += ":443"
		} else {
			addr += ":80"
		}
	}
	connect := u.cfg.Timeouts.Connect
	idle := u.cfg.Timeouts.StreamIdle
	mk := func(streaming bool) *fasthttp.HostClient {
		hc := &fasthttp.HostClient{
			Addr:                      addr,
			IsTLS:                     tls,
			Name:                      "geniehive-edge",
			MaxConns:                  maxConns(streaming),
			MaxConnWaitTimeout:        time.Second,
			MaxIdleConnDuration:       60 * time.Second,
			MaxIdemponentCallAttempts: 1,
			RetryIf:                   func(*fasthttp.Request) bool { return false },
			ReadBufferSize:            16 << 10,
			WriteBufferSize:           16 << 10,
			DisablePathNormalizing:    true,
			MaxResponseBodySize:       256 << 20,
			StreamResponseBody:        streaming,
		}
		dialer := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
		hc.Dial = func(a string) (net.Conn, error) {
			c, err := dialer.Dial("tcp", a)
			if err != nil {
				return nil, err
			}
			if streaming && idle > 0 {
				return &idleConn{Conn: c, idle: idle}, nil
			}
			return c, nil
		}
		return hc
	}
	c := &upClient{plain: mk(false), stream: mk(true)}
	v, _ := u.m.LoadOrStore(endpoint, c)
	return v.(*upClient), nil
}

// maxConns caps connections per upstream. A stream holds its connection for
// its whole life, so the streaming client's cap is high (5,000 idle streams
// to one upstream must fit); past a cap a request waits up to a second for a
// free connection rather than failing at once.
func maxConns(streaming bool) int {
	if streaming {
		return 1 << 16
	}
	return 4096
}

// idleConn bounds every read by idle (or by the deadline fasthttp set, when
// sooner): a stream may run long, but an upstream silent for longer than
// idle is cut.
type idleConn struct {
	net.Conn
	idle time.Duration
	hard time.Time // deadline set by the client (DoDeadline), zero = none
}

func (c *idleConn) SetReadDeadline(t time.Time) error {
	c.hard = t
	return c.Conn.SetReadDeadline(t)
}

func (c *idleConn) SetDeadline(t time.Time) error {
	c.hard = t
	return c.Conn.SetDeadline(t)
}

func (c *idleConn) Read(p []byte) (int, error) {
	d := time.Now().Add(c.idle)
	if !c.hard.IsZero() && c.hard.Before(d) {
		d = c.hard
	}
	_ = c.Conn.SetReadDeadline(d)
	return c.Conn.Read(p)
}

// Request headers never forwarded upstream: hop-by-hop (RFC 9110 7.6.1),
// the client's credentials, and what the edge sets itself.
var skipReqHeaders = []string{
	"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
	"te", "trailer", "transfer-encoding", "upgrade",
	"authorization", "x-api-key", "cookie",
	"host", "content-length", "content-type", "accept-encoding",
}

func skipHeader(k []byte) bool {
	for _, h := range skipReqHeaders {
		if len(h) == len(k) && strings.EqualFold(h, string(k)) {
			return true
		}
	}
	return false
}

// copyRequestHeaders copies end-to-end request headers (also dropping any
// named in the client's Connection header).
func copyRequestHeaders(dst *fasthttp.Request, src *fasthttp.RequestHeader) {
	conn := src.Peek(fasthttp.HeaderConnection)
	for k, v := range src.All() {
		if skipHeader(k) {
			continue
		}
		if len(conn) > 0 && connectionNames(conn, k) {
			continue
		}
		dst.Header.SetBytesKV(k, v)
	}
	if ct := src.ContentType(); len(ct) > 0 {
		dst.Header.SetContentTypeBytes(ct)
	}
}

// connectionNames reports whether header name k is listed in a Connection value.
func connectionNames(conn, k []byte) bool {
	for len(conn) > 0 {
		i := 0
		for i < len(conn) && conn[i] != ',' {
			i++
		}
		tok := strings.TrimSpace(string(conn[:i]))
		if strings.EqualFold(tok, string(k)) {
			return true
		}
		if i == len(conn) {
			break
		}
		conn = conn[i+1:]
	}
	return false
}
