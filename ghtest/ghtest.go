// Package ghtest starts a GenieHive cluster in Docker for integration tests:
// Redis, one or more edge replicas (behind HAProxy when more than one), node
// agents, and simulated upstreams or the caller's own, all on a private
// user-defined network where containers reach each other by alias. The
// caller gets an OpenAI base URL and API key:
//
//	c, err := ghtest.Run(ctx, ghtest.WithEdges(3))
//	...
//	defer c.Terminate(context.Background())
//	client := openai.NewClient(option.WithBaseURL(c.BaseURL), option.WithAPIKey(c.APIKey))
//
// or, inside a test, `c := ghtest.Start(t)`, which terminates the cluster
// when the test ends.
//
// # Images
//
// Three images: the geniehive image (one image, every subcommand), Redis and
// HAProxy. Each comes from an option, else the GENIEHIVE_IMAGE, REDIS_IMAGE
// and LB_IMAGE environment variables, else the public names
// (DefaultGenieHiveImage, ...). Run never builds or pulls on its own beyond
// what the Docker engine does for a missing image; on machines without a
// registry build them first with deploy/build-images.sh.
//
// # Redis topologies
//
// WithRedisTopology replaces the single Redis with a Sentinel group or a
// Redis Cluster, from the same Redis image (redistopo.go); Store follows
// the topology from the host, through failovers.
//
// # Ryuk
//
// The cluster does not rely on the Ryuk reaper: Terminate removes every
// container and network it created, so it works with
// TESTCONTAINERS_RYUK_DISABLED=true. Every resource carries the label
// org.geniehive.ghtest=<cluster id> for manual clean-up after a crash:
// docker rm -f $(docker ps -aq --filter label=org.geniehive.ghtest).
//
// # Concurrency
//
// A Cluster's methods may be called from several goroutines, except
// Terminate, which must be the last call.
package ghtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/geniehive/geniehive/state"
)

// Ports inside the containers.
const (
	EdgePort    = "8080/tcp"
	LBPort      = "8080/tcp"
	LBStatsPort = "8404/tcp"
	RedisPort   = "6379/tcp"
	// HealthPath is the edge's readiness endpoint (the LB checks it too).
	HealthPath = "/readyz"
)

// LabelCluster is set on every container and network; its value is the cluster id.
const LabelCluster = "org.geniehive.ghtest"

// Container is one container of the cluster.
type Container struct {
	testcontainers.Container
	// Alias is the container's name on the cluster network ("edge1", "redis").
	Alias string
	// Networks the container is attached to (network names).
	Networks []string
}

// Cluster is a running GenieHive cluster.
type Cluster struct {
	// ID is the random id in every container and network name.
	ID string
	// BaseURL is the OpenAI base URL ("http://127.0.0.1:PORT/v1"): the load
	// balancer when there is one, else the single edge.
	BaseURL string
	// APIKey is a client-scope key; AdminKey an operator-scope key.
	APIKey, AdminKey string
	// Network is the cluster network's name.
	Network string

	// Redis is the single Redis server, or the first server of a
	// RedisSentinel or RedisCluster topology (the initial master).
	Redis *Container
	// RedisNodes are every Redis server (one for RedisSingle; master and
	// replica for RedisSentinel; redis1..redis6 for RedisCluster).
	RedisNodes []*Container
	// Sentinels are the sentinels of a RedisSentinel topology.
	Sentinels []*Container
	LB        *Container // nil without a load balancer
	Edges     []*Container
	Nodes     []*Container
	// Upstreams are the simulated upstreams, in option order.
	Upstreams []*Container
	// NodeNetworks[i] is node i's private network: node agent i, its
	// simulated upstreams and Redis. A node agent is on that network only,
	// so it reaches its upstreams the way a host agent reaches localhost:
	// cutting an upstream off the cluster network (Disconnect) hides it from
	// the edges but not from its agent.
	NodeNetworks []string

	cfg      *config
	docker   *testcontainers.DockerClient
	networks []*testcontainers.DockerNetwork
	mu       sync.Mutex
	all      []*Container
}

// Start is Run for tests: it fails t when the cluster cannot start and
// terminates the cluster when the test ends.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	ctx := context.Background()
	c, err := Run(ctx, opts...)
	if c != nil {
		t.Cleanup(func() {
			if t.Failed() {
				var b bytes.Buffer
				c.DumpLogs(context.Background(), &b, 60)
				t.Logf("ghtest: container logs (last lines):\n%s", b.String())
			}
			if err := c.Terminate(context.Background()); err != nil {
				t.Errorf("ghtest: terminate: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatalf("ghtest: %v", err)
	}
	return c
}

// Run starts a cluster and waits until it routes: every edge answers its
// health check, the load balancer has every edge in its pool, and
// /v1/models lists every model of every upstream. On error the containers
// started so far are removed and the returned Cluster is nil.
//
// # Errors
// Docker unreachable, a missing image, a container that does not start, or
// a cluster that is not routable within the startup timeout.
func Run(ctx context.Context, opts ...Option) (_ *Cluster, err error) {
	cfg := defaults()
	for _, o := range opts {
		o(cfg)
	}
	if len(cfg.upstreams) == 0 {
		cfg.upstreams = []Upstream{{Name: "sim", Flavor: "openai", Models: []string{"llama3.1:8b", "nomic-embed-text"}, Node: -1}}
	}
	if cfg.apiKey == "" {
		cfg.apiKey = "gh-test-" + randHex(12)
	}
	if cfg.adminKey == "" {
		cfg.adminKey = "gh-admin-" + randHex(12)
	}
	if cfg.name == "" {
		cfg.name = "ghtest"
	}
	seen := map[string]bool{}
	for i := range cfg.upstreams {
		u := &cfg.upstreams[i]
		if u.Name == "" || seen[u.Name] {
			return nil, fmt.Errorf("ghtest: upstream %d: name %q empty or used twice", i, u.Name)
		}
		seen[u.Name] = true
		if u.URL == "" && u.Flavor == "" {
			u.Flavor = "openai"
		}
		if u.URL == "" && len(u.Models) == 0 {
			return nil, fmt.Errorf("ghtest: simulated upstream %q has no models", u.Name)
		}
		if u.Node < 0 || u.Node >= cfg.nodes {
			u.Node = i % cfg.nodes
		}
	}
	if cfg.catalog != nil && bytes.HasPrefix(cfg.catalog, []byte("!error ")) {
		return nil, fmt.Errorf("ghtest: catalog: %s", cfg.catalog[7:])
	}

	dc, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return nil, fmt.Errorf("ghtest: docker: %w", err)
	}
	c := &Cluster{ID: randHex(4), APIKey: cfg.apiKey, AdminKey: cfg.adminKey, cfg: cfg, docker: dc}
	defer func() {
		if err != nil {
			var b bytes.Buffer
			c.DumpLogs(context.Background(), &b, 30)
			_ = c.Terminate(context.Background())
			err = fmt.Errorf("ghtest: %w\n%s", err, b.String())
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()

	labels := map[string]string{LabelCluster: c.ID}
	nw, err := network.New(ctx, network.WithLabels(labels), network.WithAttachable())
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	c.networks = append(c.networks, nw)
	c.Network = nw.Name
	for i := 0; i < cfg.nodes; i++ {
		pn, err := network.New(ctx, network.WithLabels(labels))
		if err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
		c.networks = append(c.networks, pn)
		c.NodeNetworks = append(c.NodeNetworks, pn.Name)
	}

	// Redis first; the catalog goes in before any edge reads it.
	// A single Redis is on every network: edges reach it on the cluster
	// network, each node agent on its own private one. Sentinel and
	// Cluster topologies live on the cluster network (redistopo.go).
	if err := c.startRedis(ctx); err != nil {
		return nil, err
	}
	if cfg.catalog != nil {
		if err := c.LoadCatalog(ctx, cfg.catalog); err != nil {
			return nil, err
		}
	}

	// Upstreams and node agents, concurrently.
	var g group
	simIdx := map[string]int{}
	for _, u := range cfg.upstreams {
		if u.URL != "" {
			continue
		}
		simIdx[u.Name] = len(c.Upstreams)
		c.Upstreams = append(c.Upstreams, nil)
	}
	for _, u := range cfg.upstreams {
		if u.URL != "" {
			continue
		}
		u := u
		g.Go(func() error {
			ctr, err := c.start(ctx, u.Name, cfg.image, spec{
				cmd:      append([]string{"sim", "--listen", ":" + simPort(u.Flavor), "--flavor", u.Flavor, "--models", strings.Join(u.Models, ",")}, u.Args...),
				networks: []string{c.Network, c.NodeNetworks[u.Node]},
			})
			c.Upstreams[simIdx[u.Name]] = ctr
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	c.Nodes = make([]*Container, cfg.nodes)
	for i := 0; i < cfg.nodes; i++ {
		i := i
		g.Go(func() error {
			id := "node" + strconv.Itoa(i+1)
			nets := []string{c.NodeNetworks[i]}
			if cfg.topology != RedisSingle {
				nets = append(nets, c.Network) // where Sentinel / Cluster addresses are
			}
			ctr, err := c.start(ctx, id, cfg.image, spec{
				cmd:       []string{"node", "--config", "/etc/geniehive/node.yaml"},
				env:       cfg.nodeEnv,
				files:     map[string]string{"/etc/geniehive/node.yaml": c.nodeConfig(i)},
				networks:  nets,
				hostAlias: true,
			})
			c.Nodes[i] = ctr
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	// Edges.
	c.Edges = make([]*Container, cfg.edges)
	for i := 0; i < cfg.edges; i++ {
		i := i
		g.Go(func() error {
			id := "edge" + strconv.Itoa(i+1)
			files := map[string]string{"/etc/geniehive/edge.yaml": c.edgeConfig(id)}
			ctr, err := c.start(ctx, id, cfg.image, spec{
				cmd:       []string{"edge", "--config", "/etc/geniehive/edge.yaml"},
				env:       cfg.edgeEnv,
				files:     files,
				dirs:      c.policyMount(),
				expose:    []string{EdgePort},
				wait:      wait.ForHTTP(HealthPath).WithPort(EdgePort).WithStartupTimeout(60 * time.Second).WithPollInterval(200 * time.Millisecond),
				networks:  []string{c.Network},
				hostAlias: true,
			})
			c.Edges[i] = ctr
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	if cfg.edges > 1 || cfg.lb {
		names := make([]string, cfg.edges)
		for i := range names {
			names[i] = "edge" + strconv.Itoa(i+1)
		}
		c.LB, err = c.start(ctx, "lb", cfg.lbImage, spec{
			cmd:      []string{"haproxy", "-f", "/usr/local/etc/haproxy/haproxy.cfg"},
			files:    map[string]string{"/usr/local/etc/haproxy/haproxy.cfg": HAProxyConfig(names)},
			expose:   []string{LBPort, LBStatsPort},
			wait:     wait.ForHTTP("/lb/healthz").WithPort(LBPort).WithStartupTimeout(30 * time.Second).WithPollInterval(200 * time.Millisecond),
			networks: []string{c.Network},
		})
		if err != nil {
			return nil, err
		}
		u, err := c.LB.PortEndpoint(ctx, LBPort, "http")
		if err != nil {
			return nil, err
		}
		c.BaseURL = u + "/v1"
	} else {
		u, err := c.Edges[0].PortEndpoint(ctx, EdgePort, "http")
		if err != nil {
			return nil, err
		}
		c.BaseURL = u + "/v1"
	}
	if err := c.WaitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// WaitReady waits until every edge is in the load balancer's pool (when
// there is one) and /v1/models lists every model of every upstream.
func (c *Cluster) WaitReady(ctx context.Context) error {
	if c.LB != nil {
		if err := c.WaitLBServers(ctx, len(c.Edges)); err != nil {
			return err
		}
	}
	var want []string
	for _, u := range c.cfg.upstreams {
		want = append(want, u.Models...)
	}
	return c.WaitModels(ctx, want, nil)
}

// WaitModels polls /v1/models until every model in present is listed and
// none in absent is. With both empty it waits for a non-empty list.
func (c *Cluster) WaitModels(ctx context.Context, present, absent []string) error {
	var last []string
	var lastErr error
	for {
		ids, err := c.Models(ctx)
		if err == nil {
			last = ids
			have := map[string]bool{}
			for _, id := range ids {
				have[id] = true
			}
			ok := len(present) > 0 || len(absent) > 0 || len(ids) > 0
			for _, m := range present {
				ok = ok && have[m]
			}
			for _, m := range absent {
				ok = ok && !have[m]
			}
			if ok {
				return nil
			}
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("models: want %v present and %v absent; last listing %v (err %v): %w", present, absent, last, lastErr, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Models lists the model ids GET /v1/models returns.
func (c *Cluster) Models(ctx context.Context) ([]string, error) {
	b, err := c.Get(ctx, "/v1/models", c.APIKey)
	if err != nil {
		return nil, err
	}
	var r struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("/v1/models: %w: %.200s", err, b)
	}
	ids := make([]string, 0, len(r.Data))
	for _, d := range r.Data {
		ids = append(ids, d.ID)
	}
	sort.Strings(ids)
	return ids, nil
}

// Get fetches path (relative to the server root, e.g. "/v1/models") through
// the base URL with the given key and returns the body of a 200 answer.
func (c *Cluster) Get(ctx context.Context, path, key string) ([]byte, error) {
	return c.getURL(ctx, strings.TrimSuffix(c.BaseURL, "/v1")+path, key)
}

func (c *Cluster) getURL(ctx context.Context, url, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return b, fmt.Errorf("GET %s: %s: %.300s", url, resp.Status, b)
	}
	return b, nil
}

// EdgeURL is edge i's own base URL from the host ("http://127.0.0.1:PORT"),
// bypassing the load balancer. The port may change when the edge restarts.
func (c *Cluster) EdgeURL(ctx context.Context, i int) (string, error) {
	return c.Edges[i].PortEndpoint(ctx, EdgePort, "http")
}

// RedisURL is Redis's URL from the host. The port changes when Redis
// restarts. For a Sentinel or Cluster topology it is the first server's
// (use Store, which follows the topology).
func (c *Cluster) RedisURL(ctx context.Context) (string, error) {
	ep, err := c.Redis.PortEndpoint(ctx, RedisPort, "")
	if err != nil {
		return "", err
	}
	return "redis://" + ep + "/0", nil
}

// Store connects to the cluster's Redis from the host, through the
// topology (a Sentinel-backed client, a Cluster client) so it follows
// failovers. The caller closes the client (s.Client().Close()).
func (c *Cluster) Store(ctx context.Context) (*state.Store, error) {
	rc, err := c.redisClient(ctx)
	if err != nil {
		return nil, err
	}
	if err := rc.Ping(ctx).Err(); err != nil {
		rc.Close()
		return nil, fmt.Errorf("redis: %w", err)
	}
	return state.New(rc, ""), nil
}

// LoadCatalog validates a role catalog and stores it in Redis, as
// `geniehive roles load` does.
func (c *Cluster) LoadCatalog(ctx context.Context, yaml []byte) error {
	cat, err := state.ParseCatalog("catalog.yaml", yaml)
	if err != nil {
		return err
	}
	s, err := c.Store(ctx)
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	defer s.Client().Close()
	return s.PutCatalog(ctx, cat)
}

// Terminate removes every container and network of the cluster. It is
// safe to call on a partly started cluster and more than once.
func (c *Cluster) Terminate(ctx context.Context) error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	all := c.all
	c.all = nil
	nws := c.networks
	c.networks = nil
	c.mu.Unlock()
	var errs []error
	var wg sync.WaitGroup
	var emu sync.Mutex
	for _, ctr := range all {
		wg.Add(1)
		go func(ctr *Container) {
			defer wg.Done()
			to := time.Second
			if err := testcontainers.TerminateContainer(ctr.Container, testcontainers.StopTimeout(to)); err != nil {
				emu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", ctr.Alias, err))
				emu.Unlock()
			}
		}(ctr)
	}
	wg.Wait()
	for _, nw := range nws {
		if err := nw.Remove(ctx); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", nw.Name, err))
		}
	}
	if c.docker != nil && len(nws) > 0 {
		_ = c.docker.Close()
	}
	return errors.Join(errs...)
}

// DumpLogs writes the last n lines of every container's output to w.
func (c *Cluster) DumpLogs(ctx context.Context, w io.Writer, n int) {
	c.mu.Lock()
	all := append([]*Container(nil), c.all...)
	c.mu.Unlock()
	for _, ctr := range all {
		rc, err := ctr.Logs(ctx)
		if err != nil {
			fmt.Fprintf(w, "== %s: logs: %v\n", ctr.Alias, err)
			continue
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(w, "== %s\n%s\n", ctr.Alias, strings.Join(lines, "\n"))
	}
}

type spec struct {
	cmd       []string
	env       map[string]string
	files     map[string]string // container path -> content
	dirs      map[string]string // host dir -> container dir (bind mounts, read-only)
	expose    []string
	wait      wait.Strategy
	networks  []string
	hostAlias bool
	user      string // uid:gid, when not the image's
}

func (c *Cluster) start(ctx context.Context, alias, image string, s spec) (*Container, error) {
	req := testcontainers.ContainerRequest{
		Image:          image,
		Name:           c.cfg.name + "-" + c.ID + "-" + alias,
		Cmd:            s.cmd,
		Env:            s.env,
		ExposedPorts:   s.expose,
		WaitingFor:     s.wait,
		Labels:         map[string]string{LabelCluster: c.ID},
		Networks:       s.networks,
		NetworkAliases: map[string][]string{},
	}
	for _, n := range s.networks {
		req.NetworkAliases[n] = []string{alias}
	}
	paths := make([]string, 0, len(s.files))
	for p := range s.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		req.Files = append(req.Files, testcontainers.ContainerFile{Reader: strings.NewReader(s.files[p]), ContainerFilePath: p, FileMode: 0o644})
	}
	req.ConfigModifier = userConfig(s.user)
	req.HostConfigModifier = func(hc *container.HostConfig) {
		if s.hostAlias {
			hc.ExtraHosts = append(hc.ExtraHosts, "host.docker.internal:host-gateway")
		}
		for host, ctr := range s.dirs {
			hc.Binds = append(hc.Binds, host+":"+ctr+":ro")
		}
	}
	if c.cfg.logs != nil {
		req.LogConsumerCfg = &testcontainers.LogConsumerConfig{Consumers: []testcontainers.LogConsumer{&prefixLog{w: c.cfg.logs, prefix: alias + " | "}}}
	}
	ctr, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{ContainerRequest: req, Started: true})
	if ctr != nil {
		out := &Container{Container: ctr, Alias: alias, Networks: s.networks}
		c.mu.Lock()
		c.all = append(c.all, out)
		c.mu.Unlock()
		if err != nil {
			return out, fmt.Errorf("start %s (%s): %w", alias, image, err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("start %s (%s): %w", alias, image, err)
}

type prefixLog struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prefixLog) Accept(l testcontainers.Log) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, line := range strings.Split(strings.TrimRight(string(l.Content), "\n"), "\n") {
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, line)
	}
}

// group runs functions concurrently and keeps the first error.
type group struct {
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  error
	errs int
}

func (g *group) Go(f func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(); err != nil {
			g.mu.Lock()
			if g.err == nil {
				g.err = err
			}
			g.mu.Unlock()
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	err := g.err
	g.err = nil
	return err
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func simPort(flavor string) string {
	switch flavor {
	case "ollama":
		return "11434"
	case "whisper":
		return "8000"
	}
	return "8000"
}
