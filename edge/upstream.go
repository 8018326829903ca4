package edge

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/fleet"
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
	// plain holds one buffered client per operation, each bounding the
	// answer it buffers by that operation's AnswerLimits (one endpoint,
	// say an Ollama, may serve chat and embeddings alike).
	plain  [nKinds]*plainPool
	stream *fasthttp.HostClient
}

// nKinds is the number of operations with a buffered-answer limit.
const nKinds = 5

var kindsByIndex = [nKinds]fleet.Kind{fleet.KindChat, fleet.KindEmbeddings, fleet.KindTranscription, fleet.KindSpeech, fleet.KindImages}

// plainFor is the buffered clients' pool for operation k.
func (c *upClient) plainFor(k fleet.Kind) *plainPool {
	for i, ki := range kindsByIndex {
		if ki == k {
			return c.plain[i]
		}
	}
	return c.plain[0]
}

// closeIdle closes every idle upstream connection (at stop).
func (u *upstreams) closeIdle() {
	u.m.Range(func(_, v any) bool {
		c := v.(*upClient)
		for _, p := range c.plain {
			p.closeIdle()
		}
		c.stream.CloseIdleConnections()
		return true
	})
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
	idle := u.cfg.Timeouts.StreamIdle // applies to streaming connections only
	mk := func(streaming bool, answerLimit int, owner *plainClient) *fasthttp.HostClient {
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
			MaxResponseBodySize:       answerLimit,
			StreamResponseBody:        streaming,
		}
		dialer := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
		hc.Dial = func(a string) (net.Conn, error) {
			c, err := dialer.Dial("tcp", a)
			if err != nil {
				return nil, err
			}
			if streaming {
				ic := &idleConn{Conn: c, idle: idle}
				ic.laddr = connAddr{Addr: c.LocalAddr(), c: ic}
				return ic, nil
			}
			return &watchConn{Conn: c, owner: owner}, nil
		}
		return hc
	}
	c := &upClient{stream: mk(true, 0, nil)}
	every := u.cfg.Timeouts.Heartbeat
	for i, k := range kindsByIndex {
		limit := u.cfg.answerLimitFor(k)
		c.plain[i] = &plainPool{max: maxConns(false), mk: func(pc *plainClient) *fasthttp.HostClient {
			pc.every = every
			hc := mk(false, limit, pc)
			hc.MaxConns = 1
			return hc
		}}
	}
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

// idleConn is a streaming upstream connection. Every read is bounded by
// idle (or by the deadline fasthttp set, when sooner): a stream may run
// long, but an upstream silent for longer than idle is cut.
//
// While a relay streams from it (hb set), a read that has waited until the
// relay's next heartbeat is due calls hb.heartbeat() — on the reading
// goroutine, the relay's own — and goes on waiting; the heartbeat's error
// (the client is gone) ends the read instead. The idle bound counts from
// the start of the read, so heartbeats do not extend it. Read deadlines are
// goroutine-safe and a timed-out read leaves the connection usable, so the
// byte stream fasthttp parses is never disturbed.
type idleConn struct {
	net.Conn
	idle  time.Duration // 0 = no idle bound
	hard  time.Time     // deadline set by the client (DoDeadline), zero = none
	laddr connAddr
	hb    *relay // set by the relay reading this connection's stream
}

// connAddr is the connection's local address, carrying the connection:
// fasthttp hands it back as Response.LocalAddr, which is how a relay finds
// the connection its stream arrives on.
type connAddr struct {
	net.Addr
	c *idleConn
}

func (c *idleConn) LocalAddr() net.Addr { return &c.laddr }

func (c *idleConn) SetReadDeadline(t time.Time) error {
	c.hard = t
	return c.Conn.SetReadDeadline(t)
}

func (c *idleConn) SetDeadline(t time.Time) error {
	c.hard = t
	return c.Conn.SetDeadline(t)
}

func (c *idleConn) Read(p []byte) (int, error) {
	var limit time.Time // idle or hard deadline, whichever is sooner
	if c.idle > 0 {
		limit = time.Now().Add(c.idle)
	}
	if !c.hard.IsZero() && (limit.IsZero() || c.hard.Before(limit)) {
		limit = c.hard
	}
	for {
		d, beat := limit, false
		if hb := c.hb; hb != nil && (d.IsZero() || hb.next.Before(d)) {
			d, beat = hb.next, true
		}
		_ = c.Conn.SetReadDeadline(d)
		n, err := c.Conn.Read(p)
		if !beat || n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if herr := c.hb.heartbeat(); herr != nil {
			return 0, herr
		}
	}
}

// Request headers never forwarded upstream: hop-by-hop (RFC 9110 7.6.1),
// the client's credentials, what the edge sets itself, and the client's
// claims about where it is (X-Forwarded-For and X-Real-IP are set from the
// connection; Forwarded and the other X-Forwarded-* are dropped).
var skipReqHeaders = []string{
	"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
	"te", "trailer", "transfer-encoding", "upgrade",
	"authorization", "x-api-key", "cookie",
	"host", "content-length", "content-type", "accept-encoding",
	"forwarded", "x-forwarded-for", "x-real-ip", "x-forwarded-host", "x-forwarded-proto", "x-geniehive-refused",
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
