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

// SentinelSettled waits, up to limit, until the Sentinel group of
// GENIEHIVE_TEST_REDIS has no failover left half done: every sentinel names
// the same master; that server says it is the master and streams to every
// replica the sentinels list (state=online in its INFO); each of those says
// it is a replica of that master with its link up; and every sentinel's
// own view agrees (SENTINEL REPLICAS: role-reported slave,
// master-link-status ok, that master, no down or disconnected flag). A
// no-op when the shared server is not a Sentinel group.
//
// Why: after SENTINEL FAILOVER the old master stays an independent master
// that accepts writes until a sentinel converts it (+convert-to-slave):
// sentinel.c (sentinelRefreshInstanceInfo) waits SENTINEL_PUBLISH_PERIOD*4
// after a listed replica reports role master before it sends REPLICAOF,
// about ten seconds in scripts/redis-topology.sh's group. The sentinels
// list it as a replica at once, so a failover in that window may promote
// it, and every write since the previous failover is lost. Each sentinel
// learns of the conversion only at its next INFO of the replica (every 10s):
// a failover before that can be undone by a sentinel whose view is stale
// (it converts the just-promoted replica back: -failover-abort-slave-timeout),
// so the sentinels' views are waited for too; in all, up to about 20s after
// a failover.
func SentinelSettled(t testing.TB, limit time.Duration) {
	t.Helper()
	u := URL(t)
	scheme, rest, _ := strings.Cut(u, "://")
	if scheme != "redis+sentinel" && scheme != "rediss+sentinel" {
		return
	}
	o, err := redis.ParseFailoverURL(strings.TrimSuffix(scheme, "+sentinel") + "://" + rest)
	if err != nil {
		t.Fatalf("GENIEHIVE_TEST_REDIS: %v", err)
	}
	node := func(addr string) *redis.Client {
		return redis.NewClient(&redis.Options{Addr: addr, Username: o.Username, Password: o.Password,
			TLSConfig: o.TLSConfig, ContextTimeoutEnabled: true, MaxRetries: -1})
	}
	var sentinels []*redis.SentinelClient
	for _, a := range o.SentinelAddrs {
		sc := redis.NewSentinelClient(&redis.Options{Addr: a, Username: o.SentinelUsername,
			Password: o.SentinelPassword, TLSConfig: o.TLSConfig, ContextTimeoutEnabled: true, MaxRetries: -1})
		defer sc.Close()
		sentinels = append(sentinels, sc)
	}
	info := func(ctx context.Context, addr string) (map[string]string, error) {
		c := node(addr)
		defer c.Close()
		s, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return nil, err
		}
		m := map[string]string{}
		for _, l := range strings.Split(s, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(l), ":"); ok {
				m[k] = v
			}
		}
		return m, nil
	}
	// settled says what is still unsettled ("" once settled).
	settled := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		master := ""
		for _, sc := range sentinels {
			a, err := sc.GetMasterAddrByName(ctx, o.MasterName).Result()
			if err != nil || len(a) != 2 {
				return fmt.Sprintf("sentinel %s: master unknown (%v)", sc, err)
			}
			m := net.JoinHostPort(a[0], a[1])
			if master != "" && m != master {
				return "sentinels name two masters: " + master + " and " + m
			}
			master = m
		}
		mi, err := info(ctx, master)
		if err != nil || mi["role"] != "master" {
			return fmt.Sprintf("master %s: role %q (%v)", master, mi["role"], err)
		}
		online := map[string]bool{}
		for k, v := range mi {
			if strings.HasPrefix(k, "slave") && strings.Contains(v, "state=online") {
				f := map[string]string{}
				for _, kv := range strings.Split(v, ",") {
					if a, b, ok := strings.Cut(kv, "="); ok {
						f[a] = b
					}
				}
				online[net.JoinHostPort(f["ip"], f["port"])] = true
			}
		}
		mhost, mport, _ := net.SplitHostPort(master)
		for _, sc := range sentinels {
			reps, err := sc.Replicas(ctx, o.MasterName).Result()
			if err != nil || len(reps) == 0 {
				return fmt.Sprintf("sentinel %s: no replicas (%v)", sc, err)
			}
			for _, r := range reps {
				addr := net.JoinHostPort(r["ip"], r["port"])
				switch {
				case strings.Contains(r["flags"], "down") || strings.Contains(r["flags"], "disconnected"):
					return "replica " + addr + ": flags " + r["flags"]
				case r["role-reported"] != "slave" || r["master-link-status"] != "ok" ||
					r["master-host"] != mhost || r["master-port"] != mport:
					return fmt.Sprintf("replica %s in sentinel %s's view: role %s, link %s, master %s:%s",
						addr, sc, r["role-reported"], r["master-link-status"], r["master-host"], r["master-port"])
				case !online[addr]:
					return "replica " + addr + ": not streaming from the master"
				}
				ri, err := info(ctx, addr)
				if err != nil || ri["role"] != "slave" || ri["master_link_status"] != "up" ||
					ri["master_host"] != mhost || ri["master_port"] != mport {
					return fmt.Sprintf("replica %s: role %q, link %q, master %s:%s (%v)",
						addr, ri["role"], ri["master_link_status"], ri["master_host"], ri["master_port"], err)
				}
			}
		}
		return ""
	}
	t0 := time.Now()
	deadline := t0.Add(limit)
	first := ""
	for {
		why := settled()
		if why == "" {
			if first != "" {
				t.Logf("the Sentinel group settled in %v (at first: %s)", time.Since(t0).Round(time.Millisecond), first)
			}
			return
		}
		if first == "" {
			first = why
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Sentinel group did not settle in %v: %s", limit, why)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
