package edge

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// A client that hangs up on a non-streaming request must cancel the
// upstream call (the GPU otherwise works on for up to timeouts.request
// while the in-flight lease stays held). fasthttp's client cannot be
// cancelled and does not say which pooled connection a request uses, so a
// buffered request checks out a plainClient — a HostClient of one
// connection — for itself: that connection (a watchConn) then knows whose
// request it carries. While it waits for the answer it wakes every
// Timeouts.Heartbeat and peeks at the client's connection, on the
// handler's own goroutine (no goroutine, no timer per request); a client
// that closed it ends the read with errClientGone, fasthttp closes the
// upstream connection, and the upstream sees its client go.

// plainClient is a single-connection upstream client, used by one request
// at a time.
type plainClient struct {
	hc    *fasthttp.HostClient
	watch net.Conn      // the client connection of the request using it; nil when idle
	every time.Duration // how often a waiting read checks on the client
	gone  bool          // the watched client went away (fasthttp reports the read error as its own)
}

// plainPool hands out plainClients for one endpoint and operation.
type plainPool struct {
	mu   sync.Mutex
	free []*plainClient
	all  []*plainClient
	max  int
	mk   func(pc *plainClient) *fasthttp.HostClient
}

// checkout returns an idle plainClient, or a new one while fewer than max
// exist (fasthttp.ErrNoFreeConns past that).
func (p *plainPool) checkout() (*plainClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.free); n > 0 {
		pc := p.free[n-1]
		p.free = p.free[:n-1]
		return pc, nil
	}
	if len(p.all) >= p.max {
		return nil, fasthttp.ErrNoFreeConns
	}
	pc := &plainClient{}
	pc.hc = p.mk(pc)
	p.all = append(p.all, pc)
	return pc, nil
}

func (p *plainPool) checkin(pc *plainClient) {
	pc.watch = nil
	p.mu.Lock()
	p.free = append(p.free, pc)
	p.mu.Unlock()
}

func (p *plainPool) closeIdle() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pc := range p.all {
		pc.hc.CloseIdleConnections()
	}
}

// watchConn is a buffered client's upstream connection.
type watchConn struct {
	net.Conn
	owner *plainClient
	hard  time.Time // deadline fasthttp set
}

func (c *watchConn) SetReadDeadline(t time.Time) error {
	c.hard = t
	return c.Conn.SetReadDeadline(t)
}

func (c *watchConn) SetDeadline(t time.Time) error {
	c.hard = t
	return c.Conn.SetDeadline(t)
}

func (c *watchConn) Read(p []byte) (int, error) {
	o := c.owner
	if o == nil || o.watch == nil || o.every <= 0 {
		return c.Conn.Read(p)
	}
	for {
		d, check := time.Now().Add(o.every), true
		if !c.hard.IsZero() && c.hard.Before(d) {
			d, check = c.hard, false
		}
		_ = c.Conn.SetReadDeadline(d)
		n, err := c.Conn.Read(p)
		if !check || n > 0 || err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return n, err
		}
		if ClientGone(o.watch) {
			o.gone = true
			return 0, errClientGone
		}
	}
}

// doPlain sends a buffered request on a plainClient of pool p, watching
// the client of ctx while it waits.
func (s *Server) doPlain(ctx *fasthttp.RequestCtx, p *plainPool, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) error {
	pc, err := p.checkout()
	if err != nil {
		return err
	}
	pc.watch, pc.gone = ctx.Conn(), false
	err = pc.hc.DoDeadline(req, resp, deadline)
	if pc.gone {
		err = errClientGone
	}
	p.checkin(pc)
	return err
}
