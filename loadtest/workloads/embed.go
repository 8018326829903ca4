// Package workloads holds the built-in benchmark workloads as YAML data
// (one file per workload). Operators add their own with the same format
// (see loadtest.Workload) and --workload-file.
package workloads

import "embed"

// FS holds every *.yaml file of this directory.
//
//go:embed *.yaml
var FS embed.FS
