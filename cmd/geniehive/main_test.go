package main

import "testing"

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
