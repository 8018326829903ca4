package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/loadtest"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "bench",
		Summary: "measure the models: run benchmark workloads, ingest reports",
		Usage: `bench <run|ingest|list> [flags]

  bench run --workload NAME --model M (--edge URL | --endpoint URL) [--out report.json]
      Sends every sample of the workload to the model (one at a time,
      streaming), scores each answer, prints progress and a summary, and
      writes a JSON report in the format of routing/BENCH_REPORT.md:
      workload, model (the asset that answered, from the edge's
      X-GenieHive-Model header, else the model asked for), service
      (X-GenieHive-Service), per-sample latency, TTFT, tokens/s and quality,
      and a summary. Each answer and its checks go to NAME.details.json.
      --edge sends through a GenieHive edge; --endpoint straight to an
      OpenAI-compatible upstream (then the report has no service).

  bench ingest REPORT.json --edge URL --api-key K
      Posts the report to the edge's POST /v1/cluster/benchmarks (operator
      key): its samples land in Redis and feed the routing benchmark
      signal. A malformed report is refused before anything is sent.

  bench list
      Lists the built-in workloads.

Workloads are YAML (see loadtest/workloads/*.yaml for the format); give your
own with --workload-file.`,
		Run: runBench,
	})
}

func runBench(args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		cmd, _ := cli.Lookup("bench")
		fs := cli.NewFlagSet(cmd)
		fs.SetOutput(os.Stderr)
		fs.Usage()
		if len(args) == 0 {
			return cli.ErrUsage
		}
		return nil
	}
	switch args[0] {
	case "run":
		return benchRun(args[1:])
	case "ingest":
		return benchIngest(args[1:])
	case "list":
		if len(args) > 1 {
			if args[1] == "-h" || args[1] == "--help" {
				fmt.Fprintln(os.Stderr, "Usage: geniehive bench list\n\nLists the built-in workloads.")
				return nil
			}
			return cli.NoArgs("bench list", args[1:])
		}
		return benchList()
	}
	return cli.UnknownSubcommand("bench", args[0], "run, ingest or list")
}

type benchRunFlags struct {
	Config       string        `yaml:"-"`
	Workload     string        `yaml:"workload"`
	WorkloadFile string        `yaml:"workload_file"`
	Model        string        `yaml:"model"`
	Edge         string        `yaml:"edge"`
	Endpoint     string        `yaml:"endpoint"`
	APIKey       string        `yaml:"api_key"`
	Out          string        `yaml:"out"`
	Repeat       int           `yaml:"repeat"`
	Timeout      time.Duration `yaml:"timeout"`
	Quiet        bool          `yaml:"quiet"`
}

func benchRun(args []string) error {
	cmd := &cli.Command{Name: "bench run", Usage: "bench run --workload NAME --model M (--edge URL | --endpoint URL) [--out report.json]"}
	fs := cli.NewFlagSet(cmd)
	f := benchRunFlags{}
	fs.StringVar(&f.Config, "config", "", "YAML file with these settings")
	fs.StringVar(&f.Workload, "workload", "", "workload name (built in: see 'geniehive bench list')")
	fs.StringVar(&f.WorkloadFile, "workload-file", "", "a workload YAML file of your own")
	fs.StringVar(&f.Model, "model", "", "model to benchmark (an asset or a role name)")
	fs.StringVar(&f.Edge, "edge", "", "base URL of a GenieHive edge")
	fs.StringVar(&f.Endpoint, "endpoint", "", "base URL of an OpenAI-compatible upstream (instead of --edge)")
	fs.StringVar(&f.APIKey, "api-key", "", "sent as Authorization: Bearer")
	fs.StringVar(&f.Out, "out", "", "write the JSON report here (default bench-<workload>-<model>.json)")
	fs.IntVar(&f.Repeat, "repeat", 1, "run every sample this many times")
	fs.DurationVar(&f.Timeout, "timeout", 2*time.Minute, "per sample")
	fs.BoolVar(&f.Quiet, "quiet", false, "no per-sample progress")
	if err := cli.Parse(fs, args, &f.Config, &f); err != nil {
		return err
	}
	if f.Workload == "" && f.WorkloadFile == "" {
		return cli.Usagef("bench run", "--workload or --workload-file is required")
	}
	if f.Model == "" {
		return cli.Usagef("bench run", "--model is required")
	}
	if (f.Edge == "") == (f.Endpoint == "") {
		return cli.Usagef("bench run", "give exactly one of --edge and --endpoint")
	}
	w, err := loadtest.LoadWorkload(f.Workload, f.WorkloadFile)
	if err != nil {
		return cli.Usagef("bench run", "%w", err)
	}
	endpoint := f.Edge + f.Endpoint
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	opts := loadtest.BenchOptions{Endpoint: endpoint, Model: f.Model, APIKey: f.APIKey, Repeat: f.Repeat, Timeout: f.Timeout}
	if !f.Quiet {
		opts.Progress = os.Stderr
	}
	fmt.Fprintf(os.Stderr, "workload %s (%d samples × %d) on model %s at %s\n", w.Name, len(w.Samples), max(f.Repeat, 1), f.Model, endpoint)
	rep, err := loadtest.RunBench(ctx, w, opts)
	if err != nil {
		return err
	}
	s := rep.Summary
	fmt.Printf("\n%s on %s", rep.Workload, rep.Model)
	if rep.Service != "" {
		fmt.Printf(" (service %s)", rep.Service)
	}
	fmt.Printf(": %d samples, %d ok, %d errors\n", s.Samples, s.OK, s.Errors)
	fmt.Printf("  quality %.3f   latency p50 %.0fms p90 %.0fms   TTFT p50 %.0fms   %.1f tokens/s\n",
		s.Quality, s.LatencyP50MS, s.LatencyP90MS, s.TTFTP50MS, s.TokensPerSec)
	for _, r := range rep.Samples {
		if r.Quality < 1 {
			var why []string
			for _, c := range r.Checks {
				if !c.Pass {
					why = append(why, strings.TrimSpace(c.Rule+" "+c.Detail))
				}
			}
			if r.Error != "" {
				why = append(why, r.Error)
			}
			fmt.Printf("  %-28s quality %.2f: %s\n", r.PromptID, r.Quality, strings.Join(why, "; "))
		}
	}
	out := f.Out
	if out == "" {
		out = "bench-" + safeName(rep.Workload) + "-" + safeName(rep.Model) + ".json"
	}
	if err := rep.WriteJSON(out); err != nil {
		return err
	}
	details := strings.TrimSuffix(out, ".json") + ".details.json"
	if err := rep.WriteDetails(details); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report written to %s (answers and checks in %s)\n", out, details)
	if s.OK == 0 {
		return fmt.Errorf("no sample was answered (first error: %s)", rep.Samples[0].Error)
	}
	return nil
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

type benchIngestFlags struct {
	Config string `yaml:"-"`
	Edge   string `yaml:"edge"`
	APIKey string `yaml:"api_key"`
}

func benchIngest(args []string) error {
	cmd := &cli.Command{Name: "bench ingest", Usage: "bench ingest REPORT.json --edge URL --api-key K"}
	fs := cli.NewFlagSet(cmd)
	f := benchIngestFlags{}
	fs.StringVar(&f.Config, "config", "", "YAML file with these settings")
	fs.StringVar(&f.Edge, "edge", "http://127.0.0.1:8080", "base URL of a GenieHive edge")
	fs.StringVar(&f.APIKey, "api-key", "", "operator API key")
	// Allow the report path before or after the flags.
	var files []string
	for len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		files = append(files, args[0])
		args = args[1:]
	}
	if err := cli.Parse(fs, args, &f.Config, &f); err != nil {
		return err
	}
	files = append(files, fs.Args()...)
	if len(files) == 0 {
		return cli.Usagef("bench ingest", "give the report file(s) to ingest")
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	for _, p := range files {
		rep, err := loadtest.ReadBenchReport(p)
		if err != nil {
			return fmt.Errorf("%s: %w (nothing was sent)", p, err)
		}
		res, err := loadtest.Ingest(ctx, f.Edge, f.APIKey, rep, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		fmt.Printf("%s: accepted by %s (HTTP %d): %s\n", p, f.Edge, res.Status, strings.TrimSpace(string(res.Body)))
	}
	return nil
}

func benchList() error {
	all, err := loadtest.BuiltinWorkloads()
	if err != nil {
		return err
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Printf("%-24s %2d samples  %s\n", n, len(all[n].Samples), all[n].Description)
	}
	return nil
}
