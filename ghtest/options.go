package ghtest

import (
	"io"
	"os"
	"time"
)

// Public image names, used when neither an option nor the environment names
// an image. Build local equivalents with deploy/build-images.sh.
const (
	DefaultGenieHiveImage = "ghcr.io/geniehive/geniehive:latest"
	DefaultRedisImage     = "redis:7-alpine"
	DefaultLBImage        = "haproxy:2.8-alpine"
)

// Upstream is one inference server behind a node agent: either a simulated
// one (Flavor set, started as a container of the geniehive image running
// `geniehive sim`) or the caller's own server (URL set).
type Upstream struct {
	// Name is the service name on its node and, for simulated upstreams, the
	// container's network alias. Required, unique.
	Name string
	// Flavor of a simulated upstream: "openai" (default), "ollama",
	// "whisper", "llamacpp", "vllm".
	Flavor string
	// Models a simulated upstream offers (the simulator infers the kind:
	// names containing "embed" are embeddings models, "whisper"
	// transcription). For a URL upstream, the models to wait for before Run
	// returns (optional).
	Models []string
	// URL of the caller's own upstream, as the containers reach it (for a
	// server on the Docker host use http://host.docker.internal:PORT; Run
	// maps that name to the host gateway).
	URL string
	// Protocol the node agent uses to discover a URL upstream's models:
	// "openai" (default), "ollama", "llamacpp", "vllm", "whisper".
	Protocol string
	// Kind of a URL upstream: "chat" (default), "embeddings", "transcription".
	Kind string
	// Node is the index of the node agent that serves this upstream; -1 (the
	// default through the With* helpers) spreads upstreams over the nodes in
	// order.
	Node int
	// Args are extra arguments for `geniehive sim` (e.g. "--latency", "50ms").
	Args []string
	// VRAMTotal, when positive, is the service's VRAM budget in the node
	// config (vram_total; the cluster's node agents run without
	// nvidia-smi): what model swapping plans with. Pass the same figure to
	// a simulated Ollama as --vram-total.
	VRAMTotal int64
}

type config struct {
	edges, nodes          int
	lb                    bool
	upstreams             []Upstream
	image, redis, lbImage string
	apiKey, adminKey      string
	catalog               []byte
	policyDir             string
	edgeEnv, nodeEnv      map[string]string
	edgeYAML              string
	heartbeat, ttl        time.Duration
	timeout               time.Duration
	logs                  io.Writer
	name                  string
	topology              RedisTopology
}

// Option configures Run.
type Option func(*config)

func defaults() *config {
	return &config{
		edges:     1,
		nodes:     1,
		image:     envOr("GENIEHIVE_IMAGE", DefaultGenieHiveImage),
		redis:     envOr("REDIS_IMAGE", DefaultRedisImage),
		lbImage:   envOr("LB_IMAGE", DefaultLBImage),
		edgeEnv:   map[string]string{},
		nodeEnv:   map[string]string{},
		heartbeat: time.Second,
		ttl:       5 * time.Second,
		timeout:   2 * time.Minute,
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// WithEdges runs n edge replicas (default 1). With more than one, an HAProxy
// load balancer fronts them and BaseURL points at it.
func WithEdges(n int) Option { return func(c *config) { c.edges = max(n, 1) } }

// WithLoadBalancer puts the load balancer in front even of a single edge.
func WithLoadBalancer() Option { return func(c *config) { c.lb = true } }

// WithNodes runs n node agents (default 1); upstreams are spread over them.
func WithNodes(n int) Option { return func(c *config) { c.nodes = max(n, 1) } }

// WithSimulatedUpstream adds a simulated upstream of the given flavor
// offering models. Without any upstream option, Run starts one OpenAI-flavor
// simulator offering "llama3.1:8b" and "nomic-embed-text".
func WithSimulatedUpstream(name, flavor string, models ...string) Option {
	return func(c *config) {
		c.upstreams = append(c.upstreams, Upstream{Name: name, Flavor: flavor, Models: models, Node: -1})
	}
}

// WithUpstream adds the caller's own upstream server at url (as containers
// reach it), discovered with protocol ("openai", "ollama", ...).
func WithUpstream(name, url, protocol string) Option {
	return func(c *config) {
		c.upstreams = append(c.upstreams, Upstream{Name: name, URL: url, Protocol: protocol, Node: -1})
	}
}

// WithUpstreams adds upstreams described in full.
func WithUpstreams(us ...Upstream) Option {
	return func(c *config) { c.upstreams = append(c.upstreams, us...) }
}

// WithImages sets the three images (an empty string keeps the default:
// the GENIEHIVE_IMAGE, REDIS_IMAGE, LB_IMAGE variables, then the public names).
func WithImages(geniehive, redis, lb string) Option {
	return func(c *config) {
		if geniehive != "" {
			c.image = geniehive
		}
		if redis != "" {
			c.redis = redis
		}
		if lb != "" {
			c.lbImage = lb
		}
	}
}

// WithAPIKey sets the client API key (default: a random one).
func WithAPIKey(key string) Option { return func(c *config) { c.apiKey = key } }

// WithAdminKey sets the operator-scope key (default: a random one).
func WithAdminKey(key string) Option { return func(c *config) { c.adminKey = key } }

// WithCatalog loads a role catalog (YAML, as `geniehive roles load` reads it)
// into Redis before the edges start.
func WithCatalog(yaml []byte) Option { return func(c *config) { c.catalog = yaml } }

// WithCatalogFile is WithCatalog reading a file.
func WithCatalogFile(path string) Option {
	return func(c *config) {
		b, err := os.ReadFile(path)
		if err != nil {
			b = []byte("!error " + err.Error())
		}
		c.catalog = b
	}
}

// WithPolicyDir mounts a directory of policies into every edge at
// /etc/geniehive/policies and points the edges at it.
func WithPolicyDir(dir string) Option { return func(c *config) { c.policyDir = dir } }

// WithEdgeEnv sets environment variables on every edge (GENIEHIVE_* settings).
func WithEdgeEnv(env map[string]string) Option {
	return func(c *config) {
		for k, v := range env {
			c.edgeEnv[k] = v
		}
	}
}

// WithNodeEnv sets environment variables on every node agent.
func WithNodeEnv(env map[string]string) Option {
	return func(c *config) {
		for k, v := range env {
			c.nodeEnv[k] = v
		}
	}
}

// WithEdgeConfig appends YAML to the generated edge configuration (top-level
// keys such as "timeouts:", "failover:", "routing:", "policy:").
func WithEdgeConfig(yaml string) Option { return func(c *config) { c.edgeYAML += "\n" + yaml + "\n" } }

// WithHeartbeat sets the node agents' heartbeat interval and TTL
// (default 1s and 5s, so a dead node leaves routing quickly in tests).
func WithHeartbeat(interval, ttl time.Duration) Option {
	return func(c *config) { c.heartbeat, c.ttl = interval, ttl }
}

// WithStartupTimeout bounds Run's wait for a routable cluster (default 2m).
func WithStartupTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithLogs copies every container's output to w, each line prefixed with the
// container's alias.
func WithLogs(w io.Writer) Option { return func(c *config) { c.logs = w } }

// WithName prefixes container and network names (default "ghtest").
func WithName(name string) Option { return func(c *config) { c.name = name } }
