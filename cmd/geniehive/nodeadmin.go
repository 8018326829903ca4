package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/geniehive/geniehive/internal/cli"
	"github.com/geniehive/geniehive/state"
)

// Operator subcommands of `geniehive node`: the per-node endpoint
// allowlist edges check node states against, and the Redis ACL user that
// confines a node agent to its own keys.
const nodeAdminUsage = `node allow HOST ENTRY... | node allow HOST --clear | node allow --list
node acl HOST [--secret S] [--apply]

allow: sets the endpoints node HOST may advertise (replacing its list):
CIDRs (10.0.0.0/24), IP addresses, host names (gpu-a.lan) or *.suffix
patterns; host names are matched by name, never resolved. HOST "*" applies
to every node without an entry of its own. Once any entry exists, a node
without one is refused by every edge (fail closed); with none at all, edges
route any endpoint that passes the structural checks and log a warning.
Stored in Redis under <prefix>nodes:allow, which node ACLs cannot write.

acl: prints the ACL SETUSER command for node HOST (user node-HOST, a
random secret unless --secret), exactly the rule in the README; --apply
runs it through this command's Redis connection (every shard of a cluster).`

func runNodeAdmin(sub string, args []string) error {
	fs := cli.NewFlagSet(&cli.Command{Name: "node " + sub, Usage: nodeAdminUsage})
	var rf redisFlags
	rf.bind(fs)
	list := fs.Bool("list", false, "allow: print every node's allowlist")
	clearList := fs.Bool("clear", false, "allow: remove HOST's allowlist entry")
	secret := fs.String("secret", "", "acl: the node user's password (default: 24 random bytes, hex)")
	apply := fs.Bool("apply", false, "acl: run the command through this Redis connection instead of only printing it")
	if err := cli.Parse(fs, args, nil, nil); err != nil {
		return err
	}
	switch sub {
	case "allow":
		if err := nodeAllowArgs(fs.Args(), *list, *clearList); err != nil {
			return err // before connecting: a usage error needs no Redis
		}
	case "acl":
		if fs.NArg() != 1 {
			return cli.Usagef("node acl", "want one HOST")
		}
	default:
		return cli.UnknownSubcommand("node", sub, "allow or acl")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch sub {
	case "allow":
		s, done, err := rf.store(ctx)
		if err != nil {
			return err
		}
		defer done()
		return nodeAllow(ctx, os.Stdout, s, fs.Args(), *list, *clearList)
	case "acl":
		return nodeACL(ctx, os.Stdout, &rf, fs.Arg(0), *secret, *apply)
	}
	return cli.UnknownSubcommand("node", sub, "allow or acl")
}

// nodeAllowArgs checks node allow's arguments.
func nodeAllowArgs(args []string, list, clearList bool) error {
	switch {
	case list && len(args) != 0:
		return cli.Usagef("node allow", "--list takes no arguments")
	case list:
		return nil
	case len(args) == 0:
		return cli.Usagef("node allow", "want HOST ENTRY..., HOST --clear, or --list")
	case clearList && len(args) != 1:
		return cli.Usagef("node allow", "HOST --clear takes no entries")
	case !clearList && len(args) < 2:
		return cli.Usagef("node allow", "%s needs at least one CIDR, address or host name (or --clear)", args[0])
	}
	return nil
}

func nodeAllow(ctx context.Context, w io.Writer, s *state.Store, args []string, list, clearList bool) error {
	if err := nodeAllowArgs(args, list, clearList); err != nil {
		return err
	}
	if list {
		m, err := s.NodeAllowlists(ctx)
		if err != nil {
			return err
		}
		if len(m) == 0 {
			fmt.Fprintln(w, "no node allowlist: edges route any endpoint a node advertises (geniehive node allow HOST CIDR...)")
			return nil
		}
		hosts := make([]string, 0, len(m))
		for h := range m {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		for _, h := range hosts {
			fmt.Fprintf(w, "%s\t%s\n", h, strings.Join(m[h], " "))
		}
		return nil
	}
	if err := s.PutNodeAllow(ctx, args[0], args[1:]); err != nil {
		return err
	}
	if clearList {
		fmt.Fprintf(w, "allowlist of %s removed\n", args[0])
	} else {
		fmt.Fprintf(w, "%s may advertise endpoints on: %s\n", args[0], strings.Join(args[1:], " "))
	}
	return nil
}

func nodeACL(ctx context.Context, w io.Writer, rf *redisFlags, host, secret string, apply bool) error {
	if secret == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		secret = hex.EncodeToString(b)
	}
	acl, err := state.NodeACL(rf.Prefix, host, secret)
	if err != nil {
		return cli.Usagef("node acl", "%w", err)
	}
	if apply {
		s, done, err := rf.store(ctx)
		if err != nil {
			return err
		}
		defer done()
		if err := s.ApplyACL(ctx, acl); err != nil {
			return fmt.Errorf("applying the ACL: %w", err)
		}
		fmt.Fprintf(os.Stderr, "applied: user node-%s; give the node redis_username node-%s and this password (shown once):\n", host, host)
		fmt.Fprintln(w, secret)
		return nil
	}
	fmt.Fprintln(w, strings.Join(acl, " "))
	return nil
}
