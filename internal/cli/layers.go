package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/v2"
	"gopkg.in/yaml.v3"
)

// Setting binds one flag to one key of a command's config file. Its
// environment variable is EnvName(Flag). One flag name per setting: the
// same setting has no second flag.
type Setting struct {
	// Flag is the flag name ("shutdown-delay").
	Flag string
	// Key is the dotted path of the setting in the config file
	// ("timeouts.shutdown_delay"). Empty for a setting that is not in the
	// file (its values go to Extra).
	Key string
	// Help is the flag's usage line; say the default there.
	Help string
	// Bool makes --flag mean --flag=true.
	Bool bool
	// List makes the flag repeatable; each use may hold comma-separated
	// values; the environment variable holds comma-separated values.
	List bool
}

// Layers are a command's settings as the layers gave them.
type Layers struct {
	// Extra holds the values of settings without a Key, by flag name,
	// from the environment and then the flags (a List setting gets both).
	Extra map[string][]string
	// Args are the positional arguments.
	Args []string
}

// Load layers a command's configuration, in increasing precedence:
// defaults (Key -> value), the YAML config file (--config or
// GENIEHIVE_CONFIG, when withFile), GENIEHIVE_* environment variables, and
// flags; then decodes the merged document into out (a pointer to a struct
// whose fields carry yaml tags; unknown keys in the file are errors).
// Layers are merged by github.com/knadh/koanf: a flag replaces the value
// below it as the raw text given on the command line — nothing is re-read
// through flag.Value.String — and a value that is set wins even when it is
// the zero value ("--probe-interval 0" over "probe_interval: 5s").
//
// # Errors
// flag.ErrHelp for --help; ErrUsage-wrapped errors for bad flags, bad
// environment values, and an unreadable or invalid config file (naming
// the file).
func Load(fs *flag.FlagSet, args []string, settings []Setting, defaults map[string]any, withFile bool, out any) (*Layers, error) {
	raws := make([]*rawValue, len(settings))
	for i, s := range settings {
		raws[i] = &rawValue{bool: s.Bool, list: s.List}
		fs.Var(raws[i], s.Flag, s.Help)
	}
	var configPath string
	if withFile {
		fs.StringVar(&configPath, "config", "", "YAML config file")
	}
	if err := parseFlags(fs, flagsFirst(fs, args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, flagError(fs, err)
	}
	k := koanf.New(".")
	load := func(m map[string]any, what string) error {
		if err := k.Load(mapProvider(m), nil); err != nil {
			return fmt.Errorf("%w: %s: %w", ErrUsage, what, err)
		}
		return nil
	}
	if err := load(defaults, "defaults"); err != nil {
		return nil, err
	}
	if withFile {
		if configPath == "" {
			configPath = os.Getenv(EnvName("config"))
		}
		if configPath != "" {
			m, err := readYAMLMap(configPath)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUsage, err)
			}
			if err := load(m, configPath); err != nil {
				return nil, err
			}
		}
	}
	layers := &Layers{Extra: map[string][]string{}, Args: fs.Args()}
	env, flags := map[string]any{}, map[string]any{}
	for i, s := range settings {
		if v, ok := os.LookupEnv(EnvName(s.Flag)); ok {
			val := any(v)
			if s.List {
				val = splitList(v)
			}
			if s.Key == "" {
				layers.Extra[s.Flag] = append(layers.Extra[s.Flag], asList(val)...)
			} else {
				env[s.Key] = val
			}
		}
		if !raws[i].set {
			continue
		}
		val := any(raws[i].last)
		if s.List {
			val = raws[i].all
		}
		if s.Key == "" {
			layers.Extra[s.Flag] = append(layers.Extra[s.Flag], asList(val)...)
		} else {
			flags[s.Key] = val
		}
	}
	if err := load(env, "environment"); err != nil {
		return nil, err
	}
	if err := load(flags, "flags"); err != nil {
		return nil, err
	}
	dc := &mapstructure.DecoderConfig{
		TagName:          "yaml",
		Result:           out,
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		Squash:           true,
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.TextUnmarshallerHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
			zeroDurationHook,
		),
	}
	if err := k.UnmarshalWithConf("", out, koanf.UnmarshalConf{Tag: "yaml", DecoderConfig: dc}); err != nil {
		src := "settings"
		if configPath != "" {
			src = configPath
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrUsage, src, err)
	}
	return layers, nil
}

// zeroDurationHook reads a YAML integer 0 as a zero duration (the
// StringToTimeDuration hook only sees strings).
func zeroDurationHook(f, t reflect.Type, data any) (any, error) {
	if t.String() == "time.Duration" && f.Kind() == reflect.Int {
		if n, ok := data.(int); ok && n == 0 {
			return 0, nil
		}
	}
	return data, nil
}

// rawValue records a flag's raw text.
type rawValue struct {
	bool, list, set bool
	last            string
	all             []string
}

func (r *rawValue) String() string   { return r.last }
func (r *rawValue) IsBoolFlag() bool { return r.bool }
func (r *rawValue) Set(v string) error {
	r.set = true
	r.last = v
	if r.list {
		r.all = append(r.all, splitList(v)...)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func asList(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case string:
		return []string{x}
	}
	return nil
}

// mapProvider is a koanf.Provider over a nested map.
type mapProvider map[string]any

func (m mapProvider) ReadBytes() ([]byte, error) { return nil, errors.New("cli: not a byte provider") }
func (m mapProvider) Read() (map[string]any, error) {
	// Dotted keys ("timeouts.shutdown") become nested maps, as koanf
	// expects from a provider.
	out := map[string]any{}
	for k, v := range m {
		cur := out
		parts := strings.Split(k, ".")
		for _, p := range parts[:len(parts)-1] {
			next, ok := cur[p].(map[string]any)
			if !ok {
				next = map[string]any{}
				cur[p] = next
			}
			cur = next
		}
		cur[parts[len(parts)-1]] = v
	}
	return out, nil
}

// readYAMLMap reads a YAML file as a nested map; errors name the file and
// line.
func readYAMLMap(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
