// Package cli is the small command framework behind the geniehive binary:
// subcommands register themselves, and each command's settings come, in
// increasing precedence, from defaults, a YAML config file (--config), a
// GENIEHIVE_* environment variable, and a flag.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Command is one geniehive subcommand.
type Command struct {
	Name    string
	Summary string // one line for `geniehive --help`
	// Usage is printed above the flag list by --help.
	Usage string
	// Run executes the command with its arguments (after the name).
	Run func(args []string) error
}

var commands = map[string]*Command{}

// Register adds a command; called from init functions.
func Register(c *Command) {
	if _, dup := commands[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// Lookup returns the named command.
func Lookup(name string) (*Command, bool) { c, ok := commands[name]; return c, ok }

// Commands returns every command, sorted by name.
func Commands() []*Command {
	out := make([]*Command, 0, len(commands))
	for _, c := range commands {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ErrUsage marks an error caused by bad arguments (exit status 2).
var ErrUsage = errors.New("usage error")

// UsageError is a usage error of one command path ("node acl", "loadtest
// fleet"): main names that command and its own --help, not its group's
// (an unknown subcommand is its group's error). errors.Is(err, ErrUsage)
// holds for it.
type UsageError struct {
	Path string // the command after "geniehive": "node", "node acl"
	Err  error  // what was wrong
}

func (e *UsageError) Error() string {
	return e.Err.Error() + " (see 'geniehive " + e.Path + " --help')"
}

func (e *UsageError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUsage) true.
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// Usagef is a UsageError of path with a formatted message (%w wraps).
func Usagef(path, format string, args ...any) error {
	return &UsageError{Path: path, Err: fmt.Errorf(format, args...)}
}

// UnknownSubcommand is the error of command group given sub, which it
// does not have; want lists what it has.
func UnknownSubcommand(group, sub, want string) error {
	return Usagef(group, "unknown subcommand %q (want %s)", sub, want)
}

// NoArgs is nil when args is empty, else the usage error of path, a
// command that takes flags only.
func NoArgs(path string, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if len(args) == 1 && !strings.HasPrefix(args[0], "-") {
		return Usagef(path, "unexpected argument %q: it has no subcommands and takes flags only", args[0])
	}
	return Usagef(path, "unexpected arguments %q: it takes flags only", args)
}

// EnvName is the environment variable that sets a flag: GENIEHIVE_ plus the
// flag name upper-cased with '-' and '.' turned into '_'
// (--redis-url -> GENIEHIVE_REDIS_URL).
func EnvName(flagName string) string {
	r := strings.NewReplacer("-", "_", ".", "_")
	return "GENIEHIVE_" + strings.ToUpper(r.Replace(flagName))
}

// NewFlagSet returns a flag set whose --help output names the env variable
// of every flag and prints usage first.
func NewFlagSet(cmd *Command) *flag.FlagSet {
	fs := flag.NewFlagSet("geniehive "+cmd.Name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: geniehive %s\n\n", cmd.Usage)
		fmt.Fprintf(w, "Flags (each also settable as the environment variable shown, or in the YAML config):\n")
		fs.VisitAll(func(f *flag.Flag) { writeFlagHelp(w, f) })
	}
	return fs
}

// writeFlagHelp prints one flag of the --help list: its name (with the
// help's `placeholder`, backticks dropped, as the flag package does), its
// environment variable, its help and its default, unless the default is a
// zero value or the help already says what the default is.
func writeFlagHelp(w io.Writer, f *flag.Flag) {
	name, usage := "", f.Usage
	if strings.Contains(f.Usage, "`") {
		name, usage = flag.UnquoteUsage(f)
		name = " " + name
	}
	def := ""
	switch f.DefValue {
	case "", "0", "0s", "false", "[]":
	default:
		if !strings.Contains(strings.ToLower(usage), "default") {
			def = " (default " + f.DefValue + ")"
		}
	}
	fmt.Fprintf(w, "  --%s%s  [%s]\n      %s%s\n", f.Name, name, EnvName(f.Name), usage, def)
}

// flagError is a bad flag or value as a usage error that names the help
// of the command it belongs to ("geniehive loadtest fleet", not only
// "loadtest").
func flagError(fs *flag.FlagSet, err error) error {
	return &UsageError{Path: strings.TrimPrefix(fs.Name(), "geniehive "), Err: err}
}

// parseFlags is fs.Parse that prints the help for --help only: on a bad
// flag or value the flag package would print the error and then the whole
// flag list, burying the error; the caller's error (main prints it with
// "Run 'geniehive CMD --help' for usage.") is enough.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if errors.Is(err, flag.ErrHelp) && usage != nil {
		usage()
	}
	return err
}

// Parse layers a command's settings into the fields its flags are bound
// to: the flags' defaults, then the YAML config file (configPath, or
// GENIEHIVE_CONFIG; decoded strictly into cfg: unknown fields are errors),
// then GENIEHIVE_* variables, then the command-line flags. Each flag's
// value is applied once, from the text given (the command line is read
// first by a recording copy of the flag set only to find --config and which
// flags are set), so nothing is re-applied through flag.Value.String.
// Edge and dev use Load (koanf) instead; the other commands bind flags to
// struct fields and use Parse.
//
// configPath may be nil for commands without a config file.
//
// # Errors
// flag.ErrHelp for --help; ErrUsage-wrapped errors for bad flags, bad
// environment values, and an unreadable or invalid config file (the message
// names the file and line).
func Parse(fs *flag.FlagSet, args []string, configPath *string, cfg any) error {
	args = flagsFirst(fs, args)
	shadow := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	shadow.SetOutput(io.Discard)
	fs.VisitAll(func(f *flag.Flag) {
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		shadow.Var(&rawValue{bool: ok && b.IsBoolFlag()}, f.Name, "")
	})
	if err := shadow.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return err
		}
		return flagError(fs, err)
	}
	explicit := map[string]bool{}
	shadow.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if configPath != nil {
		switch {
		case explicit["config"]:
			*configPath = shadow.Lookup("config").Value.(*rawValue).last
		default:
			if v, ok := os.LookupEnv(EnvName("config")); ok {
				*configPath = v
			}
		}
		if *configPath != "" {
			if err := LoadYAML(*configPath, cfg); err != nil {
				return fmt.Errorf("%w: %w", ErrUsage, err)
			}
		}
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if explicit[f.Name] || f.Name == "config" {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%w: %s=%q: %w", ErrUsage, EnvName(f.Name), v, err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	// List flags replace what the file and environment gave.
	for name := range explicit {
		if r, ok := fs.Lookup(name).Value.(interface{ Reset() }); ok {
			r.Reset()
		}
	}
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return flagError(fs, err)
	}
	return nil
}

// flagsFirst moves flags (and their values) before positional arguments, so
// that "roles load FILE --redis-url X" works like "roles load --redis-url X
// FILE". Everything after a "--" stays positional.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	if len(pos) == 0 {
		return flags
	}
	return append(append(flags, "--"), pos...)
}

// LoadYAML decodes a YAML file strictly into v; errors name the file.
func LoadYAML(path string, v any) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// StringList is a flag.Value for repeated or comma-separated strings.
type StringList []string

func (s *StringList) String() string { return strings.Join(*s, ",") }

// Reset empties the list.
func (s *StringList) Reset() { *s = nil }

// Set appends comma-separated values.
func (s *StringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
