package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/nodeagent"
	"github.com/geniehive/geniehive/state"
)

var nodeCmd = &cli.Command{
	Name:    "node",
	Summary: "run the node agent beside an inference host (discovery, health, heartbeats into Redis)",
	Usage: `node --config node.yaml [flags]

Discovers the models, load and health of this host's inference servers and
writes them into Redis every --heartbeat-interval (±10% jitter, so a fleet
started together spreads its writes) with a --heartbeat-ttl, so
edges route to them; a host that stops beating drops out when its key
expires, and SIGTERM/SIGINT removes it at once.

Services are listed in the YAML file (see nodeagent/testdata/node.example.yaml):

  host_id: gpu-a
  redis_url: redis://redis:6379/0
  services:
    - name: ollama
      kind: chat
      endpoint: http://127.0.0.1:11434
      discover_protocol: ollama      # ollama | openai | whisper | llamacpp | vllm | "" (static assets)
      max_concurrency: 4

or, for quick starts and containers, with --service (repeatable, or '|'-separated
in GENIEHIVE_SERVICE) as name:kind:protocol:endpoint, e.g.
  --service ollama:chat:ollama:http://127.0.0.1:11434
Flag services are added to the file's.

Operator subcommands (see 'geniehive node allow --help'):
  node allow HOST CIDR... | node allow --list   endpoint allowlist per node
  node acl HOST [--apply]                        the node's Redis ACL user`,
}

func init() {
	nodeCmd.Run = runNode
	cli.Register(nodeCmd)
}

type nodeSettings struct {
	nodeagent.Config `yaml:",inline"`
	ConfigPath       string                    `yaml:"-"`
	LogLevel         string                    `yaml:"log_level"`
	FlagServices     []nodeagent.ServiceConfig `yaml:"-"`
}

func runNode(args []string) error {
	if len(args) > 0 && (args[0] == "allow" || args[0] == "acl") {
		return runNodeAdmin(args[0], args[1:]) // operator subcommands (nodeadmin.go)
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return cli.UnknownSubcommand("node", args[0], "allow or acl; the agent itself takes flags only")
	}
	var s nodeSettings
	fs := cli.NewFlagSet(nodeCmd)
	fs.StringVar(&s.ConfigPath, "config", "", "YAML config file (keys: host_id, labels, redis_url, redis_username, redis_password, prefix, heartbeat_interval, heartbeat_ttl, discovery_timeout, unhealthy_after_timeouts, nvidia_smi, log_level, services)")
	fs.StringVar(&s.HostID, "host-id", "", "this host's id; services become <host-id>/<name> (default: the hostname)")
	fs.Var(labelsFlag{&s.Labels}, "labels", "host labels as k=v,k2=v2 (e.g. zone=lab,gpu=4090)")
	fs.StringVar(&s.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL: redis://, rediss://, redis+sentinel://s1:p?master_name=NAME&addr=s2:p, redis+cluster://h1:p?addr=h2:p (rediss+ for TLS)")
	fs.StringVar(&s.RedisUsername, "redis-username", "", "Redis ACL user (overrides the URL's)")
	fs.StringVar(&s.RedisPassword, "redis-password", "", "Redis password (overrides the URL's; prefer the env variable)")
	fs.StringVar(&s.Prefix, "prefix", state.DefaultPrefix, "key prefix shared by the whole cluster")
	fs.DurationVar(&s.Interval, "heartbeat-interval", nodeagent.DefaultInterval, "time between heartbeats (discovery runs on each)")
	fs.DurationVar(&s.TTL, "heartbeat-ttl", nodeagent.DefaultTTL, "lifetime of the heartbeat key: the host is dropped this long after its last beat; must exceed the interval, whole seconds")
	fs.DurationVar(&s.DiscoveryTimeout, "discovery-timeout", nodeagent.DefaultDiscoveryTimeout, "time allowed for one service's health check and discovery (capped at the interval)")
	fs.IntVar(&s.UnhealthyAfterTimeouts, "unhealthy-after-timeouts", nodeagent.DefaultUnhealthyAfterTimeouts, "health checks in a row that must time out before a service that answered is reported unhealthy (1-10; any other failure counts at once)")
	fs.StringVar(&s.NvidiaSMI, "nvidia-smi", "", "path to nvidia-smi for host GPU/VRAM figures; empty: look on PATH; \"off\": disable")
	fs.Var(&serviceFlag{dst: &s.FlagServices}, "service", "add a service as name:kind:protocol:endpoint (repeatable)")
	fs.StringVar(&s.LogLevel, "log-level", "info", "debug, info, warn or error")
	if err := cli.Parse(fs, args, &s.ConfigPath, &s); err != nil {
		return err
	}
	if err := cli.NoArgs("node", fs.Args()); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", cli.ErrUsage, s.LogLevel)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	cfg := s.Config
	cfg.Services = append(cfg.Services, s.FlagServices...)
	if cfg.HostID == "" {
		h, _ := os.Hostname()
		cfg.HostID = sanitizeHostID(h)
	}
	if err := cfg.Validate(); err != nil {
		where := "flags"
		if s.ConfigPath != "" {
			where = s.ConfigPath
		}
		return fmt.Errorf("%w: invalid node config (%s):\n%w", cli.ErrUsage, where, err)
	}
	// No ping: a Redis that is down at start is retried like any outage.
	c, err := state.NewClient(state.Options{URL: cfg.RedisURL, Prefix: cfg.Prefix, Username: cfg.RedisUsername, Password: cfg.RedisPassword})
	if err != nil {
		return fmt.Errorf("%w: --redis-url: %w", cli.ErrUsage, err)
	}
	defer c.Close()
	agent, err := nodeagent.New(cfg, state.New(c, cfg.Prefix), nodeagent.Options{Logger: log})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("connecting", "redis", state.RedactURL(cfg.RedisURL), "prefix", cfg.Prefix)
	_ = agent.Run(ctx)
	return nil
}

func sanitizeHostID(h string) string {
	var b strings.Builder
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	if b.Len() == 0 {
		return "node"
	}
	return b.String()
}

// labelsFlag sets map entries from k=v,k2=v2 (idempotent, so re-applying the
// same flag value is harmless).
type labelsFlag struct{ m *map[string]string }

func (f labelsFlag) String() string {
	if f.m == nil || *f.m == nil {
		return ""
	}
	var kv []string
	for k, v := range *f.m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func (f labelsFlag) Set(v string) error {
	if *f.m == nil {
		*f.m = map[string]string{}
	}
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		k, val, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return fmt.Errorf("label %q: want key=value", p)
		}
		(*f.m)[k] = val
	}
	return nil
}

// serviceFlag appends services given as name:kind:protocol:endpoint. Setting
// the exact text it already holds is a no-op (cli.Parse re-applies flags
// after reading the config file).
type serviceFlag struct {
	dst   *[]nodeagent.ServiceConfig
	specs []string
}

func (f *serviceFlag) String() string {
	if f == nil {
		return ""
	}
	return strings.Join(f.specs, "|")
}

func (f *serviceFlag) Set(v string) error {
	if v == f.String() && v != "" {
		return nil
	}
	for _, spec := range strings.Split(v, "|") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		p := strings.SplitN(spec, ":", 4)
		if len(p) != 4 || !strings.Contains(p[3], "://") {
			return fmt.Errorf("service %q: want name:kind:protocol:endpoint, e.g. ollama:chat:ollama:http://127.0.0.1:11434", spec)
		}
		*f.dst = append(*f.dst, nodeagent.ServiceConfig{Name: p[0], Kind: fleet.Kind(p[1]), Protocol: p[2], Endpoint: p[3]})
		f.specs = append(f.specs, spec)
	}
	return nil
}
