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
	want := "geniehive loadtest fleet: invalid value \"x\" for flag -nodes: parse error\nRun 'geniehive loadtest fleet --help' for usage.\n"
	if code != 2 || out != want {
		t.Errorf("loadtest fleet --nodes x: exit %d, stderr %q, want 2 and %q", code, out, want)
	}
}

// TestUsageErrorsNameTheCommand: a usage error names the exact command
// path it belongs to and that command's own --help (a subcommand's, not
// its group's; an unknown subcommand's group), exits 2, and the help it
// names runs. Every command group, and each flags-only command given a
// stray argument (which used to start the command). None of these reaches
// Redis or the network.
func TestUsageErrorsNameTheCommand(t *testing.T) {
	cases := []struct {
		args []string
		path string // the command the error must name
	}{
		{[]string{"node", "frobnicate"}, "node"},
		{[]string{"node", "--host-id", "h", "stray"}, "node"},
		{[]string{"node", "acl"}, "node acl"},
		{[]string{"node", "acl", "--bogus"}, "node acl"},
		{[]string{"node", "allow"}, "node allow"},
		{[]string{"node", "allow", "h"}, "node allow"},
		{[]string{"node", "allow", "--list", "h"}, "node allow"},
		{[]string{"loadtest", "nosuch"}, "loadtest"},
		{[]string{"loadtest", "--bogus"}, "loadtest"},
		{[]string{"loadtest", "fleet", "nosuch"}, "loadtest fleet"},
		{[]string{"loadtest", "fleet", "--nodes", "x"}, "loadtest fleet"},
		{[]string{"bench", "nosuch"}, "bench"},
		{[]string{"bench", "run"}, "bench run"},
		{[]string{"bench", "run", "--bogus"}, "bench run"},
		{[]string{"bench", "ingest"}, "bench ingest"},
		{[]string{"bench", "list", "x"}, "bench list"},
		{[]string{"policy"}, "policy"},
		{[]string{"policy", "nosuch"}, "policy"},
		{[]string{"policy", "test"}, "policy test"},
		{[]string{"policy", "test", "--bogus", "dir"}, "policy test"},
		{[]string{"policy", "push"}, "policy push"},
		{[]string{"policy", "shipped"}, "policy shipped"},
		{[]string{"policy", "eval"}, "policy eval"},
		{[]string{"roles"}, "roles"},
		{[]string{"roles", "nosuch"}, "roles"},
		{[]string{"roles", "load"}, "roles load"},
		{[]string{"roles", "check", "--bogus", "f"}, "roles check"},
		{[]string{"keys"}, "keys"},
		{[]string{"keys", "nosuch"}, "keys"},
		{[]string{"keys", "add"}, "keys add"},
		{[]string{"keys", "delete", "a", "b"}, "keys delete"},
		{[]string{"keys", "list", "x"}, "keys list"},
		{[]string{"sim", "nosuch"}, "sim"},
		{[]string{"edge", "nosuch"}, "edge"},
		{[]string{"dev", "nosuch"}, "dev"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			code, out := stderrOf(t, c.args...)
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			want := "Run 'geniehive " + c.path + " --help' for usage."
			if code != 2 || len(lines) != 2 || !strings.HasPrefix(lines[0], "geniehive "+c.path+": ") || lines[1] != want {
				t.Fatalf("geniehive %s: exit %d, stderr:\n%s\nwant exit 2, a line \"geniehive %s: ...\" and %q",
					strings.Join(c.args, " "), code, out, c.path, want)
			}
			// The help it names exists.
			if code, _ := stderrOf(t, append(strings.Fields(c.path), "--help")...); code != 0 {
				t.Fatalf("geniehive %s --help (named by the error): exit %d", c.path, code)
			}
		})
	}
}
