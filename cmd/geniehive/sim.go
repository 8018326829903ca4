package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/loadtest/sim"
)

var simCmd = &cli.Command{
	Name:    "sim",
	Summary: "run simulated upstreams (Ollama, OpenAI, whisper, llama.cpp, vLLM) for tests and demos",
	Usage: `sim [flags]

Runs one simulated inference server from flags, or several from a YAML file
(--config) with a "servers:" list whose entries take the same settings as
the flags, for example:

  servers:
    - flavor: ollama
      listen: ":11434"
      models:
        - {name: "qwen3:8b", loaded: true, thinking: true, size_vram: 6000000000}
        - {name: "nomic-embed-text", kind: embeddings}
      ttft: 50ms
      chunk_interval: 20ms
    - flavor: whisper
      listen: ":8000"
      models: [{name: "Systran/faster-whisper-small"}]

Each server behaves as the real one does at --upstream-version: the
endpoints it serves, what each accepts, ignores and refuses, field names,
error bodies and streaming framing (docs/UPSTREAMS.md). Ollama loads models
on first use into --vram-total and evicts idle ones as its scheduler does.
Answers are deterministic: N content tokens (--chunks), reasoning first for
thinking models, embeddings derived from the input. Runs until
SIGINT/SIGTERM.`,
}

func init() {
	simCmd.Run = runSim
	cli.Register(simCmd)
}

type simSettings struct {
	Config        string        `yaml:"-"`
	Listen        string        `yaml:"listen"`
	Flavor        string        `yaml:"flavor"`
	Models        string        `yaml:"models_list"`
	Loaded        string        `yaml:"loaded"`
	Thinking      string        `yaml:"thinking"`
	Latency       time.Duration `yaml:"latency"`
	TTFT          time.Duration `yaml:"ttft"`
	ChunkInterval time.Duration `yaml:"chunk_interval"`
	Chunks        int           `yaml:"chunks"`
	ErrorRate     float64       `yaml:"error_rate"`
	Slots         int           `yaml:"slots"`
	VRAMTotal     int64         `yaml:"vram_total"`
	Dims          int           `yaml:"dims"`
	Version       string        `yaml:"upstream_version"`
	Responses     string        `yaml:"responses"`
	Messages      string        `yaml:"messages"`
	KeepAlive     time.Duration `yaml:"keep_alive"`
	MaxLoaded     int           `yaml:"max_loaded"`
	LoadTime      time.Duration `yaml:"load_time"`
	UnloadTime    time.Duration `yaml:"unload_time"`
	ToolCalls     bool          `yaml:"tool_calls"`
	Servers       []sim.Config  `yaml:"servers"`
}

func runSim(args []string) error {
	var s simSettings
	fs := cli.NewFlagSet(simCmd)
	fs.StringVar(&s.Config, "config", "", "YAML file with a servers: list (see above); flags then only apply when it has none")
	fs.StringVar(&s.Listen, "listen", "127.0.0.1:11434", "address to listen on (host:port; :0 picks a free port)")
	fs.StringVar(&s.Flavor, "flavor", "ollama", "server to impersonate: ollama, openai, whisper, llamacpp or vllm")
	fs.StringVar(&s.Models, "models", "qwen3:8b,llama3.2:3b", "comma-separated model names; kind is inferred (\"embed\" in the name: embeddings; \"whisper\" or flavor whisper: transcription; \"tts\", \"speech\", \"kokoro\", \"piper\": speech; \"dall-e\", \"image\", \"diffusion\", \"sdxl\", \"flux\": images; else chat)")
	fs.StringVar(&s.Loaded, "loaded", "", "comma-separated models resident at start (Ollama /api/ps, llama.cpp router); \"all\" for every one, \"none\"; default the first model")
	fs.StringVar(&s.Thinking, "thinking", "auto", "comma-separated thinking models (emit reasoning_content); \"auto\" = qwen3* and deepseek-r1*; \"none\"")
	fs.DurationVar(&s.Latency, "latency", 0, "delay before the response starts")
	fs.DurationVar(&s.TTFT, "ttft", 0, "extra delay before the first token")
	fs.DurationVar(&s.ChunkInterval, "chunk-interval", 0, "delay between tokens (1/token rate)")
	fs.IntVar(&s.Chunks, "chunks", 16, "content tokens per answer")
	fs.Float64Var(&s.ErrorRate, "error-rate", 0, "fraction (0..1) of inference requests answered with a 500")
	fs.IntVar(&s.Slots, "slots", 0, "concurrent generations; more requests queue (reported in /metrics); 0 = unlimited")
	fs.Int64Var(&s.VRAMTotal, "vram-total", 24<<30, "VRAM the host claims, bytes")
	fs.IntVar(&s.Dims, "dims", 64, "embedding dimensions")
	fs.StringVar(&s.Version, "upstream-version", "", "release to imitate (what it serves and how follows it): ollama default 0.17.4, vllm 0.17.1, llamacpp build b7600")
	fs.StringVar(&s.Responses, "responses", "auto", "serve /v1/responses natively: auto (as the flavor and version do), on, off (the server's 404)")
	fs.StringVar(&s.Messages, "messages", "auto", "serve /v1/messages (and count_tokens where the server has it) natively: auto, on, off")
	fs.DurationVar(&s.KeepAlive, "keep-alive", 5*time.Minute, "ollama: OLLAMA_KEEP_ALIVE, how long an idle model stays loaded (negative: forever)")
	fs.IntVar(&s.MaxLoaded, "max-loaded", 0, "ollama: OLLAMA_MAX_LOADED_MODELS (default 3); llamacpp router: --models-max (default 4)")
	fs.DurationVar(&s.LoadTime, "load-time", 0, "time to load a model on first use (the request waits)")
	fs.DurationVar(&s.UnloadTime, "unload-time", 0, "time until an unloaded model's memory is free again")
	fs.BoolVar(&s.ToolCalls, "tool-calls", false, "models with tools answer requests offering tools with a call to the first tool")
	if err := cli.Parse(fs, args, &s.Config, &s); err != nil {
		return err
	}
	if err := cli.NoArgs("sim", fs.Args()); err != nil {
		return err
	}
	cfgs := s.Servers
	if len(cfgs) == 0 {
		c, err := s.single()
		if err != nil {
			return fmt.Errorf("%w: %w", cli.ErrUsage, err)
		}
		cfgs = []sim.Config{c}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var servers []*sim.Server
	defer func() {
		for _, srv := range servers {
			_ = srv.Close()
		}
	}()
	for i, c := range cfgs {
		srv, err := sim.Start(c)
		if err != nil {
			return fmt.Errorf("servers[%d]: %w", i, err)
		}
		servers = append(servers, srv)
		names := make([]string, 0, len(c.Models))
		for _, m := range c.Models {
			names = append(names, m.Name)
		}
		log.Info("sim listening", "flavor", srv.Flavor(), "url", srv.URL(), "models", strings.Join(names, ","))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	for i, srv := range servers {
		st := srv.Stats()
		// The loads and VRAM figures are the simulator's own accounting
		// (what a test of model swapping checks against the budget).
		log.Info("sim stopping", "url", srv.URL(), "requests", st.Total, "streams_completed", st.StreamsCompleted, "streams_aborted", st.StreamsAborted,
			"loads", st.Loads, "unloads", st.Unloads, "vram_peak", st.VRAMPeak, "vram_total", cfgs[i].VRAMTotal)
	}
	return nil
}

func simSplit(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// single builds one server's config from the flags.
func (s *simSettings) single() (sim.Config, error) {
	c := sim.Config{Flavor: sim.Flavor(s.Flavor), Addr: s.Listen, VRAMTotal: s.VRAMTotal, Slots: s.Slots,
		Version: s.Version, Responses: sim.Switch(s.Responses), Messages: sim.Switch(s.Messages), KeepAlive: s.KeepAlive, MaxLoaded: s.MaxLoaded}
	c.Latency, c.TTFT, c.ChunkInterval, c.Chunks, c.ErrorRate = s.Latency, s.TTFT, s.ChunkInterval, s.Chunks, s.ErrorRate
	c.LoadTime, c.UnloadTime, c.ToolCalls = s.LoadTime, s.UnloadTime, s.ToolCalls
	names := simSplit(s.Models)
	if len(names) == 0 {
		return c, errors.New("--models: at least one model is required")
	}
	loaded := map[string]bool{}
	for _, n := range simSplit(s.Loaded) {
		loaded[n] = true
	}
	if len(loaded) == 0 {
		loaded[names[0]] = true
	}
	none := loaded["none"]
	delete(loaded, "none")
	thinking := map[string]bool{}
	for _, n := range simSplit(s.Thinking) {
		thinking[n] = true
	}
	for _, n := range names {
		lower := strings.ToLower(n)
		m := sim.Model{Name: n, Loaded: !none && (loaded["all"] || loaded[n]), Dims: s.Dims}
		m.Thinking = thinking[n] || (thinking["auto"] && (strings.HasPrefix(lower, "qwen3") || strings.HasPrefix(lower, "deepseek-r1")))
		c.Models = append(c.Models, m)
	}
	for n := range loaded {
		if n != "all" && !simContains(names, n) {
			return c, fmt.Errorf("--loaded: %q is not in --models", n)
		}
	}
	return c, nil
}

func simContains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
