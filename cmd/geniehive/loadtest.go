package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/loadtest"
	"github.com/geniehive/geniehive/loadtest/sim"
	"github.com/geniehive/geniehive/state"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "loadtest",
		Summary: "measure what the gateway costs: drive endpoints and compare them",
		Usage: `loadtest [flags]

Drives OpenAI-compatible endpoints with chat completions (streaming or not)
or embeddings and reports, per target, requests/s, p50/p90/p99/p99.9
latency, time to first byte and inter-chunk gaps for streams, and errors by
kind (connect, timeout, io, http_4xx, http_5xx, truncated_stream, bad_sse,
stream_error). Every target is driven in turn in short time slices (--slice)
under the same load, so the report compares them under the same conditions:
each target's throughput ratio and added microseconds over --baseline.

Modes:
  closed  --concurrency clients, each sends its next request when the last
          is answered (throughput and latency at that concurrency).
  open    --rate requests/s whatever the answers do; latency counts from
          each request's intended send time, so a stall is not hidden
          (no coordinated omission). --concurrency caps requests in flight.

One-machine gateway benchmark (--sim): starts a simulated OpenAI upstream
(model --model) and a bare fasthttp forwarder in front of it, and adds the
targets "direct" and "forwarder" (baseline "forwarder", the floor of any
extra HTTP hop). Add the edge with --target edge=URL; with --redis-url the
simulated upstream is also registered in Redis as host "loadtest-sim" so an
edge on that Redis routes --model to it (--edge-key creates an API key for
it too).

"geniehive loadtest fleet --help" describes the other mode: N simulated
node agents heartbeating into Redis (state churn, not requests).

Targets must be loopback or compose service names (no dot); others need
--allow-host. The run stops by itself after --duration or --requests.

Examples:
  geniehive loadtest --sim --concurrency 32 --duration 20s
  geniehive loadtest --sim --stream --chunks 20 --concurrency 8
  geniehive loadtest --target edge=http://127.0.0.1:8080 --target up=http://127.0.0.1:11434 \
      --baseline up --model qwen3:8b --api-key $KEY --json now.json --compare before.json`,
		Run: runLoadtest,
	})
}

// namedList is a repeatable name=value flag.
type namedList []string

func (n *namedList) String() string { return strings.Join(*n, ",") }

func (n *namedList) Set(v string) error {
	// cli.Parse re-applies explicit flags with their String(); do not
	// double the list then.
	if len(*n) > 0 && v == n.String() {
		return nil
	}
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.Contains(p, "=") {
			return fmt.Errorf("%q: want name=value", p)
		}
		*n = append(*n, p)
	}
	return nil
}

func (n namedList) pairs() [][2]string {
	out := make([][2]string, 0, len(n))
	for _, p := range n {
		k, v, _ := strings.Cut(p, "=")
		out = append(out, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
	}
	return out
}

type loadtestFlags struct {
	Config      string         `yaml:"-"`
	Targets     namedList      `yaml:"targets"`
	Baseline    string         `yaml:"baseline"`
	Mode        string         `yaml:"mode"`
	Concurrency int            `yaml:"concurrency"`
	Rate        float64        `yaml:"rate"`
	Duration    time.Duration  `yaml:"duration"`
	Requests    int            `yaml:"requests"`
	Warmup      time.Duration  `yaml:"warmup"`
	Slice       time.Duration  `yaml:"slice"`
	Kind        string         `yaml:"kind"`
	Stream      bool           `yaml:"stream"`
	Chunks      int            `yaml:"chunks"`
	Model       string         `yaml:"model"`
	APIKey      string         `yaml:"api_key"`
	Timeout     time.Duration  `yaml:"timeout"`
	JSON        string         `yaml:"json"`
	Compare     string         `yaml:"compare"`
	AllowHosts  cli.StringList `yaml:"allow_hosts"`
	Watch       namedList      `yaml:"watch"`
	Quiet       bool           `yaml:"quiet"`

	Sim              bool           `yaml:"sim"`
	SimLatency       time.Duration  `yaml:"sim_latency"`
	SimTTFT          time.Duration  `yaml:"sim_ttft"`
	SimChunkInterval time.Duration  `yaml:"sim_chunk_interval"`
	NoForwarder      bool           `yaml:"no_forwarder"`
	NoDirect         bool           `yaml:"no_direct"`
	RedisURL         string         `yaml:"redis_url"`
	RedisPrefix      string         `yaml:"redis_prefix"`
	EdgeKey          bool           `yaml:"edge_key"`
	SimServices      int            `yaml:"sim_services"`
	Edge             bool           `yaml:"edge"`
	EdgeConfig       string         `yaml:"edge_config"`
	EdgeStrategy     string         `yaml:"edge_strategy"`
	EdgeArgs         cli.StringList `yaml:"edge_args"`
	InProcess        bool           `yaml:"in_process"`
	ServeForwarder   string         `yaml:"-"`
	Upstream         string         `yaml:"-"`
}

func runLoadtest(args []string) error {
	if len(args) > 0 && args[0] == "fleet" {
		return runLoadFleet(args[1:])
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		return cli.UnknownSubcommand("loadtest", args[0], "fleet; the interleaved run itself takes flags only")
	}
	cmd, _ := cli.Lookup("loadtest")
	fs := cli.NewFlagSet(cmd)
	f := loadtestFlags{}
	fs.StringVar(&f.Config, "config", "", "YAML file with these settings (keys as in the yaml tags: targets, mode, …)")
	fs.Var(&f.Targets, "target", "`name=URL` of an endpoint to drive (repeatable); the API path is appended to the base URL")
	fs.StringVar(&f.Baseline, "baseline", "", "target the others are compared with (default: forwarder with --sim, else the first)")
	fs.StringVar(&f.Mode, "mode", "closed", "closed (fixed concurrency) or open (fixed arrival rate)")
	fs.IntVar(&f.Concurrency, "concurrency", 0, "clients (closed) or most requests in flight (open); default 32 closed, 1024 open")
	fs.Float64Var(&f.Rate, "rate", 0, "open loop: requests/s sent to the target in its slice")
	fs.DurationVar(&f.Duration, "duration", 0, "measured time for all targets together (default 10s unless --requests)")
	fs.IntVar(&f.Requests, "requests", 0, "stop after this many requests per target")
	fs.DurationVar(&f.Warmup, "warmup", time.Second, "unrecorded warm-up before measuring")
	fs.DurationVar(&f.Slice, "slice", 250*time.Millisecond, "time each target is driven before the next takes over")
	fs.StringVar(&f.Kind, "kind", "chat", "chat or embeddings")
	fs.BoolVar(&f.Stream, "stream", false, "stream chat answers (SSE); measures TTFB and inter-chunk gaps")
	fs.IntVar(&f.Chunks, "chunks", 20, "max_tokens asked for: the simulated upstream sends that many chunks")
	fs.StringVar(&f.Model, "model", "sim", "model name in each request")
	fs.StringVar(&f.APIKey, "api-key", "", "sent as Authorization: Bearer")
	fs.DurationVar(&f.Timeout, "timeout", 30*time.Second, "per request, stream included")
	fs.StringVar(&f.JSON, "json", "", "write the JSON report to this file")
	fs.StringVar(&f.Compare, "compare", "", "a previous JSON report to compare with")
	fs.Var(&f.AllowHosts, "allow-host", "admit a non-loopback target host, IP or CIDR (repeatable)")
	fs.Var(&f.Watch, "watch", "`name=PID` of a process (the edge) whose max RSS and CPU time to report (repeatable)")
	fs.BoolVar(&f.Quiet, "quiet", false, "no progress line")
	fs.BoolVar(&f.Sim, "sim", false, "start a simulated upstream and a bare forwarder and add them as targets direct and forwarder")
	fs.DurationVar(&f.SimLatency, "sim-latency", 0, "simulated upstream: wait before the response headers")
	fs.DurationVar(&f.SimTTFT, "sim-ttft", 0, "simulated upstream: wait before the first token")
	fs.DurationVar(&f.SimChunkInterval, "sim-chunk-interval", 0, "simulated upstream: time between tokens")
	fs.BoolVar(&f.NoForwarder, "no-forwarder", false, "with --sim: do not add the forwarder target")
	fs.BoolVar(&f.NoDirect, "no-direct", false, "with --sim: do not add the direct target")
	fs.StringVar(&f.RedisURL, "redis-url", "", "with --sim: register the simulated upstream in this Redis so an edge routes --model to it")
	fs.StringVar(&f.RedisPrefix, "redis-prefix", "gh:", "key prefix in Redis")
	fs.IntVar(&f.SimServices, "sim-services", 2, "with --redis-url or --edge: register the simulated upstream as this many services (same endpoint), so round_robin has a rotation to keep")
	fs.BoolVar(&f.EdgeKey, "edge-key", false, "with --sim --redis-url: create a client API key for the run (sets --api-key), deleted afterwards")
	fs.BoolVar(&f.Edge, "edge", false, "with --sim: also start an edge ('geniehive edge' as a child process, so its RSS and CPU are its own) on --redis-url (a private redis-server when none is given), add it as target \"edge\" and watch it")
	fs.StringVar(&f.EdgeConfig, "edge-config", "", "with --edge: the edge's YAML config (default: routing.default_strategy from --edge-strategy)")
	fs.StringVar(&f.EdgeStrategy, "edge-strategy", "round_robin", "with --edge and no --edge-config: scored, round_robin or least_loaded")
	fs.Var(&f.EdgeArgs, "edge-arg", "with --edge: an extra argument for 'geniehive edge' (repeatable)")
	fs.BoolVar(&f.InProcess, "in-process", false, "with --sim: run the simulated upstream and the forwarder inside the load generator instead of as child processes")
	fs.StringVar(&f.ServeForwarder, "serve-forwarder", "", "only run a bare forwarder on this address (with --upstream) until stopped")
	fs.StringVar(&f.Upstream, "upstream", "", "with --serve-forwarder: the upstream base URL")
	if err := cli.Parse(fs, args, &f.Config, &f); err != nil {
		return err
	}
	if f.ServeForwarder != "" {
		return serveForwarder(f.ServeForwarder, f.Upstream)
	}
	if f.Edge && !f.Sim {
		return fmt.Errorf("%w: --edge needs --sim (give an external edge as --target edge=URL)", cli.ErrUsage)
	}
	if err := cli.NoArgs("loadtest", fs.Args()); err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	cfg := loadtest.Config{
		Baseline: f.Baseline, Mode: loadtest.Mode(f.Mode), Concurrency: f.Concurrency, Rate: f.Rate,
		Duration: f.Duration, Requests: f.Requests, Warmup: f.Warmup, Slice: f.Slice,
		Kind: loadtest.Kind(f.Kind), Stream: f.Stream, Chunks: f.Chunks, Model: f.Model, APIKey: f.APIKey,
		Timeout: f.Timeout, AllowHosts: f.AllowHosts,
	}
	if !f.Quiet {
		cfg.Progress = os.Stderr
	}
	var notes []string
	if f.Sim {
		kind := sim.KindChat
		if cfg.Kind == loadtest.KindEmbeddings {
			kind = sim.KindEmbeddings
		}
		var upURL, fwURL string
		if f.InProcess {
			up, err := sim.Start(sim.Config{
				Models: []sim.Model{{Name: f.Model, Kind: kind}},
				Behavior: sim.Behavior{
					Latency: f.SimLatency, TTFT: f.SimTTFT, ChunkInterval: f.SimChunkInterval, Chunks: max(f.Chunks, 1),
				},
			})
			if err != nil {
				return fmt.Errorf("starting the simulated upstream: %w", err)
			}
			defer up.Close()
			upURL = up.URL()
			if !f.NoForwarder {
				fw, err := loadtest.StartForwarder("127.0.0.1:0", upURL)
				if err != nil {
					return fmt.Errorf("starting the forwarder: %w", err)
				}
				defer fw.Close()
				fwURL = fw.URL()
			}
			notes = append(notes, "in-process simulated upstream and forwarder share the load generator's process")
		} else {
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			pid, stop, err := spawn(ctx, addr, "sim", "--flavor", "openai", "--listen", addr, "--models", f.Model,
				"--chunks", strconv.Itoa(max(f.Chunks, 1)), "--latency", f.SimLatency.String(), "--ttft", f.SimTTFT.String(),
				"--chunk-interval", f.SimChunkInterval.String())
			if err != nil {
				return fmt.Errorf("starting the simulated upstream: %w", err)
			}
			defer stop()
			upURL = "http://" + addr
			f.Watch = append(f.Watch, "sim="+strconv.Itoa(pid))
			if !f.NoForwarder {
				faddr, err := freeAddr()
				if err != nil {
					return err
				}
				fpid, fstop, err := spawn(ctx, faddr, "loadtest", "--serve-forwarder", faddr, "--upstream", upURL)
				if err != nil {
					return fmt.Errorf("starting the forwarder: %w", err)
				}
				defer fstop()
				fwURL = "http://" + faddr
				f.Watch = append(f.Watch, "forwarder="+strconv.Itoa(fpid))
			}
			notes = append(notes, "simulated upstream and forwarder run as child processes ('geniehive sim', 'geniehive loadtest --serve-forwarder')")
		}
		fmt.Fprintf(os.Stderr, "simulated upstream %s (model %s)\n", upURL, f.Model)
		var simTargets []loadtest.Target
		if !f.NoDirect {
			simTargets = append(simTargets, loadtest.Target{Name: "direct", URL: upURL})
		}
		if fwURL != "" {
			fmt.Fprintf(os.Stderr, "bare forwarder %s -> %s\n", fwURL, upURL)
			simTargets = append(simTargets, loadtest.Target{Name: "forwarder", URL: fwURL})
			if cfg.Baseline == "" {
				cfg.Baseline = "forwarder"
			}
		}
		cfg.Targets = append(cfg.Targets, simTargets...)
		if f.Edge && f.RedisURL == "" {
			url, pid, stop, err := startPrivateRedis(ctx)
			if err != nil {
				return err
			}
			defer stop()
			f.RedisURL = url
			// The edge's Redis work is part of its cost: watch it too.
			f.Watch = append(f.Watch, "redis="+strconv.Itoa(pid))
		}
		if f.RedisURL != "" {
			cleanup, key, err := registerSim(ctx, f.RedisURL, f.RedisPrefix, upURL, f.Model, kind, f.SimServices, f.EdgeKey)
			if err != nil {
				return err
			}
			defer cleanup()
			if key != "" {
				cfg.APIKey, f.APIKey = key, key
			}
		}
		if f.Edge {
			url, pid, stop, err := startEdge(ctx, f)
			if err != nil {
				return err
			}
			defer stop()
			cfg.Targets = append(cfg.Targets, loadtest.Target{Name: "edge", URL: url})
			f.Watch = append(f.Watch, "edge="+strconv.Itoa(pid))
			notes = append(notes, "edge: child process 'geniehive edge' (pid "+strconv.Itoa(pid)+"), Redis "+state.RedactURL(f.RedisURL))
		}
	}
	for _, p := range f.Targets.pairs() {
		cfg.Targets = append(cfg.Targets, loadtest.Target{Name: p[0], URL: p[1]})
	}
	if len(f.Watch) > 0 {
		cfg.Watch = map[string]int{}
		for _, p := range f.Watch.pairs() {
			pid, err := strconv.Atoi(p[1])
			if err != nil {
				return fmt.Errorf("%w: --watch %s=%s: not a pid", cli.ErrUsage, p[0], p[1])
			}
			cfg.Watch[p[0]] = pid
		}
	}
	if len(cfg.Targets) == 0 {
		return fmt.Errorf("%w: no targets: use --target name=URL or --sim", cli.ErrUsage)
	}
	var old *loadtest.Report
	if f.Compare != "" {
		var err error
		if old, err = loadtest.ReadReport(f.Compare); err != nil {
			return fmt.Errorf("--compare: %w", err)
		}
	}
	rep, err := loadtest.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w: %w", cli.ErrUsage, err)
	}
	rep.Notes = append(rep.Notes, notes...)
	if ctx.Err() != nil {
		rep.Notes = append(rep.Notes, "interrupted: the report covers the part that ran")
	}
	rep.WriteTable(os.Stdout)
	if old != nil {
		loadtest.WriteComparison(os.Stdout, old, rep)
	}
	if f.JSON != "" {
		if err := rep.WriteJSON(f.JSON); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "report written to %s\n", f.JSON)
	}
	var failed int64
	for _, t := range rep.Targets {
		if t.OK == 0 {
			failed++
		}
	}
	if failed > 0 {
		return errors.New("some targets answered no request successfully")
	}
	return nil
}

// registerSim registers the simulated upstream in Redis for an edge to
// route to, and optionally creates a temporary API key.
func registerSim(ctx context.Context, redisURL, prefix string, upURL string, model, kind string, services int, withKey bool) (cleanup func(), key string, err error) {
	c, err := state.Connect(ctx, state.Options{URL: redisURL, Prefix: prefix})
	if err != nil {
		return nil, "", err
	}
	st := state.New(c, prefix)
	reg, err := loadtest.RegisterUpstream(ctx, st, "loadtest-sim", upURL, model, fleet.Kind(kind), services)
	if err != nil {
		c.Close()
		return nil, "", fmt.Errorf("registering the simulated upstream: %w", err)
	}
	if withKey {
		if key, err = reg.TempKey(ctx); err != nil {
			reg.Stop()
			c.Close()
			return nil, "", fmt.Errorf("creating an API key: %w", err)
		}
	}
	fmt.Fprintf(os.Stderr, "simulated upstream registered in Redis as host loadtest-sim (%d service(s) loadtest-sim/sim…, model %s)\n", max(services, 1), model)
	// Give edges a moment to see the change event.
	time.Sleep(200 * time.Millisecond)
	return func() { reg.Stop(); c.Close() }, key, nil
}

// startPrivateRedis runs a throw-away redis-server on a free loopback port.
func startPrivateRedis(ctx context.Context) (url string, pid int, stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return "", 0, nil, err
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", 0, nil, fmt.Errorf("--edge without --redis-url needs redis-server on PATH: %w", err)
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i := 0; i < 100 && ctx.Err() == nil; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			fmt.Fprintf(os.Stderr, "private redis-server on %s (pid %d)\n", addr, cmd.Process.Pid)
			return "redis://" + addr + "/0", cmd.Process.Pid, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", 0, nil, errors.New("redis-server did not start")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startEdge runs this binary's edge command as a child process and waits
// until it is ready and routes --model.
func startEdge(ctx context.Context, f loadtestFlags) (url string, pid int, stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return "", 0, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return "", 0, nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	// No shutdown delay: nothing balances load onto this edge, and stop()
	// gives it 5s before it kills it.
	args := []string{"edge", "--listen", addr, "--redis-url", f.RedisURL, "--prefix", f.RedisPrefix, "--log-level", "warn", "--shutdown-delay", "0"}
	conf := f.EdgeConfig
	if conf == "" {
		dir, err := os.MkdirTemp("", "geniehive-loadtest-")
		if err != nil {
			return "", 0, nil, err
		}
		defer os.RemoveAll(dir) // the edge reads it at start
		conf = filepath.Join(dir, "edge.yaml")
		y := "access_log: false\nrouting:\n  default_strategy: " + f.EdgeStrategy + "\n"
		if err := os.WriteFile(conf, []byte(y), 0o600); err != nil {
			return "", 0, nil, err
		}
	}
	args = append(args, "--config", conf)
	args = append(args, f.EdgeArgs...)
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Env = os.Environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _, _ = cmd.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	url = "http://" + addr
	body := `{"model":` + strconv.Quote(f.Model) + `,"messages":[{"role":"user","content":"ping"}],"max_tokens":1}`
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if f.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+f.APIKey)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b := make([]byte, 300)
			n, _ := resp.Body.Read(b)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				fmt.Fprintf(os.Stderr, "edge %s (pid %d, config %s) routes %s\n", url, cmd.Process.Pid, conf, f.Model)
				return url, cmd.Process.Pid, stop, nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b[:n])
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return "", 0, nil, fmt.Errorf("the edge did not become ready: %s", last)
}

func freeAddr() (string, error) {
	p, err := freePort()
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(p), nil
}

// spawn runs this binary with args as a child process (killed with us)
// and waits until it accepts connections on addr.
func spawn(ctx context.Context, addr string, args ...string) (pid int, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, nil, err
	}
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	stop = func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }
	for i := 0; i < 200 && ctx.Err() == nil; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return cmd.Process.Pid, stop, nil
		}
		time.Sleep(25 * time.Millisecond)
	}
	stop()
	return 0, nil, fmt.Errorf("%s %s did not listen on %s", filepath.Base(self), args[0], addr)
}

// serveForwarder runs a bare forwarder until SIGINT/SIGTERM.
func serveForwarder(addr, upstream string) error {
	if upstream == "" {
		return fmt.Errorf("%w: --serve-forwarder needs --upstream", cli.ErrUsage)
	}
	if err := loadtest.CheckTarget(upstream, nil); err != nil {
		return err
	}
	fw, err := loadtest.StartForwarder(addr, upstream)
	if err != nil {
		return err
	}
	defer fw.Close()
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	<-ctx.Done()
	return nil
}
