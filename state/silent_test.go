package state_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/internal/testredis"
	"github.com/geniehive/geniehive/state"
)

// TestWatcherResubscribesAfterSilentDeath: a subscription whose server
// stops answering without closing the connection (a SIGKILLed container or
// a dead host sends no RST, as the chaos suite's Redis kills show) is
// found out by the watcher's PING and renewed, with a full rebuild. The
// watcher's periodic resync is off, so the heartbeat written while its
// subscription is dead reaches it only that way.
func TestWatcherResubscribesAfterSilentDeath(t *testing.T) {
	srv := testredis.Private(t)
	px := startSilenceProxy(t, srv.Addr())
	wc := redis.NewClient(&redis.Options{Addr: px.addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { wc.Close() })
	const prefix = "ght:silent:"
	w := state.NewWatcher(state.New(wc, prefix), state.WatcherOptions{Resync: time.Hour})
	writer := state.New(srv.Client(t), prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	waitFor(t, 5*time.Second, func() bool { return w.Current().RedisOK })

	if err := writer.WriteHeartbeat(ctx, node("a", "chat"), time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { _, ok := w.Current().ByID["a/chat"]; return ok })
	if n := px.silence(); n != 1 {
		t.Fatalf("silenced %d subscription connections, want 1", n)
	}
	if err := writer.WriteHeartbeat(ctx, node("b", "chat"), time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { _, ok := w.Current().ByID["b/chat"]; return ok })
	if px.subscriptions() < 2 {
		t.Fatalf("%d subscriptions through the proxy: the watcher saw b without subscribing again", px.subscriptions())
	}
}

// silenceProxy forwards TCP to a Redis server; silence makes the
// connections that subscribed so far swallow everything in both directions
// while staying open, as a dead peer's connection does.
type silenceProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []*proxied
	nsubs  int
	target string
}

type proxied struct {
	client, server net.Conn
	mu             sync.Mutex
	sub, silent    bool
}

func startSilenceProxy(t *testing.T, target string) *silenceProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &silenceProxy{ln: ln, target: target}
	go p.accept()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.client.Close()
			c.server.Close()
		}
	})
	return p
}

func (p *silenceProxy) addr() string { return p.ln.Addr().String() }

func (p *silenceProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxied{client: c, server: s}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		go p.pipe(pc, c, s, true)
		go p.pipe(pc, s, c, false)
	}
}

func (p *silenceProxy) pipe(pc *proxied, src, dst net.Conn, fromClient bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			dst.Close()
			return
		}
		pc.mu.Lock()
		newSub := fromClient && !pc.sub && bytes.Contains(bytes.ToLower(buf[:n]), []byte("psubscribe"))
		if newSub {
			pc.sub = true
		}
		silent := pc.silent
		pc.mu.Unlock()
		if newSub {
			p.mu.Lock()
			p.nsubs++
			p.mu.Unlock()
		}
		if silent {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			src.Close()
			return
		}
	}
}

// silence silences every subscription connection so far and returns how many.
func (p *silenceProxy) silence() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.conns {
		c.mu.Lock()
		if c.sub && !c.silent {
			c.silent = true
			n++
		}
		c.mu.Unlock()
	}
	return n
}

func (p *silenceProxy) subscriptions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nsubs
}
