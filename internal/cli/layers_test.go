package cli

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

type layeredConfig struct {
	Name  string        `yaml:"name"`
	Wait  time.Duration `yaml:"wait"`
	Tags  []string      `yaml:"tags"`
	Inner struct {
		Probe time.Duration `yaml:"probe"`
	} `yaml:"inner"`
}

var layeredSettings = []Setting{
	{Flag: "name", Key: "name"},
	{Flag: "wait", Key: "wait"},
	{Flag: "tags", Key: "tags", List: true},
	{Flag: "probe", Key: "inner.probe"},
	{Flag: "key", List: true},
}

// TestLoadLayers: {file, env, flag} x {scalar, duration, list, keys}: each
// layer overrides the one below it, a zero value set in a higher layer
// wins, and keys (a setting outside the file) accumulate from env and
// flags.
func TestLoadLayers(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(file, []byte("name: file\nwait: 5s\ntags: [a, b]\ninner:\n  probe: 7s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want layeredConfig
		keys []string
	}{
		{"file", nil, nil, layeredConfig{Name: "file", Wait: 5 * time.Second, Tags: []string{"a", "b"}}, nil},
		{"env", map[string]string{"GENIEHIVE_NAME": "env", "GENIEHIVE_WAIT": "2s", "GENIEHIVE_TAGS": "x,y", "GENIEHIVE_KEY": "k1,k2"}, nil,
			layeredConfig{Name: "env", Wait: 2 * time.Second, Tags: []string{"x", "y"}}, []string{"k1", "k2"}},
		{"flag", map[string]string{"GENIEHIVE_NAME": "env", "GENIEHIVE_WAIT": "2s", "GENIEHIVE_KEY": "k1"},
			[]string{"--name", "flag", "--wait", "0", "--tags", "p", "--tags", "q,r", "--probe", "0s", "--key", "k3"},
			layeredConfig{Name: "flag", Wait: 0, Tags: []string{"p", "q", "r"}}, []string{"k1", "k3"}},
		{"flag-empty-scalar", nil, []string{"--name="}, layeredConfig{Name: "", Wait: 5 * time.Second, Tags: []string{"a", "b"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for k, v := range c.env {
				t.Setenv(k, v)
			}
			var got layeredConfig
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			l, err := Load(fs, append([]string{"--config", file}, c.args...), layeredSettings, nil, true, &got)
			if err != nil {
				t.Fatal(err)
			}
			want := c.want
			want.Inner.Probe = 7 * time.Second
			if c.name == "flag" {
				want.Inner.Probe = 0
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
			if !reflect.DeepEqual(l.Extra["key"], c.keys) {
				t.Errorf("keys %q, want %q", l.Extra["key"], c.keys)
			}
		})
	}
}

func TestLoadRejectsUnknownKeysAndBadValues(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: x\nnmae: typo\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var c layeredConfig
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := Load(fs, []string{"--config", bad}, layeredSettings, nil, true, &c); err == nil {
		t.Fatal("unknown key accepted")
	}
	fs = flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := Load(fs, []string{"--wait", "soon"}, layeredSettings, nil, false, &c); err == nil {
		t.Fatal("bad duration accepted")
	}
}
