package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/geniehive/geniehive/edge"
	"github.com/geniehive/geniehive/edge/replica"
	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/nodeagent"
	"github.com/geniehive/geniehive/state"
)

var devCmd = &cli.Command{
	Name:    "dev",
	Summary: "run everything in one process: embedded store, edge on :8080, node agent, local Ollama or simulated models",
	Usage: `dev [flags]

The quickstart. Starts, in this process:
  - an embedded Redis-compatible store (or --redis-url to use a real Redis),
  - an edge on --listen (default 127.0.0.1:8080),
  - a node agent that discovers a local Ollama on --ollama when one answers,
    otherwise simulated upstreams (chat, a thinking model, embeddings,
    transcription),
  - a sample role catalog (coder, summarizer, general).
It prints a curl line that works. Ctrl-C stops everything.`,
}

func init() {
	devCmd.Run = runDev
	cli.Register(devCmd)
}

type devConfig struct {
	Listen      string `yaml:"listen"`
	RedisURL    string `yaml:"redis_url"`
	Ollama      string `yaml:"ollama"`
	NoOllama    bool   `yaml:"no_ollama"`
	Key         string `yaml:"key"`
	OperatorKey string `yaml:"operator_key"`
	LogLevel    string `yaml:"log_level"`
}

// devSettings are the dev stack's flags (GENIEHIVE_<FLAG> in the
// environment), layered by the same code as the edge's.
var devSettings = []cli.Setting{
	{Flag: "listen", Key: "listen", Help: "edge address"},
	{Flag: "redis-url", Key: "redis_url", Help: "use this Redis instead of the embedded store"},
	{Flag: "ollama", Key: "ollama", Help: "URL of the local Ollama to discover (default http://127.0.0.1:11434)"},
	{Flag: "no-ollama", Key: "no_ollama", Bool: true, Help: "do not look for Ollama; always use simulated upstreams"},
	{Flag: "key", Key: "key", Help: "require this CLIENT-scope key for the OpenAI API (default: auth off, local only)"},
	{Flag: "operator-key", Key: "operator_key", Help: "also accept this OPERATOR-scope key (cluster API changes: geniehive roles/keys/policy against the dev edge)"},
	{Flag: "log-level", Key: "log_level", Help: "debug, info, warn or error"},
}

func runDev(args []string) error {
	var dc devConfig
	fs := cli.NewFlagSet(devCmd)
	defaults := map[string]any{"listen": "127.0.0.1:8080", "ollama": "http://127.0.0.1:11434", "log_level": "warn"}
	layers, err := cli.Load(fs, args, devSettings, defaults, false, &dc)
	if err != nil {
		return err
	}
	if err := cli.NoArgs("dev", layers.Args); err != nil {
		return err
	}
	if err := checkOllamaURL(dc); err != nil {
		return err
	}
	log := newLogger(dc.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveDev(ctx, dc, log, func(addr, storeDesc string, upstreams []string) {
		printDevBanner(os.Stdout, dc, storeDesc, addr, upstreams)
	})
}

// serveDev runs the dev stack until ctx ends; ready is called once the
// edge serves, with its address and what the stack runs on (the banner).
func serveDev(ctx context.Context, dc devConfig, log *slog.Logger, ready func(addr, storeDesc string, upstreams []string)) error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	storeDesc := dc.RedisURL
	if dc.RedisURL == "" {
		m, pw, err := startEmbeddedStore(ctx, &wg)
		if err != nil {
			return err
		}
		defer m.Close()
		dc.RedisURL = "redis://:" + pw + "@" + m.Addr() + "/0"
		storeDesc = "embedded (miniredis on " + m.Addr() + ", random password, not shown)"
	}
	c, err := state.Connect(ctx, state.Options{URL: dc.RedisURL})
	if err != nil {
		return fmt.Errorf("redis %s: %w", state.RedactURL(dc.RedisURL), err)
	}
	defer c.Close()
	store := state.New(c, "gh:")
	cat, err := state.ParseCatalog("dev_catalog.yaml", edge.DevCatalogYAML)
	if err != nil {
		return err
	}
	if err := store.PutCatalog(ctx, cat); err != nil {
		return err
	}
	ncfg, upstreams, closeSims, err := devUpstreams(dc)
	if err != nil {
		return err
	}
	defer closeSims()
	agent, err := nodeagent.New(ncfg, store, nodeagent.Options{Logger: log})
	if err != nil {
		return err
	}
	if _, err := agent.Beat(ctx); err != nil {
		log.Warn("first heartbeat failed", "err", err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = agent.Run(ctx) }()

	ecfg, err := devEdgeConfig(dc)
	if err != nil {
		return err
	}
	r, err := replica.New(ctx, ecfg, replica.Options{Logger: log, Store: store, Ready: func(addr string) { ready(addr, storeDesc, upstreams) }})
	if err != nil {
		return err
	}
	c.AddHook(r.Server().RedisHook())
	err = r.Run(ctx)
	_ = r.Close()
	stop()
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = store.RemoveNode(rctx, "dev")
	cancel()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// startEmbeddedStore starts miniredis on a free loopback port, protected
// by a random password it returns (a loopback port is open to every local
// user: without one, anyone on the machine could write an operator key
// into the store), and feeds it the wall clock until ctx ends (miniredis
// expires keys only when told time has passed; heartbeat TTLs must behave
// as in Redis).
func startEmbeddedStore(ctx context.Context, wg *sync.WaitGroup) (*miniredis.Miniredis, string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, "", err
	}
	pw := hex.EncodeToString(b)
	m := miniredis.NewMiniRedis()
	m.RequireAuth(pw)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, "", fmt.Errorf("embedded store: %w", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		last := time.Now()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return m, pw, nil
}

// devUpstreams is the dev node agent's configuration: the local Ollama
// when one answers, else simulated upstreams (closed by closeSims).
func devUpstreams(dc devConfig) (ncfg nodeagent.Config, upstreams []string, closeSims func(), err error) {
	ncfg = nodeagent.Config{HostID: "dev", Interval: 2 * time.Second, TTL: 6 * time.Second, NvidiaSMI: "off"}
	if !dc.NoOllama && ollamaAnswers(dc.Ollama) {
		ncfg.Services = append(ncfg.Services, nodeagent.ServiceConfig{Name: "ollama", Kind: fleet.KindChat, Endpoint: strings.TrimRight(dc.Ollama, "/"), Protocol: fleet.ProtocolOllama})
		return ncfg, []string{"Ollama at " + dc.Ollama + " (its models are served through the edge)"}, func() {}, nil
	}
	sims, desc, err := startDevSims()
	if err != nil {
		return ncfg, nil, nil, err
	}
	for _, s := range sims {
		kind, proto, name := fleet.KindChat, fleet.ProtocolOllama, "chat"
		switch s.Flavor() {
		case sim.FlavorWhisper:
			kind, proto, name = fleet.KindTranscription, fleet.ProtocolWhisper, "whisper"
		case sim.FlavorOpenAI:
			kind, proto, name = fleet.KindEmbeddings, fleet.ProtocolOpenAI, "embed"
		}
		ncfg.Services = append(ncfg.Services, nodeagent.ServiceConfig{Name: name, Kind: kind, Endpoint: s.URL(), Protocol: proto})
	}
	return ncfg, desc, func() {
		for _, s := range sims {
			s.Close()
		}
	}, nil
}

// devEdgeConfig is the dev edge's replica config: no shutdown delay (the
// zero value), --key as a client key, --operator-key as an operator key.
func devEdgeConfig(dc devConfig) (replica.Config, error) {
	var ecfg replica.Config
	ecfg.Edge = edge.Config{Listen: dc.Listen, ID: "dev-edge", LogLevel: dc.LogLevel}
	ecfg.Edge.Redis.URL = dc.RedisURL
	if dc.Key != "" {
		ecfg.Edge.Keys = append(ecfg.Edge.Keys, edge.KeyConfig{ID: "dev", Secret: dc.Key, Scope: fleet.ScopeClient})
	}
	if dc.OperatorKey != "" {
		ecfg.Edge.Keys = append(ecfg.Edge.Keys, edge.KeyConfig{ID: "dev-operator", Secret: dc.OperatorKey, Scope: fleet.ScopeOperator})
	}
	return ecfg, ecfg.Provision()
}

// printDevBanner says what runs and how to call it. Keys are never
// printed (terminals are logged, shared and scrolled back): the curl lines
// read the key from $GENIEHIVE_KEY.
func printDevBanner(w io.Writer, dc devConfig, storeDesc, addr string, upstreams []string) {
	auth, note := "", ""
	if dc.Key != "" || dc.OperatorKey != "" {
		auth = ` -H "Authorization: Bearer $GENIEHIVE_KEY"`
		note = "\n(set GENIEHIVE_KEY to the key you gave with --key or --operator-key)\n"
	}
	fmt.Fprintf(w, `GenieHive dev stack is running:
  store:      %s
  edge:       http://%s   (OpenAI API under /v1, metrics at /metrics)
  console:    http://%s/ui/
  node agent: host "dev"
  upstreams:  %s
  roles:      coder, summarizer, general

Try:
  curl -s http://%s/v1/models%s
  curl -s http://%s/v1/chat/completions%s -H "Content-Type: application/json" \
    -d '{"model":"general","messages":[{"role":"user","content":"Say hello"}]}'

%s
Ctrl-C stops everything.
`, storeDesc, addr, addr, strings.Join(upstreams, "\n              "), addr, auth, addr, auth, note)
}

// checkOllamaURL refuses an --ollama (GENIEHIVE_OLLAMA) that is not an
// http(s) URL with a host: "0" or "off" would otherwise be dialled as an
// address, fail quietly, and leave the user with simulated models and no
// word why.
//
// # Errors
// A cli.ErrUsage error naming the value, unless --no-ollama is set.
func checkOllamaURL(dc devConfig) error {
	if dc.NoOllama {
		return nil
	}
	u, err := url.Parse(dc.Ollama)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: --ollama %q (or GENIEHIVE_OLLAMA): want Ollama's URL, such as http://127.0.0.1:11434; --no-ollama for simulated models only (see 'geniehive dev --help')",
			cli.ErrUsage, dc.Ollama)
	}
	return nil
}

func ollamaAnswers(base string) bool {
	hc := &http.Client{Timeout: 700 * time.Millisecond}
	resp, err := hc.Get(strings.TrimRight(base, "/") + "/api/version")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// startDevSims starts the simulated upstreams of the quickstart.
func startDevSims() ([]*sim.Server, []string, error) {
	cfgs := []sim.Config{
		{Flavor: sim.FlavorOllama, Models: []sim.Model{
			{Name: "llama3.2:3b", Family: "llama", ParameterSize: "3B", Loaded: true, ContextLength: 131072, SizeVRAM: 2_800_000_000},
			{Name: "qwen3:8b", Family: "qwen3", ParameterSize: "8B", Thinking: true, ContextLength: 40960, SizeVRAM: 6_200_000_000},
		}, Behavior: sim.Behavior{TTFT: 80 * time.Millisecond, ChunkInterval: 25 * time.Millisecond, Chunks: 24}, VRAMTotal: 24_000_000_000},
		{Flavor: sim.FlavorOpenAI, Models: []sim.Model{{Name: "nomic-embed-text", Kind: sim.KindEmbeddings, Dims: 768}}},
		{Flavor: sim.FlavorWhisper, Models: []sim.Model{{Name: "Systran/faster-whisper-small", Kind: sim.KindTranscription}}},
	}
	var out []*sim.Server
	var desc []string
	for _, c := range cfgs {
		s, err := sim.Start(c)
		if err != nil {
			for _, o := range out {
				o.Close()
			}
			return nil, nil, err
		}
		out = append(out, s)
		var names []string
		for _, m := range c.Models {
			names = append(names, m.Name)
		}
		desc = append(desc, "simulated "+string(c.Flavor)+" at "+s.URL()+": "+strings.Join(names, ", "))
	}
	desc[0] += " (no Ollama answered; simulated models stand in)"
	return out, desc, nil
}
