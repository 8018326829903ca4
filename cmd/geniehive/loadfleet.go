package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/loadtest"
	"github.com/geniehive/geniehive/state"
)

const loadFleetUsage = `loadtest fleet --nodes N --services S --assets A [--interval 5s] [--duration 30s] [flags]

Writes heartbeats into Redis exactly as N node agents would, from one
process: each simulated node has S services of A models each (drawn from
--models names) and beats through the node agent's own writer
(nodeagent.WriteBeat: the node's key with the agent's TTL and its change
event, one MULTI/EXEC), first at a random point of the first interval, then
every --interval with the agent's jitter (nodeagent.NextBeat: ±10%). Metrics
(queue depth, in-flight, latency, tokens/s, VRAM) move on every beat, as a
busy host's do. Nothing is measured during --warmup (default one interval
plus a second: every node joins, which is not churn); the run then
measures for --duration and stops by itself; the nodes are removed (as
stopping agents do) unless --keep.

Unless --observe=false, a state watcher on its own connection follows the
fleet as another edge does, and the report gives each heartbeat's time to
become visible in that watcher's snapshot (p50/p99), and the watcher's
events applied and dropped, resyncs and snapshot builds. Redis CPU time,
commands and bytes come from INFO (summed over the masters of a Cluster).
--watch name=PID adds a process's CPU and RSS (an edge on the same Redis).

Example (what make bench-fleet runs):
  geniehive loadtest fleet --redis-url redis://127.0.0.1:6379/0 \
      --nodes 1000 --services 5 --assets 4 --interval 5s --duration 60s --watch edge=$EDGE_PID`

type loadFleetFlags struct {
	Config      string        `yaml:"-"`
	RedisURL    string        `yaml:"redis_url"`
	RedisPrefix string        `yaml:"redis_prefix"`
	Nodes       int           `yaml:"nodes"`
	Services    int           `yaml:"services"`
	Assets      int           `yaml:"assets"`
	Models      int           `yaml:"models"`
	Interval    time.Duration `yaml:"interval"`
	TTL         time.Duration `yaml:"ttl"`
	Duration    time.Duration `yaml:"duration"`
	Warmup      time.Duration `yaml:"warmup"`
	Writers     int           `yaml:"writers"`
	HostPrefix  string        `yaml:"host_prefix"`
	Endpoint    string        `yaml:"endpoint"`
	Observe     bool          `yaml:"observe"`
	Keep        bool          `yaml:"keep"`
	JSON        string        `yaml:"json"`
	Watch       namedList     `yaml:"watch"`
	Quiet       bool          `yaml:"quiet"`
}

func runLoadFleet(args []string) error {
	cmd := &cli.Command{Name: "loadtest fleet", Usage: loadFleetUsage}
	fs := cli.NewFlagSet(cmd)
	f := loadFleetFlags{}
	fs.StringVar(&f.Config, "config", "", "YAML file with these settings")
	fs.StringVar(&f.RedisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis to write into (any form geniehive accepts: Cluster and Sentinel too)")
	fs.StringVar(&f.RedisPrefix, "redis-prefix", "gh:", "key prefix in Redis")
	fs.IntVar(&f.Nodes, "nodes", 100, "simulated node agents")
	fs.IntVar(&f.Services, "services", 5, "services per node")
	fs.IntVar(&f.Assets, "assets", 4, "models per service")
	fs.IntVar(&f.Models, "models", 50, "distinct model names the assets are drawn from")
	fs.DurationVar(&f.Interval, "interval", 5*time.Second, "heartbeat interval (the node agent's heartbeat_interval)")
	fs.DurationVar(&f.TTL, "ttl", 0, "heartbeat TTL (default as the node agent's: 15s, or 3x the interval when that is longer)")
	fs.DurationVar(&f.Duration, "duration", 30*time.Second, "how long to measure, after the warm-up")
	fs.DurationVar(&f.Warmup, "warmup", 0, "unmeasured start while the nodes join (default: one interval plus 1s)")
	fs.IntVar(&f.Writers, "writers", 32, "heartbeats written at once, at most")
	fs.StringVar(&f.HostPrefix, "host-prefix", "fleet-", "host id prefix of the simulated nodes")
	fs.StringVar(&f.Endpoint, "endpoint", "http://127.0.0.1:9", "every simulated service's endpoint")
	fs.BoolVar(&f.Observe, "observe", true, "follow the fleet with a state watcher and report heartbeat-to-snapshot latency")
	fs.BoolVar(&f.Keep, "keep", false, "leave the nodes in Redis at the end")
	fs.StringVar(&f.JSON, "json", "", "write the JSON report to this file")
	fs.Var(&f.Watch, "watch", "`name=PID` of a process whose CPU and RSS to report (repeatable)")
	fs.BoolVar(&f.Quiet, "quiet", false, "no progress lines")
	if err := cli.Parse(fs, args, &f.Config, &f); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return cli.NoArgs("loadtest fleet", fs.Args())
	}
	if err := f.check(); err != nil {
		return cli.Usagef("loadtest fleet", "%w", err)
	}
	watch := map[string]int{}
	for _, p := range f.Watch.pairs() {
		pid, err := strconv.Atoi(p[1])
		if err != nil || pid <= 0 {
			return cli.Usagef("loadtest fleet", "--watch %s=%s: want a PID", p[0], p[1])
		}
		watch[p[0]] = pid
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	c, err := state.Connect(ctx, state.Options{URL: f.RedisURL})
	if err != nil {
		return err
	}
	defer c.Close()
	cfg := loadtest.FleetConfig{Nodes: f.Nodes, Services: f.Services, Assets: f.Assets, Models: f.Models, Interval: f.Interval, TTL: f.TTL,
		Duration: f.Duration, Warmup: f.Warmup, HostPrefix: f.HostPrefix, Endpoint: f.Endpoint, Writers: f.Writers, Keep: f.Keep, Watch: watch}
	if !f.Quiet {
		cfg.Progress = os.Stderr
	}
	if f.Observe {
		oc, err := state.Connect(ctx, state.Options{URL: f.RedisURL})
		if err != nil {
			return err
		}
		defer oc.Close()
		cfg.Observe = state.New(oc, f.RedisPrefix)
	}
	rep, err := loadtest.RunFleet(ctx, state.New(c, f.RedisPrefix), cfg)
	if err != nil {
		return err
	}
	printFleetReport(rep)
	if f.JSON != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(f.JSON, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	if rep.Heartbeats == 0 {
		return errors.New("no heartbeat was written")
	}
	return nil
}

// maxFleetNodes bounds --nodes: every simulated node's state is built in
// memory before the first beat, so a mistyped count would take the
// machine's memory (10^8 nodes took 24 GB) before any signal is read.
const maxFleetNodes = 1_000_000

// check refuses a flag out of range rather than replacing it with a
// default: 0 means "the default" only where the help says so (--ttl,
// --warmup).
func (f *loadFleetFlags) check() error {
	switch {
	case f.Nodes < 1 || f.Nodes > maxFleetNodes:
		return fmt.Errorf("--nodes %d: want 1 to %d", f.Nodes, maxFleetNodes)
	case f.Services < 1 || f.Services > state.MaxServicesPerNode:
		return fmt.Errorf("--services %d: want 1 to %d", f.Services, state.MaxServicesPerNode)
	case f.Assets < 1 || f.Assets > state.MaxAssetsPerService:
		return fmt.Errorf("--assets %d: want 1 to %d", f.Assets, state.MaxAssetsPerService)
	case f.Models < 1:
		return fmt.Errorf("--models %d: want at least 1", f.Models)
	case f.Writers < 1:
		return fmt.Errorf("--writers %d: want at least 1", f.Writers)
	case f.Duration <= 0:
		return fmt.Errorf("--duration %s: want a positive duration", f.Duration)
	case f.Interval < 100*time.Millisecond:
		return fmt.Errorf("--interval %s: want at least 100ms (the node agent's minimum)", f.Interval)
	case f.Warmup < 0:
		return fmt.Errorf("--warmup %s: want 0 (one interval plus 1s) or a positive duration", f.Warmup)
	case f.TTL < 0:
		return fmt.Errorf("--ttl %s: want 0 (the node agent's default) or a positive duration", f.TTL)
	}
	return nil
}

func printFleetReport(r *loadtest.FleetReport) {
	fmt.Printf("fleet: %d nodes x %d services x %d assets, interval %gs, %.1fs: %d heartbeats (%.1f/s), %d errors, %.0f bytes each\n",
		r.Nodes, r.Services, r.Assets, r.IntervalS, r.ElapsedS, r.Heartbeats, float64(r.Heartbeats)/r.ElapsedS, r.Errors, r.HeartbeatBytes)
	if r.Errors > 0 {
		fmt.Printf("  errors: %d timeouts; first: %s\n", r.Timeouts, r.FirstError)
	}
	ms := func(us float64) string { return strconv.FormatFloat(us/1000, 'f', 2, 64) + "ms" }
	if w := r.Write; w != nil {
		fmt.Printf("  write (MULTI/EXEC)      p50 %s  p99 %s  max %s\n", ms(w.P50), ms(w.P99), ms(w.Max))
	}
	if v := r.Visible; v != nil {
		fmt.Printf("  heartbeat -> snapshot   p50 %s  p99 %s  max %s  (%d seen)\n", ms(v.P50), ms(v.P99), ms(v.Max), v.Count)
	}
	if o := r.Observer; o != nil {
		fmt.Printf("  watcher: %d events applied, %d dropped, %d resyncs; builds full %d incremental %d figures %d, index rebuilds %d, node views built %d reused %d, policy-data version changes %d; last snapshot %d hosts %d services\n",
			o.EventsApplied, o.EventsDropped, o.Resyncs, o.Build.FullBuilds, o.Build.Incremental, o.Build.Figures, o.Build.IndexRebuilds, o.Build.ViewsBuilt, o.Build.ViewsReused, o.Build.DataVersion, o.FinalHosts, o.FinalServices)
	}
	if u := r.Redis; u != nil {
		fmt.Printf("  redis: cpu %.2fs (%.1f%% of one core), %d commands (%.0f/s), in %d B/s, out %d B/s, used memory %.1f MiB\n",
			u.CPUSeconds, u.CPUPercent, u.Commands, float64(u.Commands)/r.ElapsedS, int(float64(u.NetInBytes)/r.ElapsedS), int(float64(u.NetOutBytes)/r.ElapsedS), float64(u.UsedMemory)/(1<<20))
	}
	for _, p := range r.Processes {
		fmt.Printf("  %s (pid %d): cpu %.2fs (%.1f%% of one core), max RSS %.1f MiB\n", p.Name, p.PID, p.CPUSeconds, 100*p.CPUSeconds/r.ElapsedS, p.MaxRSSMiB)
	}
}
