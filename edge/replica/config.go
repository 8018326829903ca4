package replica

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/routing"
)

// Config is one edge replica's whole configuration: the edge's own
// settings (listen address, Redis, keys, timeouts, limits) at the top
// level of the YAML file, and its routing: and policy: sections. Every
// field is typed; nothing is left as raw YAML.
type Config struct {
	Edge    edge.Config    `yaml:",squash"`
	Routing routing.Config `yaml:"routing"`
	Policy  PolicyConfig   `yaml:"policy"`
	// GCHeadroomMiB is the least heap growth, in MiB, between two garbage
	// collections (internal/gcfloor): an edge's live heap is mostly its
	// fleet snapshot, which every collection marks, so a small heap
	// collected at GOGC's pace (every 100% of live) spends its requests'
	// CPU marking the fleet over and over. 0 leaves GOGC's pace alone;
	// `geniehive edge` defaults to DefaultGCHeadroomMiB. At most 4096.
	// The edge's memory grows by up to this much; GOMEMLIMIT still caps it.
	GCHeadroomMiB int `yaml:"gc_headroom_mib"`
}

// DefaultGCHeadroomMiB is gc_headroom_mib for `geniehive edge` (Defaults).
const DefaultGCHeadroomMiB = 64

// PolicyConfig is the policy: section.
type PolicyConfig struct {
	// Engine names a registered engine (RegisterEngine): wasm (Rego
	// compiled to Wasm, default), rego (OPA's Go evaluator), module (a
	// custom Wasm module from the bundle) or go (the plain-Go reference;
	// ignores bundles).
	Engine string `yaml:"engine"`
	// Dir is a bundle directory, watched and hot-reloaded; empty uses the
	// bundle pushed into Redis, else the shipped policy.
	Dir string `yaml:"dir"`
	// EvalTimeout bounds one policy evaluation (every engine but go).
	// Default policy.DefaultEvalTimeout (250ms).
	EvalTimeout time.Duration `yaml:"eval_timeout"`
	// PrepareTimeout is the budget of one attempt to test, compile and
	// smoke-test a new bundle, off the request path (never the evaluation
	// timeout). An attempt cut short is retried, not a refusal. Default
	// 30s (policies.DefaultPrepareTimeout).
	PrepareTimeout time.Duration `yaml:"prepare_timeout"`
	// RetryInterval is the first wait before a bundle whose preparation
	// failed transiently (a timeout, a busy pool, a cancelled attempt) is
	// tried again; it doubles per failure up to 30s. Default 1s.
	RetryInterval time.Duration `yaml:"retry_interval"`
	// MaxMemoryMiB caps each Wasm instance's linear memory (engines wasm
	// and module), in MiB; there are up to GOMAXPROCS*2 instances. The
	// policy data document is parsed into every instance, so a fleet with
	// more distinct assets than the default holds raises it (the shipped
	// policy needs ~16 MiB for ~1,000-2,000 distinct assets, 64 MiB for
	// 5,000; docs/CAPACITY.md); a data document that does not fit is
	// refused, and the edge keeps deciding on its previous data, reported
	// as degraded (policy_data_refused). Default 0: the engine's own (16
	// MiB wasm, 64 MiB module); at most 4096.
	MaxMemoryMiB int `yaml:"max_memory_mib"`
}

// DefaultShutdownDelay is timeouts.shutdown_delay for `geniehive edge`
// (Defaults): long enough for a load balancer checking /readyz every
// second or two to take the replica out before its listener closes. The
// zero Config (tests, `geniehive dev`) stops at once.
const DefaultShutdownDelay = 5 * time.Second

// Defaults are the layered defaults `geniehive edge` starts from (see
// cli.Load): values whose zero means something else (a zero shutdown delay
// is "stop at once") live here rather than in Provision.
func Defaults() map[string]any {
	return map[string]any{"timeouts.shutdown_delay": DefaultShutdownDelay.String(), "gc_headroom_mib": DefaultGCHeadroomMiB}
}

// Provision fills the documented defaults of every section.
//
// # Errors
// Those of edge.Config.Provision and routing.Config.Provision (bad keys,
// negative values, an unknown strategy).
func (c *Config) Provision() error {
	if err := c.Edge.Provision(); err != nil {
		return err
	}
	rc, err := c.Routing.Provision()
	if err != nil {
		return err
	}
	c.Routing = rc
	if c.Policy.Engine == "" {
		c.Policy.Engine = EngineWasm
	}
	if c.Policy.PrepareTimeout == 0 {
		c.Policy.PrepareTimeout = policies.DefaultPrepareTimeout
	}
	if c.Policy.RetryInterval == 0 {
		c.Policy.RetryInterval = time.Second
	}
	return nil
}

// Validate checks what Provision cannot default.
//
// # Errors
// An unregistered policy engine, a negative policy.eval_timeout,
// policy.prepare_timeout or policy.retry_interval, a policy.max_memory_mib
// or gc_headroom_mib outside 0..4096.
func (c *Config) Validate() error {
	var errs []error
	if _, ok := lookupEngine(c.Policy.Engine); !ok {
		errs = append(errs, fmt.Errorf("policy.engine %q: want one of %v", c.Policy.Engine, EngineNames()))
	}
	if c.Policy.EvalTimeout < 0 {
		errs = append(errs, errors.New("policy.eval_timeout: negative"))
	}
	if c.Policy.PrepareTimeout < 0 {
		errs = append(errs, errors.New("policy.prepare_timeout: negative"))
	}
	if c.Policy.RetryInterval < 0 {
		errs = append(errs, errors.New("policy.retry_interval: negative"))
	}
	if c.GCHeadroomMiB < 0 || c.GCHeadroomMiB > 4096 {
		errs = append(errs, fmt.Errorf("gc_headroom_mib %d: want 0 (GOGC's pace) to 4096", c.GCHeadroomMiB))
	}
	if c.Policy.MaxMemoryMiB < 0 || c.Policy.MaxMemoryMiB > 4096 {
		errs = append(errs, fmt.Errorf("policy.max_memory_mib %d: want 0 (the engine's default) to 4096", c.Policy.MaxMemoryMiB))
	}
	if !routing.ValidStrategy(c.Routing.DefaultStrategy) {
		errs = append(errs, fmt.Errorf("routing.default_strategy %q: want one of %v", c.Routing.DefaultStrategy, routing.StrategyNames()))
	}
	return errors.Join(errs...)
}

// LoadFile reads a replica config file (defaults as for `geniehive edge`,
// no environment or flags), provisions and validates it.
//
// # Errors
// An unreadable file, unknown keys, invalid values.
func LoadFile(path string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("replica", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := cli.Load(fs, []string{"--config", path}, nil, Defaults(), true, &c); err != nil {
		return c, err
	}
	if err := c.Provision(); err != nil {
		return c, err
	}
	return c, c.Validate()
}
