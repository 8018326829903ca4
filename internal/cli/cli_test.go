package cli

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type cfg struct {
	Listen string     `yaml:"listen"`
	Redis  string     `yaml:"redis_url"`
	Tags   StringList `yaml:"tags"`
	N      int        `yaml:"n"`
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte("listen: file:1\nredis_url: file-redis\ntags: [x]\nn: 3\n"), 0o644)
	t.Setenv("GENIEHIVE_REDIS_URL", "env-redis")
	t.Setenv("GENIEHIVE_N", "4")
	var c cfg
	var conf string
	cmd := &Command{Name: "t", Usage: "t"}
	fs := NewFlagSet(cmd)
	fs.StringVar(&conf, "config", "", "")
	fs.StringVar(&c.Listen, "listen", "default", "")
	fs.StringVar(&c.Redis, "redis-url", "default", "")
	fs.Var(&c.Tags, "tags", "")
	fs.IntVar(&c.N, "n", 1, "")
	if err := Parse(fs, []string{"--config", path, "--tags", "a,b", "--n", "5"}, &conf, &c); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "file:1" || c.Redis != "env-redis" || c.N != 5 || len(c.Tags) != 2 || c.Tags[0] != "a" {
		t.Fatalf("got %+v", c)
	}
}

func TestBadFileNamesIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(path, []byte("listen: [\n"), 0o644)
	var c cfg
	var conf string
	fs := NewFlagSet(&Command{Name: "t"})
	fs.StringVar(&conf, "config", "", "")
	err := Parse(fs, []string{"--config", path}, &conf, &c)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml") {
		t.Fatalf("want error naming the file, got %v", err)
	}
}

func TestFlagsAfterPositionalArgs(t *testing.T) {
	fs := NewFlagSet(&Command{Name: "t"})
	url := fs.String("redis-url", "default", "")
	v := fs.Bool("v", false, "")
	if err := Parse(fs, []string{"FILE", "--redis-url", "redis://x", "-v", "OTHER", "--", "--not-a-flag"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if *url != "redis://x" || !*v {
		t.Fatalf("flags after positionals ignored: url=%q v=%v", *url, *v)
	}
	if got := strings.Join(fs.Args(), " "); got != "FILE OTHER --not-a-flag" {
		t.Fatalf("positionals %q", got)
	}
}

// opaqueFlag is a flag whose String() says nothing (as the old --key flag's
// did): Parse must apply it from the command line, not re-read it.
type opaqueFlag struct{ dst *[]string }

func (o opaqueFlag) String() string     { return "" }
func (o opaqueFlag) Set(v string) error { *o.dst = append(*o.dst, v); return nil }

// TestParseAppliesFlagsOnceFromTheCommandLine: a flag set on the command
// line is applied once, from its text, after the file and the environment
// (defect 2's class: flags used to be re-applied through Value.String()).
func TestParseAppliesFlagsOnceFromTheCommandLine(t *testing.T) {
	type conf struct {
		Name  string   `yaml:"name"`
		Items []string `yaml:"items"`
	}
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("name: file\nitems: [a]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c conf
	var path string
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.StringVar(&path, "config", "", "")
	fs.StringVar(&c.Name, "name", "default", "")
	fs.Var(opaqueFlag{&c.Items}, "item", "")
	if err := Parse(fs, []string{"--config", file, "--item", "b"}, &path, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "file" || len(c.Items) != 2 || c.Items[0] != "a" || c.Items[1] != "b" {
		t.Fatalf("got %+v, want name from the file and items a (file) + b (flag, once)", c)
	}
}

// TestHelpOutput: the --help list drops the backticks of a `placeholder`
// (shown after the flag name instead), gives a default once (not again
// when the help already says it, nor for a zero duration), and a bad value
// prints nothing but comes back as a usage error naming the help.
func TestHelpOutput(t *testing.T) {
	newFS := func(out io.Writer) *flag.FlagSet {
		fs := NewFlagSet(&Command{Name: "loadtest fleet", Usage: "loadtest fleet [flags]"})
		fs.SetOutput(out)
		var d time.Duration
		var n int
		var s, w string
		fs.DurationVar(&d, "warmup", 0, "unmeasured start (default: one interval plus 1s)")
		fs.IntVar(&n, "nodes", 100, "simulated node agents")
		fs.IntVar(&n, "writers", 32, "writers at once (default 32, or one per node)")
		fs.StringVar(&s, "host-prefix", "fleet-", "host id prefix")
		fs.StringVar(&w, "watch", "", "`name=PID` of a process to watch")
		return fs
	}
	var help bytes.Buffer
	if err := Parse(newFS(&help), []string{"--help"}, nil, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	out := help.String()
	for _, want := range []string{
		"--warmup  [GENIEHIVE_WARMUP]\n      unmeasured start (default: one interval plus 1s)\n",
		"simulated node agents (default 100)\n",
		"writers at once (default 32, or one per node)\n",
		"host id prefix (default fleet-)\n",
		"--watch name=PID  [GENIEHIVE_WATCH]\n      name=PID of a process to watch\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "`") || strings.Contains(out, "(default 0s)") || strings.Contains(out, "(default 32)") {
		t.Errorf("help has backticks or a repeated default:\n%s", out)
	}
	for _, args := range [][]string{{"--nodes", "x"}, {"--no-such-flag"}} {
		var buf bytes.Buffer
		err := Parse(newFS(&buf), args, nil, nil)
		if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "see 'geniehive loadtest fleet --help'") {
			t.Errorf("%v: err = %v, want a usage error naming the help", args, err)
		}
		if buf.Len() != 0 {
			t.Errorf("%v: printed %q, want nothing (the caller prints the error)", args, buf.String())
		}
	}
}
