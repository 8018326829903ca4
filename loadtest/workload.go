package loadtest

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/geniehive/geniehive/loadtest/workloads"
)

// Workload is a benchmark workload: prompts with rules that score each
// answer. Workloads are YAML data; the built-in ones live in
// loadtest/workloads and operators add their own in the same format.
type Workload struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description,omitempty"`
	// Kind is the API: only "chat" for now.
	Kind string `yaml:"kind" json:"kind"`
	// System is sent as the system message of every sample (optional).
	System      string   `yaml:"system" json:"system,omitempty"`
	MaxTokens   int      `yaml:"max_tokens" json:"max_tokens,omitempty"`
	Temperature *float64 `yaml:"temperature" json:"temperature,omitempty"`
	Samples     []Sample `yaml:"samples" json:"samples"`
}

// Sample is one prompt and how its answer is scored.
type Sample struct {
	ID     string `yaml:"id" json:"id"`
	Prompt string `yaml:"prompt" json:"prompt"`
	// System overrides the workload's system message.
	System string `yaml:"system" json:"system,omitempty"`
	Expect Expect `yaml:"expect" json:"expect"`
}

// Expect holds the scoring rules of a sample; every rule set is one check
// and the sample's quality is the fraction of checks that pass. Text
// comparisons ignore case; a <think>…</think> block is removed first.
type Expect struct {
	// Exact: the normalized answer (trimmed, lower-cased, spaces
	// collapsed, surrounding quotes/backticks and a trailing period
	// removed) equals this, normalized the same way.
	Exact string `yaml:"exact" json:"exact,omitempty"`
	// Contains: the answer includes every one of these.
	Contains []string `yaml:"contains" json:"contains,omitempty"`
	// ContainsAny: the answer includes at least one of these.
	ContainsAny []string `yaml:"contains_any" json:"contains_any,omitempty"`
	// NotContains: the answer includes none of these.
	NotContains []string `yaml:"not_contains" json:"not_contains,omitempty"`
	// Regex: a Go regular expression that must match (case-sensitive
	// unless it says (?i)).
	Regex string `yaml:"regex" json:"regex,omitempty"`
	// MaxWords / MinWords bound the word count (0: no bound).
	MaxWords int `yaml:"max_words" json:"max_words,omitempty"`
	MinWords int `yaml:"min_words" json:"min_words,omitempty"`
	// Bullets: exactly this many bullet lines ("- ", "* ", "• ", "1. ",
	// "2) "). Nil: no rule.
	Bullets *int `yaml:"bullets" json:"bullets,omitempty"`
	// MaxBullets: at most this many bullet lines. Nil: no rule.
	MaxBullets *int `yaml:"max_bullets" json:"max_bullets,omitempty"`
	// MaxLines: at most this many non-empty lines (0: no bound).
	MaxLines int `yaml:"max_lines" json:"max_lines,omitempty"`

	re *regexp.Regexp
}

// Check is the outcome of one rule on one answer.
type Check struct {
	Rule   string `json:"rule"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail,omitempty"`
}

// ParseWorkload decodes and validates a workload (strictly: unknown fields
// are errors). name is used in messages.
//
// # Errors
// YAML errors (with line), and rule errors naming the sample.
func ParseWorkload(name string, b []byte) (*Workload, error) {
	var w Workload
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := w.validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &w, nil
}

func (w *Workload) validate() error {
	if w.Name == "" {
		return errors.New("workload has no name")
	}
	switch w.Kind {
	case "":
		w.Kind = "chat"
	case "chat":
	default:
		return fmt.Errorf("workload %s: kind %q: only chat is supported", w.Name, w.Kind)
	}
	if len(w.Samples) == 0 {
		return fmt.Errorf("workload %s has no samples", w.Name)
	}
	if w.MaxTokens <= 0 {
		w.MaxTokens = 256
	}
	seen := map[string]bool{}
	for i := range w.Samples {
		s := &w.Samples[i]
		if s.ID == "" {
			s.ID = fmt.Sprintf("s%d", i+1)
		}
		if seen[s.ID] {
			return fmt.Errorf("workload %s: sample id %q used twice", w.Name, s.ID)
		}
		seen[s.ID] = true
		if strings.TrimSpace(s.Prompt) == "" {
			return fmt.Errorf("workload %s: sample %s has no prompt", w.Name, s.ID)
		}
		e := &s.Expect
		if e.Regex != "" {
			re, err := regexp.Compile(e.Regex)
			if err != nil {
				return fmt.Errorf("workload %s: sample %s: regex: %w", w.Name, s.ID, err)
			}
			e.re = re
		}
		if e.MaxWords < 0 || e.MinWords < 0 || e.MaxLines < 0 || (e.Bullets != nil && *e.Bullets < 0) || (e.MaxBullets != nil && *e.MaxBullets < 0) {
			return fmt.Errorf("workload %s: sample %s: negative bound", w.Name, s.ID)
		}
		if e.MaxWords > 0 && e.MinWords > e.MaxWords {
			return fmt.Errorf("workload %s: sample %s: min_words > max_words", w.Name, s.ID)
		}
		if len(e.rules()) == 0 {
			return fmt.Errorf("workload %s: sample %s has no expect rule", w.Name, s.ID)
		}
	}
	return nil
}

// BuiltinWorkloads returns the embedded workloads by name.
func BuiltinWorkloads() (map[string]*Workload, error) {
	out := map[string]*Workload{}
	files, err := fs.Glob(workloads.FS, "*.yaml")
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		b, err := workloads.FS.ReadFile(f)
		if err != nil {
			return nil, err
		}
		w, err := ParseWorkload(f, b)
		if err != nil {
			return nil, err
		}
		out[w.Name] = w
	}
	return out, nil
}

// LoadWorkload returns the workload called name: from file when given
// (its name must then match, or name may be empty), else a built-in one.
//
// # Errors
// An unreadable or invalid file, or an unknown name (the message lists the
// built-in workloads).
func LoadWorkload(name, file string) (*Workload, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		w, err := ParseWorkload(file, b)
		if err != nil {
			return nil, err
		}
		if name != "" && w.Name != name {
			return nil, fmt.Errorf("%s defines workload %q, not %q", file, w.Name, name)
		}
		return w, nil
	}
	all, err := BuiltinWorkloads()
	if err != nil {
		return nil, err
	}
	if w, ok := all[name]; ok {
		return w, nil
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("unknown workload %q (built in: %s; or give --workload-file)", name, strings.Join(names, ", "))
}

type rule struct {
	name string
	fn   func(text string) (bool, string)
}

func (e *Expect) rules() []rule {
	var rs []rule
	lower := strings.ToLower
	if e.Exact != "" {
		want := normalizeAnswer(e.Exact)
		rs = append(rs, rule{"exact", func(t string) (bool, string) {
			got := normalizeAnswer(t)
			if got == want {
				return true, ""
			}
			return false, fmt.Sprintf("got %q, want %q", clip(got, 60), want)
		}})
	}
	for _, c := range e.Contains {
		c := c
		rs = append(rs, rule{"contains " + strconvQuote(c), func(t string) (bool, string) {
			return strings.Contains(lower(t), lower(c)), ""
		}})
	}
	if len(e.ContainsAny) > 0 {
		rs = append(rs, rule{"contains_any", func(t string) (bool, string) {
			for _, c := range e.ContainsAny {
				if strings.Contains(lower(t), lower(c)) {
					return true, ""
				}
			}
			return false, "none of " + strings.Join(e.ContainsAny, ", ")
		}})
	}
	for _, c := range e.NotContains {
		c := c
		rs = append(rs, rule{"not_contains " + strconvQuote(c), func(t string) (bool, string) {
			return !strings.Contains(lower(t), lower(c)), ""
		}})
	}
	if e.Regex != "" {
		rs = append(rs, rule{"regex", func(t string) (bool, string) {
			re := e.re
			if re == nil {
				re = regexp.MustCompile(e.Regex)
			}
			return re.MatchString(strings.TrimSpace(t)), ""
		}})
	}
	if e.MaxWords > 0 {
		rs = append(rs, rule{fmt.Sprintf("max_words %d", e.MaxWords), func(t string) (bool, string) {
			n := WordCount(t)
			return n <= e.MaxWords, fmt.Sprintf("%d words", n)
		}})
	}
	if e.MinWords > 0 {
		rs = append(rs, rule{fmt.Sprintf("min_words %d", e.MinWords), func(t string) (bool, string) {
			n := WordCount(t)
			return n >= e.MinWords, fmt.Sprintf("%d words", n)
		}})
	}
	if e.Bullets != nil {
		want := *e.Bullets
		rs = append(rs, rule{fmt.Sprintf("bullets %d", want), func(t string) (bool, string) {
			n := BulletCount(t)
			return n == want, fmt.Sprintf("%d bullets", n)
		}})
	}
	if e.MaxBullets != nil {
		want := *e.MaxBullets
		rs = append(rs, rule{fmt.Sprintf("max_bullets %d", want), func(t string) (bool, string) {
			n := BulletCount(t)
			return n <= want, fmt.Sprintf("%d bullets", n)
		}})
	}
	if e.MaxLines > 0 {
		rs = append(rs, rule{fmt.Sprintf("max_lines %d", e.MaxLines), func(t string) (bool, string) {
			n := len(nonEmptyLines(t))
			return n <= e.MaxLines, fmt.Sprintf("%d lines", n)
		}})
	}
	return rs
}

// Score applies the sample's rules to an answer and returns the fraction
// that pass (0..1) with each check.
func (s *Sample) Score(answer string) (float64, []Check) {
	text := StripThinking(answer)
	rs := s.Expect.rules()
	checks := make([]Check, 0, len(rs))
	pass := 0
	for _, r := range rs {
		ok, detail := r.fn(text)
		if ok {
			pass++
			detail = ""
		}
		checks = append(checks, Check{Rule: r.name, Pass: ok, Detail: detail})
	}
	if len(rs) == 0 {
		return 0, nil
	}
	return float64(pass) / float64(len(rs)), checks
}

var thinkRE = regexp.MustCompile(`(?s)<think>.*?</think>`)

// StripThinking removes <think>…</think> blocks (and an unterminated
// leading one) from a model's answer.
func StripThinking(s string) string {
	s = thinkRE.ReplaceAllString(s, "")
	if i := strings.Index(s, "<think>"); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func normalizeAnswer(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.Join(strings.Fields(s), " ")
	for {
		t := strings.TrimSpace(strings.Trim(s, "\"'`*"))
		t = strings.TrimSuffix(t, ".")
		if t == s {
			return s
		}
		s = t
	}
}

// WordCount counts whitespace-separated words that contain a letter or
// digit (bullet markers and dashes do not count).
func WordCount(s string) int {
	n := 0
	for _, f := range strings.Fields(s) {
		if strings.IndexFunc(f, func(r rune) bool { return unicode.IsLetter(r) || unicode.IsDigit(r) }) >= 0 {
			n++
		}
	}
	return n
}

var bulletRE = regexp.MustCompile(`^\s*([-*•+]|\d{1,2}[.)])\s+\S`)

// BulletCount counts lines that start with a bullet or list number.
func BulletCount(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if bulletRE.MatchString(l) {
			n++
		}
	}
	return n
}

func nonEmptyLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func strconvQuote(s string) string { return `"` + s + `"` }
