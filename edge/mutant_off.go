//go:build !mutants

package edge

// mutant is always "" in a normal build (see mutant.go, build tag mutants).
const mutant = ""
