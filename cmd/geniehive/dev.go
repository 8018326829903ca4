package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/geniehive/geniehive/edge"
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
	Listen   string `yaml:"listen"`
	RedisURL string `yaml:"redis_url"`
	Ollama   string `yaml:"ollama"`
	NoOllama bool   `yaml:"no_ollama"`
	Key      string `yaml:"key"`
	LogLevel string `yaml:"log_level"`
}

func runDev(args []string) error {
	var dc devConfig
	fs := cli.NewFlagSet(devCmd)
	fs.StringVar(&dc.Listen, "listen", "127.0.0.1:8080", "edge address")
	fs.StringVar(&dc.RedisURL, "redis-url", "", "use this Redis instead of the embedded store")
	fs.StringVar(&dc.Ollama, "ollama", "http://127.0.0.1:11434", "local Ollama to discover")
	fs.BoolVar(&dc.NoOllama, "no-ollama", false, "do not look for Ollama; always use simulated upstreams")
	fs.StringVar(&dc.Key, "key", "", "require this client key (default: auth off, local only)")
	fs.StringVar(&dc.LogLevel, "log-level", "warn", "debug, info, warn or error")
	if err := cli.Parse(fs, args, nil, &dc); err != nil {
		return err
	}
	log := newLogger(dc.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	storeDesc := dc.RedisURL
	if dc.RedisURL == "" {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("embedded store: %w", err)
		}
		defer m.Close()
		// miniredis expires keys only when told time has passed: feed it
		// the wall clock so heartbeat TTLs behave as in Redis.
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
		dc.RedisURL = "redis://" + m.Addr() + "/0"
		storeDesc = "embedded (miniredis on " + m.Addr() + ")"
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

	ncfg := nodeagent.Config{HostID: "dev", Interval: 2 * time.Second, TTL: 6 * time.Second, NvidiaSMI: "off"}
	var upstreams []string
	if !dc.NoOllama && ollamaAnswers(dc.Ollama) {
		ncfg.Services = append(ncfg.Services, nodeagent.ServiceConfig{Name: "ollama", Kind: fleet.KindChat, Endpoint: strings.TrimRight(dc.Ollama, "/"), Protocol: fleet.ProtocolOllama})
		upstreams = append(upstreams, "Ollama at "+dc.Ollama+" (its models are served through the edge)")
	} else {
		sims, desc, err := startDevSims()
		if err != nil {
			return err
		}
		defer func() {
			for _, s := range sims {
				s.Close()
			}
		}()
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
		upstreams = append(upstreams, desc...)
	}
	agent, err := nodeagent.New(ncfg, store, nodeagent.Options{Logger: log})
	if err != nil {
		return err
	}
	if _, err := agent.Beat(ctx); err != nil {
		log.Warn("first heartbeat failed", "err", err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); _ = agent.Run(ctx) }()

	ecfg := edge.Config{Listen: dc.Listen, ID: "dev-edge", LogLevel: dc.LogLevel}
	ecfg.Redis.URL = dc.RedisURL
	if dc.Key != "" {
		ecfg.Keys = []edge.KeyConfig{{ID: "dev", Secret: dc.Key, Scope: fleet.ScopeOperator}}
	}
	if err := ecfg.Provision(); err != nil {
		return err
	}
	auth := ""
	if dc.Key != "" {
		auth = ` -H "Authorization: Bearer ` + dc.Key + `"`
	}
	ready := func(addr string) {
		fmt.Printf(`GenieHive dev stack is running:
  store:      %s
  edge:       http://%s   (OpenAI API under /v1, metrics at /metrics)
  node agent: host "dev"
  upstreams:  %s
  roles:      coder, summarizer, general

Try:
  curl -s http://%s/v1/models%s
  curl -s http://%s/v1/chat/completions%s -H "Content-Type: application/json" \
    -d '{"model":"general","messages":[{"role":"user","content":"Say hello"}]}'

Ctrl-C stops everything.
`, storeDesc, addr, strings.Join(upstreams, "\n              "), addr, auth, addr, auth)
	}
	err = serveEdge(ctx, ecfg, sectionOverrides{}, store, log, ready)
	stop()
	rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_ = store.RemoveNode(rctx, "dev")
	cancel()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
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
