package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/geniehive/geniehive/fleet"
	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/state"
)

// redisFlags are the connection settings shared by the operator commands.
type redisFlags struct {
	URL      string `yaml:"redis_url"`
	Username string `yaml:"redis_username"`
	Password string `yaml:"redis_password"`
	Prefix   string `yaml:"prefix"`
}

func (r *redisFlags) bind(fs *flag.FlagSet) {
	fs.StringVar(&r.URL, "redis-url", "redis://127.0.0.1:6379/0", "Redis URL: redis://, rediss://, redis+sentinel://s1:p?master_name=NAME&addr=s2:p, redis+cluster://h1:p?addr=h2:p (rediss+ for TLS)")
	fs.StringVar(&r.Username, "redis-username", "", "Redis ACL user (overrides the URL's)")
	fs.StringVar(&r.Password, "redis-password", "", "Redis password (overrides the URL's; prefer the environment variable)")
	fs.StringVar(&r.Prefix, "prefix", state.DefaultPrefix, "prefix of every Redis key and channel")
}

func (r *redisFlags) store(ctx context.Context) (*state.Store, func(), error) {
	c, err := state.Connect(ctx, state.Options{URL: r.URL, Username: r.Username, Password: r.Password})
	if err != nil {
		return nil, nil, err
	}
	return state.New(c, r.Prefix), func() { c.Close() }, nil
}

func init() {
	cli.Register(&cli.Command{
		Name:    "roles",
		Summary: "load the role catalog into Redis, or show it",
		Usage:   "roles load FILE | roles show [--json] | roles check FILE",
		Run:     runRoles,
	})
	cli.Register(&cli.Command{
		Name:    "keys",
		Summary: "manage API keys stored in Redis (add prints the secret once)",
		Usage:   "keys add ID [--scope client|reader|operator] [--roles a,b] | keys init ID [--scope ...] (only when no key was ever stored) | keys list | keys delete ID [--force]",
		Run:     runKeys,
	})
}

func runRoles(args []string) error {
	cmd, _ := cli.Lookup("roles")
	fs := cli.NewFlagSet(cmd)
	var rf redisFlags
	rf.bind(fs)
	asJSON := fs.Bool("json", false, "show: print JSON instead of a table")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := cli.Parse(fs, args, nil, nil); err != nil {
			return err // --help, or a bad flag
		}
		return cli.Usagef("roles", "want a subcommand: load, show or check")
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "load", "show", "check":
	default:
		return cli.UnknownSubcommand("roles", sub, "load, show or check")
	}
	if err := cli.Parse(subFlags(fs, "roles "+sub), rest, nil, nil); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch sub {
	case "check", "load":
		if fs.NArg() != 1 {
			return cli.Usagef("roles "+sub, "want one FILE")
		}
		cat, err := state.LoadCatalogFile(fs.Arg(0))
		if err != nil {
			return err
		}
		if sub == "check" {
			fmt.Printf("%s: %d roles, %d asset policies: OK\n", fs.Arg(0), len(cat.Roles), len(cat.AssetPolicies))
			return nil
		}
		s, done, err := rf.store(ctx)
		if err != nil {
			return err
		}
		defer done()
		if err := s.PutCatalog(ctx, cat); err != nil {
			return err
		}
		fmt.Printf("loaded %d roles from %s (catalog version %s)\n", len(cat.Roles), fs.Arg(0), cat.Version)
		return nil
	case "show":
		s, done, err := rf.store(ctx)
		if err != nil {
			return err
		}
		defer done()
		cat, err := s.GetCatalog(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			enc := json.NewEncoder(os.Stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(cat)
		}
		if len(cat.Roles) == 0 {
			fmt.Println("no role catalog loaded (geniehive roles load FILE)")
			return nil
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "ROLE\tOPERATION\tALIASES\tCANDIDATES\tFAMILIES\tFALLBACK\tSTRATEGY\n")
		for _, r := range cat.Roles {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Operation, join(r.Aliases), join(r.Candidates),
				join(r.PreferredFamilies), join(r.FallbackRoles), or(r.Strategy, "default"))
		}
		tw.Flush()
		fmt.Printf("catalog version %s\n", cat.Version)
		return nil
	}
	return cli.UnknownSubcommand("roles", sub, "load, show or check")
}

func runKeys(args []string) error {
	cmd, _ := cli.Lookup("keys")
	fs := cli.NewFlagSet(cmd)
	var rf redisFlags
	rf.bind(fs)
	scope := fs.String("scope", "client", "add: client (OpenAI API), reader (+ GET /v1/cluster), operator (+ cluster changes)")
	var roles cli.StringList
	fs.Var(&roles, "roles", "add: roles the key may use (comma-separated; empty = all)")
	force := fs.Bool("force", false, "delete: remove the key even when it is the last valid one stored")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if err := cli.Parse(fs, args, nil, nil); err != nil {
			return err // --help, or a bad flag
		}
		return cli.Usagef("keys", "want a subcommand: add, init, list or delete")
	}
	sub, rest := args[0], args[1:]
	if err := cli.Parse(subFlags(fs, "keys "+sub), rest, nil, nil); err != nil {
		return err
	}
	// Usage errors before connecting: they need no Redis.
	switch sub {
	case "add", "init", "delete":
		if fs.NArg() != 1 {
			return cli.Usagef("keys "+sub, "want one ID")
		}
	case "list":
		if err := cli.NoArgs("keys list", fs.Args()); err != nil {
			return err
		}
	default:
		return cli.UnknownSubcommand("keys", sub, "add, init, list or delete")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, done, err := rf.store(ctx)
	if err != nil {
		return err
	}
	defer done()
	switch sub {
	case "add", "init":
		if sub == "init" {
			// First start of a deployment (compose's one-shot "keys"
			// service): a key only where none was ever stored, so a
			// restart prints nothing and changes nothing.
			kr, err := s.ReadKeyring(ctx)
			if err != nil && !errors.Is(err, state.ErrCorrupt) {
				return err
			}
			if kr.AuthOn || len(kr.Keys) > 0 || err != nil {
				fmt.Fprintln(os.Stderr, "keys init: keys were stored before; nothing created, nothing printed")
				return nil
			}
		}
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		secret := "gh-" + hex.EncodeToString(b)
		k := fleet.APIKey{ID: fs.Arg(0), Hash: fleet.HashKeyHex(secret), Scope: fleet.Scope(*scope), Roles: roles}
		if err := s.PutKey(ctx, k); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "key %s (%s) stored; the secret is shown once:\n", k.ID, k.Scope)
		fmt.Println(secret)
		return nil
	case "list":
		keys, err := s.ListKeys(ctx)
		if err != nil && !errors.Is(err, state.ErrCorrupt) {
			return err
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "ID\tSCOPE\tROLES\tSHA256\n")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s…\n", k.ID, k.Scope, or(join(k.Roles), "all"), k.Hash[:12])
		}
		if ferr := tw.Flush(); ferr != nil {
			return ferr
		}
		return err // unparsable entries: edges authenticate nobody with them
	case "delete":
		return deleteKey(ctx, s, fs.Arg(0), *force)
	}
	return cli.UnknownSubcommand("keys", sub, "add, init, list or delete")
}

// deleteKey removes a stored key, refusing (without force) to remove the
// last valid one: edges that once saw a key treat an empty keyring as
// "nobody may pass", so deleting the last key locks every client out (and
// edges from before that rule turned auth off). A key that is not stored
// is an error, so a typo does not pass for a deletion.
func deleteKey(ctx context.Context, s *state.Store, id string, force bool) error {
	keys, err := s.ListKeys(ctx)
	var kerr *state.KeyringError
	if err != nil && !errors.As(err, &kerr) {
		return err
	}
	found := false
	for _, k := range keys {
		found = found || k.ID == id
	}
	if !found && kerr != nil && slices.Contains(kerr.BadIDs, id) {
		// An unparsable entry authenticates nobody: removing it is always safe.
		if err := s.DeleteKey(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "unparsable key entry %s deleted\n", id)
		return nil
	}
	if !found {
		return fmt.Errorf("no valid key %q is stored (geniehive keys list)", id)
	}
	if len(keys) == 1 && !force {
		return fmt.Errorf("%q is the last key stored in Redis: deleting it leaves no stored key "+
			"(clients authenticate with none, and an edge with auth on refuses everyone); "+
			"add another key first, or repeat with --force", id)
	}
	if err := s.DeleteKey(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "key %s deleted\n", id)
	return nil
}

func join(s []string) string { return or(strings.Join(s, ","), "-") }

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
