package main

import (
	"os"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"--help"}, 0},
		{[]string{"help", "roles"}, 0},
		{[]string{"node", "--help"}, 0},
		{[]string{"edge", "--help"}, 0},
		{nil, 2},
		{[]string{"bogus"}, 2},
		{[]string{"roles", "load"}, 2},          // missing FILE
		{[]string{"edge", "--no-such-flag"}, 2}, // bad flag
		{[]string{"roles", "check", "/nonexistent/catalog.yaml"}, 1},
	}
	for _, c := range cases {
		if got := run(c.args); got != c.want {
			t.Errorf("geniehive %v: exit %d, want %d", c.args, got, c.want)
		}
	}
}

// stderrOf runs geniehive with args and returns what it wrote to stderr.
func stderrOf(t *testing.T, args ...string) (int, string) {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	old := os.Stderr
	os.Stderr = f
	code := run(args)
	os.Stderr = old
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return code, string(b)
}

// TestLoadFleetHelpAndBadValue: 'loadtest fleet --help' says each default
// once and shows --watch's placeholder without backticks; a bad value is
// one error line naming the help, not the flag list.
func TestLoadFleetHelpAndBadValue(t *testing.T) {
	code, out := stderrOf(t, "loadtest", "fleet", "--help")
	if code != 0 || !strings.Contains(out, "(default: one interval plus 1s)\n") || strings.Contains(out, "(default 0s)") ||
		strings.Contains(out, "`") || !strings.Contains(out, "--watch name=PID  [GENIEHIVE_WATCH]") {
		t.Errorf("loadtest fleet --help: exit %d:\n%s", code, out)
	}
	code, out = stderrOf(t, "loadtest", "fleet", "--nodes", "x")
	want := "geniehive loadtest: usage error: invalid value \"x\" for flag -nodes: parse error (see 'geniehive loadtest fleet --help')\n"
	if code != 2 || out != want {
		t.Errorf("loadtest fleet --nodes x: exit %d, stderr %q, want 2 and %q", code, out, want)
	}
}
