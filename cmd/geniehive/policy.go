package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/policies"
	"github.com/geniehive/geniehive/policies/opa"
	"github.com/geniehive/geniehive/policy"
	"github.com/geniehive/geniehive/state"
)

func init() {
	cli.Register(&cli.Command{
		Name:    "policy",
		Summary: "test, push, inspect and evaluate policy bundles",
		Usage: `policy test DIR [-v]
       geniehive policy push DIR [--redis-url URL]
       geniehive policy status [--redis-url URL]
       geniehive policy eval --input FILE [--data FILE | --redis] [--dir DIR | --engine go|rego] [--body FILE --dialect openai|ollama]
       geniehive policy shipped DIR   (write the shipped Rego policy and its tests into DIR)`,
		Run: runPolicy,
	})
}

type policyFlags struct {
	redis   redisFlags
	verbose bool
	input   string
	data    string
	fromRDB bool
	dir     string
	engine  string
	body    string
	dialect string
}

func runPolicy(args []string) error {
	cmd, _ := cli.Lookup("policy")
	fs := cli.NewFlagSet(cmd)
	var f policyFlags
	f.redis.bind(fs)
	fs.BoolVar(&f.verbose, "v", false, "test: print every test, not only failures")
	fs.StringVar(&f.input, "input", "", "eval: Input JSON file (\"-\" for stdin)")
	fs.StringVar(&f.data, "data", "", "eval: Data JSON file")
	fs.BoolVar(&f.fromRDB, "redis", false, "eval: build Data from the live state in Redis")
	fs.StringVar(&f.dir, "dir", "", "eval: bundle directory to evaluate (default: the shipped policy)")
	fs.StringVar(&f.engine, "engine", "go", "eval without --dir: go (reference) or rego (shipped Rego)")
	fs.StringVar(&f.body, "body", "", "eval: a request body to rewrite for the first target")
	fs.StringVar(&f.dialect, "dialect", policies.DialectOpenAI, "eval: dialect of --body's upstream: openai or ollama")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := cli.Parse(fs, args, nil, nil); err != nil {
			return err
		}
		return cli.Usagef("policy", "want a subcommand: test, push, status, eval or shipped")
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "test", "push", "status", "eval", "shipped":
	default:
		return cli.UnknownSubcommand("policy", sub, "test, push, status, eval or shipped")
	}
	if err := cli.Parse(subFlags(fs, "policy "+sub), rest, nil, nil); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	oneDir := func() (string, error) {
		if fs.NArg() != 1 {
			return "", cli.Usagef("policy "+sub, "want one DIR")
		}
		return fs.Arg(0), nil
	}
	switch sub {
	case "test":
		dir, err := oneDir()
		if err != nil {
			return err
		}
		return policyTest(ctx, os.Stdout, dir, f.verbose)
	case "push":
		dir, err := oneDir()
		if err != nil {
			return err
		}
		return policyPush(ctx, os.Stdout, dir, &f)
	case "status":
		return policyStatus(ctx, os.Stdout, &f)
	case "eval":
		return policyEval(ctx, os.Stdout, &f)
	case "shipped":
		dir, err := oneDir()
		if err != nil {
			return err
		}
		return writeShipped(dir)
	default:
		return cli.UnknownSubcommand("policy", sub, "test, push, status, eval or shipped")
	}
}

// errTestsFailed makes the process exit 1 after the results were printed.
var errTestsFailed = errors.New("policy tests failed")

// policyTest runs a bundle's Rego tests and prints results like opa test.
func policyTest(ctx context.Context, w io.Writer, dir string, verbose bool) error {
	b, err := policies.LoadDir(dir)
	if err != nil {
		return err
	}
	rs, err := opa.TestBundle(ctx, b)
	if err != nil {
		return err
	}
	printResults(w, rs, verbose)
	if policy.Failed(rs) > 0 {
		return fmt.Errorf("%w: %d of %d", errTestsFailed, policy.Failed(rs), len(rs))
	}
	if b.HasRego() {
		e, err := opa.RegoFactory(ctx, b)
		if err != nil {
			return err
		}
		defer e.Close()
		if err := policies.SmokeEval(ctx, e); err != nil {
			return err
		}
	}
	return nil
}

func printResults(w io.Writer, rs []policy.TestResult, verbose bool) {
	file := ""
	for _, r := range rs {
		if !verbose && (r.Pass || r.Skip) {
			continue
		}
		if r.File != file {
			file = r.File
			fmt.Fprintf(w, "%s:\n", file)
		}
		fmt.Fprintf(w, "%s\n", r)
		if r.Output != "" && (verbose || !r.Pass) {
			for _, l := range strings.Split(strings.TrimRight(r.Output, "\n"), "\n") {
				fmt.Fprintf(w, "    %s\n", l)
			}
		}
	}
	if len(rs) > 0 && (verbose || policy.Failed(rs) > 0) {
		fmt.Fprintln(w, strings.Repeat("-", 80))
	}
	n, failed := len(rs), policy.Failed(rs)
	if failed == 0 {
		fmt.Fprintf(w, "PASS: %d/%d\n", n, n)
	} else {
		fmt.Fprintf(w, "PASS: %d/%d\nFAIL: %d/%d\n", n-failed, n, failed, n)
	}
}

func policyPush(ctx context.Context, w io.Writer, dir string, f *policyFlags) error {
	b, err := policies.LoadDir(dir)
	if err != nil {
		return err
	}
	var rs []policy.TestResult
	if b.HasRego() {
		e, results, err := policies.Prepare(ctx, b, opa.RegoFactory, opa.TestBundle)
		if err != nil {
			var tf *policy.TestFailedError
			if errors.As(err, &tf) {
				printResults(w, results, false)
			}
			return fmt.Errorf("refusing to push %s: %w", dir, err)
		}
		_ = e.Close()
		rs = results
	}
	// A module-only bundle (module.wasm) is validated by the edges' module
	// engine when they load it.
	st, closeFn, err := f.redis.store(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	if err := st.PutPolicyBundle(ctx, &fleet.PolicyBundle{Version: b.Version, Files: b.Files, PushedAt: time.Now().UTC()}); err != nil {
		return err
	}
	if err := verifyPushed(ctx, st, b); err != nil {
		return err
	}
	fmt.Fprintf(w, "pushed %s: %d file(s), %d test(s) passed, version %s\n", dir, len(b.Files), len(rs), b.Version)
	return nil
}

// verifyPushed reads the stored bundle back and checks it is, file for
// file, the one pushed (its digest): a bundle that does not survive the
// store (a module.wasm stored as text lost every byte >= 0x80 while the
// push reported success) or that another push replaced is reported, not
// announced as pushed.
func verifyPushed(ctx context.Context, st *state.Store, b *policy.Bundle) error {
	got, err := st.GetPolicyBundle(ctx)
	if err != nil {
		return fmt.Errorf("pushed, but reading it back failed: %w", err)
	}
	if got == nil {
		return errors.New("pushed, but no bundle is stored (was it deleted meanwhile?)")
	}
	if got.Version != b.Version || policy.BundleVersion(got.Files) != b.Version {
		return fmt.Errorf("the stored bundle (version %s, content digest %s) is not the one pushed (%s): "+
			"another push replaced it, or the store altered it", short(got.Version), short(policy.BundleVersion(got.Files)), short(b.Version))
	}
	return nil
}

func policyStatus(ctx context.Context, w io.Writer, f *policyFlags) error {
	st, closeFn, err := f.redis.store(ctx)
	if err != nil {
		return err
	}
	defer closeFn()
	pb, err := st.GetPolicyBundle(ctx)
	if err != nil {
		return err
	}
	edges, err := st.ListEdges(ctx)
	if err != nil {
		return err
	}
	want := ""
	if pb != nil {
		want = pb.Version
		fmt.Fprintf(w, "pushed bundle: %s (%d files, %s)\n\n", short(pb.Version), len(pb.Files), pb.PushedAt.Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "pushed bundle: none\n\n")
	}
	if good, digest, err := st.GoodBundle(ctx); err != nil {
		fmt.Fprintf(w, "last good bundle: unreadable (%v)\n\n", err)
	} else if good != nil {
		fmt.Fprintf(w, "last good bundle: %s (digest %s; what a restarted edge loads when the pushed one is refused)\n\n", short(good.Version), short(digest))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EDGE\tADDR\tENGINE\tVERSION\tIN SYNC\tERROR")
	for _, e := range edges {
		sync := "-"
		if want != "" {
			sync = "no"
			if e.PolicyVersion == want {
				sync = "yes"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.Addr, e.PolicyEngine, short(e.PolicyVersion), sync, e.PolicyError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(edges) == 0 {
		fmt.Fprintln(w, "(no live edges)")
	}
	return nil
}

func short(v string) string {
	if len(v) == 64 {
		return v[:12]
	}
	return v
}

func readFileOrStdin(p string) ([]byte, error) {
	if p == "-" {
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(p)
}

func policyEval(ctx context.Context, w io.Writer, f *policyFlags) error {
	if f.input == "" {
		return cli.Usagef("policy eval", "want --input FILE")
	}
	raw, err := readFileOrStdin(f.input)
	if err != nil {
		return err
	}
	var in policy.Input
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("%s: %w", f.input, err)
	}
	if in.SchemaVersion == 0 {
		in.SchemaVersion = policy.SchemaVersion
	}
	if in.ModelKey == "" {
		in.ModelKey = policies.NormalizeModel(in.Model)
	}
	if in.Operation == "" {
		in.Operation = fleet.KindChat
	}

	var data *policy.Data
	switch {
	case f.data != "" && f.fromRDB:
		return cli.Usagef("policy eval", "--data and --redis are exclusive")
	case f.data != "":
		raw, err := os.ReadFile(f.data)
		if err != nil {
			return err
		}
		data = &policy.Data{}
		if err := json.Unmarshal(raw, data); err != nil {
			return fmt.Errorf("%s: %w", f.data, err)
		}
	case f.fromRDB:
		st, closeFn, err := f.redis.store(ctx)
		if err != nil {
			return err
		}
		defer closeFn()
		wt := state.NewWatcher(st, state.WatcherOptions{})
		if err := wt.Refresh(ctx); err != nil {
			return err
		}
		data = policies.BuildData(wt.Current())
		if in.Service == nil {
			in.Service = policies.FindService(wt.Current(), in.ModelKey)
		}
	default:
		data = &policy.Data{SchemaVersion: policy.SchemaVersion}
	}

	var e policy.Engine
	switch {
	case f.dir != "":
		b, err := policies.LoadDir(f.dir)
		if err != nil {
			return err
		}
		if e, err = opa.RegoFactory(ctx, b); err != nil {
			return err
		}
	case f.engine == "go":
		e = policies.NewGo()
	case f.engine == "rego":
		if e, err = opa.NewRego(policies.ShippedPolicy(), opa.RegoOptions{}); err != nil {
			return err
		}
	default:
		return cli.Usagef("policy eval", "--engine %q: want go or rego", f.engine)
	}
	defer e.Close()
	if err := e.SetData(ctx, data); err != nil {
		return err
	}
	var d policy.Decision
	start := time.Now()
	if err := e.Eval(ctx, &in, &d); err != nil {
		return err
	}
	took := time.Since(start)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&d); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "engine %s, version %s, %s\n", e.Name(), short(e.Version()), took)
	if f.body != "" {
		if len(d.Targets) == 0 {
			return errors.New("--body: the decision has no target")
		}
		body, err := readFileOrStdin(f.body)
		if err != nil {
			return err
		}
		t := d.Targets[0]
		out, err := policies.ApplyPatch(body, t.Patch, f.dialect, t.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\nbody for %s %s (%s):\n%s\n", t.Kind, t.Name, f.dialect, out)
	}
	return nil
}

func writeShipped(dir string) error {
	for p, s := range policies.ShippedFiles() {
		fp := dir + string(os.PathSeparator) + strings.TrimPrefix(p, "rego/")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(fp, []byte(s), 0o644); err != nil {
			return err
		}
		fmt.Println(fp)
	}
	return nil
}
