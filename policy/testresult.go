package policy

import (
	"fmt"
	"strings"
	"time"
)

// TestResult is the outcome of one Rego test rule.
type TestResult struct {
	Package  string        `json:"package"`
	Name     string        `json:"name"`
	File     string        `json:"file"`
	Row      int           `json:"row"`
	Pass     bool          `json:"pass"`
	Skip     bool          `json:"skip,omitempty"`
	Error    string        `json:"error,omitempty"`
	Output   string        `json:"output,omitempty"` // print() output
	Duration time.Duration `json:"duration"`
}

// String renders the result like `opa test -v`.
func (r TestResult) String() string {
	s := r.Package + "." + r.Name
	switch {
	case r.Skip:
		return s + ": SKIPPED"
	case r.Pass:
		return s + ": PASS (" + r.Duration.Round(time.Microsecond).String() + ")"
	case r.Error != "":
		return s + ": ERROR\n  " + r.Error
	default:
		return s + ": FAIL (" + r.Duration.Round(time.Microsecond).String() + ")"
	}
}

// Failed counts the results that did not pass (skips excluded).
func Failed(rs []TestResult) int {
	n := 0
	for _, r := range rs {
		if !r.Pass && !r.Skip {
			n++
		}
	}
	return n
}

// TestFailedError reports a bundle whose Rego tests fail.
type TestFailedError struct {
	Failed  int
	Results []TestResult
}

func (e *TestFailedError) Error() string {
	var names []string
	for _, r := range e.Results {
		if !r.Pass && !r.Skip {
			names = append(names, r.Package+"."+r.Name)
		}
	}
	return fmt.Sprintf("policies: %d Rego test(s) failed: %s", e.Failed, strings.Join(names, ", "))
}
