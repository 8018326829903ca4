// Package testredis gives tests a real Redis.
//
// New returns a client on a shared server and a key prefix no other test
// uses. The server is GENIEHIVE_TEST_REDIS (a redis:// URL) when set;
// otherwise one redis-server per test binary, started on a free loopback
// port and killed with the binary (Pdeathsig). Private starts a dedicated
// server a test may flush, stop and restart.
//
// When no redis-server can be found or started, tests are skipped, except
// under CI=true, where that is a failure.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/state"
)

var (
	sharedOnce sync.Once
	sharedURL  string
	sharedErr  error
	sharedSrv  *Server
)

// unavailable skips, or fails under CI=true.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("redis is required under CI=true: %v", err)
	}
	t.Skipf("no redis available (install redis-server or set GENIEHIVE_TEST_REDIS): %v", err)
}

// URL returns the shared test server's URL, starting it if needed.
func URL(t testing.TB) string {
	t.Helper()
	sharedOnce.Do(func() {
		if u := os.Getenv("GENIEHIVE_TEST_REDIS"); u != "" {
			sharedURL = u
			return
		}
		sharedSrv, sharedErr = start("")
		if sharedErr == nil {
			sharedURL = sharedSrv.URL()
		}
	})
	if sharedErr != nil {
		unavailable(t, sharedErr)
	}
	return sharedURL
}

// New returns a client on the shared server and a fresh key prefix ending in
// ':'. Keys under the prefix are deleted when the test ends. The client is
// the one state.NewClient builds for the URL: a *redis.ClusterClient when
// GENIEHIVE_TEST_REDIS names a Cluster, a Sentinel-backed client for a
// Sentinel group. Tests share the server: they must neither flush it nor
// assume a database number, and must keep to their prefix.
func New(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	c := Client(t)
	prefix := "ght:" + randHex(6) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, k := range Keys(t, c, prefix+"*") {
			c.Del(ctx, k)
		}
	})
	return c, prefix
}

// Client returns a new client to the shared server (see New), closed when
// the test ends.
func Client(t testing.TB) redis.UniversalClient {
	t.Helper()
	c, err := state.NewClient(state.Options{URL: URL(t)})
	if err != nil {
		t.Fatalf("GENIEHIVE_TEST_REDIS: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		c.Close()
		unavailable(t, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// IsCluster reports whether the shared server is a Redis Cluster.
func IsCluster(t testing.TB) bool {
	t.Helper()
	return strings.Contains(strings.SplitN(URL(t), "://", 2)[0], "cluster")
}

// Keys returns the keys matching pattern, SCANning every master of a
// Cluster (KEYS on a cluster client asks one node only).
func Keys(t testing.TB, c redis.UniversalClient, pattern string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var mu sync.Mutex
	var out []string
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			mu.Lock()
			out = append(out, iter.Val())
			mu.Unlock()
		}
		return iter.Err()
	}
	var err error
	if cc, ok := c.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return scan(ctx, m) })
	} else {
		err = scan(ctx, c)
	}
	if err != nil {
		t.Errorf("scan %s: %v", pattern, err)
	}
	sort.Strings(out)
	return out
}

// Server is a redis-server process owned by a test.
type Server struct {
	port int
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Private starts a dedicated redis-server for one test; it is stopped when
// the test ends.
func Private(t testing.TB) *Server {
	t.Helper()
	s, err := start(t.TempDir())
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(s.Stop)
	return s
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return "redis://127.0.0.1:" + strconv.Itoa(s.port) + "/0" }

// Addr is host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Client returns a new client to this server, closed with the test.
func (s *Server) Client(t testing.TB) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// Stop kills the server (SIGKILL: nothing is saved).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart stops the server and starts a fresh, empty one on the same port.
func (s *Server) Restart() error {
	s.Stop()
	return s.run()
}

func start(dir string) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, err
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "geniehive-redis-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	var lastErr error
	for i := 0; i < 5; i++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{port: port, dir: dir}
		if lastErr = s.run(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

func (s *Server) run() error {
	cmd := exec.Command("redis-server",
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() { _ = cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", s.Addr(), 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server exited: %s", b)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.Stop()
	return fmt.Errorf("redis-server on port %d did not come up", s.port)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Sentinel returns a client to the first sentinel and the master name when
// the shared server is a Sentinel group (GENIEHIVE_TEST_REDIS=
// redis+sentinel://...); ok is false otherwise.
func Sentinel(t testing.TB) (sc *redis.SentinelClient, master string, ok bool) {
	t.Helper()
	u := URL(t)
	scheme, rest, _ := strings.Cut(u, "://")
	if scheme != "redis+sentinel" && scheme != "rediss+sentinel" {
		return nil, "", false
	}
	o, err := redis.ParseFailoverURL(strings.TrimSuffix(scheme, "+sentinel") + "://" + rest)
	if err != nil {
		t.Fatalf("GENIEHIVE_TEST_REDIS: %v", err)
	}
	sc = redis.NewSentinelClient(&redis.Options{Addr: o.SentinelAddrs[0], Username: o.SentinelUsername,
		Password: o.SentinelPassword, TLSConfig: o.TLSConfig, ContextTimeoutEnabled: true})
	t.Cleanup(func() { sc.Close() })
	return sc, o.MasterName, true
}
