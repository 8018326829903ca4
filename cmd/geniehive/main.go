// Command geniehive is GenieHive's one binary: the edge, the node agent, the
// all-in-one dev stack, and the operator tools.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/geniehive/geniehive/internal/cli"
)

const usage = `GenieHive: one OpenAI-compatible endpoint for a fleet of self-hosted LLM hosts.

Usage: geniehive <command> [flags]

Commands:
`

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			return run([]string{args[1], "--help"})
		}
		if len(args) == 0 {
			printUsage(os.Stderr)
			return 2
		}
		printUsage(os.Stdout)
		return 0
	}
	cmd, ok := cli.Lookup(args[0])
	if !ok {
		fmt.Fprintf(os.Stderr, "geniehive: unknown command %q\n\n", args[0])
		printUsage(os.Stderr)
		return 2
	}
	err := cmd.Run(args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, cli.ErrUsage):
		var ue *cli.UsageError
		if errors.As(err, &ue) && err == error(ue) {
			// The exact command (a subcommand's own, not its group's).
			fmt.Fprintf(os.Stderr, "geniehive %s: %v\nRun 'geniehive %s --help' for usage.\n", ue.Path, ue.Err, ue.Path)
		} else if ue != nil {
			fmt.Fprintf(os.Stderr, "geniehive %s: %s\n", ue.Path, err) // it names the help already
		} else if msg := err.Error(); strings.Contains(msg, "--help") {
			fmt.Fprintf(os.Stderr, "geniehive %s: %s\n", cmd.Name, msg) // it names the help already
		} else {
			fmt.Fprintf(os.Stderr, "geniehive %s: %s\nRun 'geniehive %s --help' for usage.\n", cmd.Name, msg, cmd.Name)
		}
		return 2
	default:
		fmt.Fprintf(os.Stderr, "geniehive %s: %v\n", cmd.Name, err)
		return 1
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	for _, c := range cli.Commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprint(w, "\nRun 'geniehive <command> --help' for a command's flags.\nSettings come from flags, GENIEHIVE_* environment variables, or a YAML file (--config).\n")
}

// subFlags names fs, a command group's flag set, after its subcommand path
// ("roles load"), so that its flag errors point at that command's --help.
func subFlags(fs *flag.FlagSet, path string) *flag.FlagSet {
	fs.Init("geniehive "+path, flag.ContinueOnError)
	return fs
}
