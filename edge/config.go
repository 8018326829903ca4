package edge

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/swap"
)

// Config is the edge's configuration (geniehive edge --config edge.yaml).
// Zero values take the documented defaults in Provision. A Config is read
// once at start; it is never modified after Provision.
type Config struct {
	// Listen is the address to serve on. Default "127.0.0.1:8080".
	Listen string `yaml:"listen"`
	// ID names this replica in Redis (presence, in-flight leases).
	// Default: hostname-pid.
	ID string `yaml:"id"`
	// Redis is the shared state store.
	Redis RedisConfig `yaml:"redis"`
	// Keys are client credentials in addition to the ones stored in Redis
	// (geniehive keys ...). With no key here and none in Redis, auth is OFF.
	Keys []KeyConfig `yaml:"keys"`
	// AuthRequired refuses to start without keys instead of running open.
	AuthRequired bool          `yaml:"auth_required"`
	Metrics      MetricsConfig `yaml:"metrics"`
	Timeouts     Timeouts      `yaml:"timeouts"`
	BodyLimits   BodyLimits    `yaml:"body_limits"`
	Failover     Failover      `yaml:"failover"`
	// AnswerLimits caps buffered (non-streaming) upstream answers per route
	// and one SSE event of a stream (502 upstream_answer_too_large beyond).
	AnswerLimits AnswerLimits `yaml:"answer_limits"`
	// MaxHeaderBytes bounds a request's header block (431 beyond). Default 16KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// MaxConns caps client connections to this edge in total (past it a
	// new connection is answered 503 and closed). Default 65536.
	MaxConns int `yaml:"max_conns"`
	// MaxConnsPerClient caps connections from one client address. Behind a
	// load balancer every connection comes from its address: raise this
	// (or set -1 for no cap). Default 4096.
	MaxConnsPerClient int `yaml:"max_conns_per_client"`
	// MaxEventStreams caps the open GET /v1/cluster/events streams (the
	// console's live updates) on this edge; past it a new one is answered
	// 503 too_many_streams. 0 means the default, 64; a negative value is
	// refused.
	MaxEventStreams int `yaml:"max_event_streams"`
	// Console serves the operator console at /ui/ (static files; the data
	// comes from /v1/cluster/* with a reader key). Default true.
	Console *bool `yaml:"console"`
	// StatsInterval is how often observed stats are merged into Redis. Default 1s.
	StatsInterval time.Duration `yaml:"stats_interval"`
	// PresenceInterval is how often the edge refreshes its presence record. Default 5s.
	PresenceInterval time.Duration `yaml:"presence_interval"`
	// InflightLease bounds how long a request of a crashed edge still
	// counts in the cluster-wide in-flight figures; a live edge renews its
	// open requests every third of it. Default 30s.
	InflightLease time.Duration `yaml:"inflight_lease"`
	// LogLevel: debug, info, warn, error. Default info.
	LogLevel string `yaml:"log_level"`
	// AccessLog writes one line per request at info level. Default true.
	AccessLog *bool `yaml:"access_log"`
	// Swap is load-aware model swapping (package swap): off by default.
	Swap swap.Settings `yaml:"swap"`
}

// MetricsConfig says where /metrics is served.
type MetricsConfig struct {
	// Listen, when set, serves /metrics (and /healthz) on this separate
	// address, open, for a scraper on a private network; the main listener
	// then answers 404 there. When empty, /metrics is on the main listener
	// and, with auth_required, needs a key of reader or operator scope.
	Listen string `yaml:"listen"`
}

// RedisConfig locates the shared store.
type RedisConfig struct {
	URL      string `yaml:"url"`    // default redis://127.0.0.1:6379/0
	Prefix   string `yaml:"prefix"` // default "gh:"
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS: PEM files for rediss:// — this edge's client certificate and
	// key (for a Redis that requires client certificates) and the CA that
	// verifies the server. The URL's tls_cert/tls_key/tls_ca parameters
	// do the same.
	TLS struct {
		Cert string `yaml:"cert"`
		Key  string `yaml:"key"`
		CA   string `yaml:"ca"`
	} `yaml:"tls"`
}

// KeyConfig is one configured client key. Give the secret itself or its
// SHA-256 in hex (preferred: the file then holds no secret).
type KeyConfig struct {
	ID     string      `yaml:"id"`
	Secret string      `yaml:"secret"`
	SHA256 string      `yaml:"sha256"`
	Scope  fleet.Scope `yaml:"scope"` // client (default) | reader | operator
	Roles  []string    `yaml:"roles"`
}

// Timeouts bound every wait. Zero takes the default.
type Timeouts struct {
	// Read bounds reading a request (headers and body). Default 60s.
	Read time.Duration `yaml:"read"`
	// Idle bounds a keep-alive connection's idle time. Default 120s.
	Idle time.Duration `yaml:"idle"`
	// Connect bounds dialing an upstream. Default 3s.
	Connect time.Duration `yaml:"connect"`
	// Request bounds a whole non-streaming upstream exchange. Default 10m.
	Request time.Duration `yaml:"request"`
	// StreamIdle bounds upstream silence while streaming, including the wait
	// for the stream's response headers. Default 5m.
	StreamIdle time.Duration `yaml:"stream_idle"`
	// StreamMax bounds a whole stream. Default 1h.
	StreamMax time.Duration `yaml:"stream_max"`
	// Write bounds writing one whole non-streaming answer to the client,
	// and each write of a stream (a client that stops reading is cut after
	// it; a stream never outlives StreamMax either). Default 60s.
	Write time.Duration `yaml:"write"`
	// Heartbeat is the SSE comment interval while an upstream is silent, so a
	// gone client is noticed. Default 5s.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// Shutdown bounds draining in-flight requests on stop. Default 30s.
	Shutdown time.Duration `yaml:"shutdown"`
	// ShutdownDelay is how long a stopping edge keeps serving after
	// /readyz turned 503, so the load balancer's health check takes it out
	// of rotation before the listener closes. 0 (the zero value) stops at
	// once; geniehive edge defaults to 5s (edge/replica).
	ShutdownDelay time.Duration `yaml:"shutdown_delay"`
}

// BodyLimits caps request bodies per route (413 beyond). Accepts "8MiB" etc.
type BodyLimits struct {
	Chat          ByteSize `yaml:"chat"`          // default 8MiB
	Embeddings    ByteSize `yaml:"embeddings"`    // default 8MiB
	Transcription ByteSize `yaml:"transcription"` // default 25MiB
	Speech        ByteSize `yaml:"speech"`        // default 1MiB
	Images        ByteSize `yaml:"images"`        // default 1MiB
}

// AnswerLimits caps what the edge buffers of an upstream's answer.
// Accepts "16MiB" etc.
type AnswerLimits struct {
	Chat          ByteSize `yaml:"chat"`          // default 16MiB
	Embeddings    ByteSize `yaml:"embeddings"`    // default 128MiB
	Transcription ByteSize `yaml:"transcription"` // default 16MiB
	Speech        ByteSize `yaml:"speech"`        // default 64MiB
	Images        ByteSize `yaml:"images"`        // default 64MiB
	// SSEEvent caps one event of a stream (the relay holds an event until
	// its terminator arrives). Default 4MiB.
	SSEEvent ByteSize `yaml:"sse_event"`
}

// Failover bounds retries before the first byte. (Passive health —
// failure thresholds and cooldowns — is the routing section's.)
type Failover struct {
	// Attempts is the maximum number of upstreams tried per request. Default 3.
	Attempts int `yaml:"attempts"`
}

// ByteSize is a byte count that reads "512", "64KiB", "8MiB", "1GB".
type ByteSize int64

// UnmarshalYAML accepts an integer or a string with a unit.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// UnmarshalText accepts the same forms (config layering, environment).
func (b *ByteSize) UnmarshalText(t []byte) error { return b.Set(string(t)) }

// String formats the size.
func (b ByteSize) String() string { return strconv.FormatInt(int64(b), 10) }

// Set implements flag.Value.
func (b *ByteSize) Set(s string) error {
	v, err := ParseByteSize(s)
	if err == nil {
		*b = v
	}
	return err
}

// ParseByteSize parses "123", "64KiB", "8MiB", "2GiB", "10KB", "5MB".
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suf)), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad byte size %q", s)
	}
	return ByteSize(n * mult), nil
}

// Provision fills defaults and validates.
//
// # Errors
// A bad scope, a key without secret or hash, a negative value.
func (c *Config) Provision() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if c.ID == "" {
		h, _ := os.Hostname()
		if h == "" {
			h = "edge"
		}
		c.ID = h + "-" + strconv.Itoa(os.Getpid())
	}
	if c.Redis.URL == "" {
		c.Redis.URL = "redis://127.0.0.1:6379/0"
	}
	if c.Redis.Prefix == "" {
		c.Redis.Prefix = "gh:"
	}
	c.Swap.Provision()
	if err := c.Swap.Validate(); err != nil {
		return err
	}
	t := &c.Timeouts
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Read, 60*time.Second)
	def(&t.Idle, 120*time.Second)
	def(&t.Connect, 3*time.Second)
	def(&t.StreamMax, time.Hour)
	def(&t.Request, 10*time.Minute)
	def(&t.StreamIdle, 5*time.Minute)
	def(&t.Heartbeat, 5*time.Second)
	def(&t.Write, 60*time.Second)
	def(&t.Shutdown, 30*time.Second)
	def(&c.StatsInterval, time.Second)
	def(&c.PresenceInterval, 5*time.Second)
	if c.MaxEventStreams == 0 {
		c.MaxEventStreams = 64
	}
	if c.Console == nil {
		on := true
		c.Console = &on
	}
	def(&c.InflightLease, 30*time.Second)
	defB := func(b *ByteSize, v ByteSize) {
		if *b <= 0 {
			*b = v
		}
	}
	defB(&c.BodyLimits.Chat, 8<<20)
	defB(&c.BodyLimits.Embeddings, 8<<20)
	defB(&c.BodyLimits.Transcription, 25<<20)
	defB(&c.BodyLimits.Speech, 1<<20)
	defB(&c.BodyLimits.Images, 1<<20)
	defB(&c.MaxHeaderBytes, 16<<10)
	defB(&c.AnswerLimits.Chat, 16<<20)
	defB(&c.AnswerLimits.Embeddings, 128<<20)
	defB(&c.AnswerLimits.Transcription, 16<<20)
	defB(&c.AnswerLimits.Speech, 64<<20)
	defB(&c.AnswerLimits.Images, 64<<20)
	defB(&c.AnswerLimits.SSEEvent, 4<<20)
	if c.MaxConns <= 0 {
		c.MaxConns = 65536
	}
	if c.MaxConnsPerClient == 0 {
		c.MaxConnsPerClient = 4096
	}
	if c.Failover.Attempts <= 0 {
		c.Failover.Attempts = 3
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.AccessLog == nil {
		on := true
		c.AccessLog = &on
	}
	var errs []error
	if t.ShutdownDelay < 0 {
		errs = append(errs, errors.New("timeouts.shutdown_delay: negative"))
	}
	if c.MaxEventStreams < 0 {
		errs = append(errs, fmt.Errorf("max_event_streams: %d is negative (0 means the default, 64)", c.MaxEventStreams))
	}
	for i := range c.Keys {
		k := &c.Keys[i]
		if k.ID == "" {
			k.ID = "config-" + strconv.Itoa(i)
		}
		if k.Scope == "" {
			k.Scope = fleet.ScopeClient
		}
		if !k.Scope.Allows(fleet.ScopeClient) {
			errs = append(errs, fmt.Errorf("keys[%d] (%s): unknown scope %q", i, k.ID, k.Scope))
		}
		if (k.Secret == "") == (k.SHA256 == "") {
			errs = append(errs, fmt.Errorf("keys[%d] (%s): set exactly one of secret or sha256", i, k.ID))
		}
		if k.SHA256 != "" && len(k.SHA256) != 64 {
			errs = append(errs, fmt.Errorf("keys[%d] (%s): sha256 must be 64 hex digits", i, k.ID))
		}
	}
	return errors.Join(errs...)
}

func (c *Config) limitFor(k fleet.Kind) int {
	switch k {
	case fleet.KindEmbeddings:
		return int(c.BodyLimits.Embeddings)
	case fleet.KindTranscription:
		return int(c.BodyLimits.Transcription)
	case fleet.KindSpeech:
		return int(c.BodyLimits.Speech)
	case fleet.KindImages:
		return int(c.BodyLimits.Images)
	}
	return int(c.BodyLimits.Chat)
}

// answerLimitFor is the buffered-answer cap of an operation.
func (c *Config) answerLimitFor(k fleet.Kind) int {
	switch k {
	case fleet.KindEmbeddings:
		return int(c.AnswerLimits.Embeddings)
	case fleet.KindTranscription:
		return int(c.AnswerLimits.Transcription)
	case fleet.KindSpeech:
		return int(c.AnswerLimits.Speech)
	case fleet.KindImages:
		return int(c.AnswerLimits.Images)
	}
	return int(c.AnswerLimits.Chat)
}

// maxConnsPerIP is fasthttp's MaxConnsPerIP (0 = no cap).
func (c *Config) maxConnsPerIP() int {
	if c.MaxConnsPerClient < 0 {
		return 0
	}
	return c.MaxConnsPerClient
}

func (c *Config) maxBody() int {
	m := c.BodyLimits.Chat
	for _, v := range []ByteSize{c.BodyLimits.Embeddings, c.BodyLimits.Transcription, c.BodyLimits.Speech, c.BodyLimits.Images} {
		if v > m {
			m = v
		}
	}
	return int(m)
}
