package state

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Role returns the role with that name or alias, case-insensitively.
// It is safe on a nil Catalog.
func (c *Catalog) Role(name string) (*Role, bool) {
	if c == nil {
		return nil, false
	}
	for i := range c.Roles {
		r := &c.Roles[i]
		if strings.EqualFold(r.Name, name) {
			return r, true
		}
	}
	for i := range c.Roles {
		r := &c.Roles[i]
		for _, a := range r.Aliases {
			if strings.EqualFold(a, name) {
				return r, true
			}
		}
	}
	return nil, false
}

// CatalogError is a validation error located in a catalog file.
type CatalogError struct {
	File  string
	Line  int    // 0 when unknown
	Field string // "roles[2].operation"
	Msg   string
}

func (e *CatalogError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Field != "" {
		return loc + ": " + e.Field + ": " + e.Msg
	}
	return loc + ": " + e.Msg
}

// Is makes every CatalogError match ErrInvalid.
func (e *CatalogError) Is(target error) bool { return target == ErrInvalid }

// LoadCatalogFile reads and validates a role catalog YAML file.
func LoadCatalogFile(path string) (*Catalog, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCatalog(path, b)
}

// ParseCatalog parses and validates catalog YAML; name is used in errors.
//
// # Errors
// *CatalogError (errors.Is ErrInvalid) naming the file, line and field.
func ParseCatalog(name string, b []byte) (*Catalog, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, &CatalogError{File: name, Msg: err.Error()}
	}
	var c Catalog
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		msg := err.Error()
		line := 0
		// yaml.v3 says "yaml: line N: ..." or "line N: field x not found".
		if i := strings.Index(msg, "line "); i >= 0 {
			j := i + 5
			for j < len(msg) && msg[j] >= '0' && msg[j] <= '9' {
				j++
			}
			line, _ = strconv.Atoi(msg[i+5 : j])
		}
		// Keep the first problem only, without yaml's "line N:" preamble.
		if i := strings.Index(msg, "line "); i >= 0 {
			if j := strings.Index(msg[i:], ": "); j >= 0 {
				msg = msg[i+j+2:]
			}
		}
		msg, _, _ = strings.Cut(msg, "\n")
		msg = strings.Replace(msg, " in type state.Role", " (not a role setting)", 1)
		return nil, &CatalogError{File: name, Line: line, Msg: strings.TrimPrefix(msg, "yaml: ")}
	}
	c.normalize()
	if err := c.validate(); err != nil {
		var ce *CatalogError
		if errors.As(err, &ce) {
			ce.File = name
			ce.Line = lineOf(&root, ce.Field)
		}
		return nil, err
	}
	return &c, nil
}

func (c *Catalog) normalize() {
	for i := range c.Roles {
		r := &c.Roles[i]
		r.Name = strings.TrimSpace(r.Name)
		if r.Operation == "" {
			r.Operation = KindChat
		}
	}
}

// Validate checks a catalog (as PutCatalog does before storing it).
func (c *Catalog) Validate() error {
	c.normalize()
	return c.validate()
}

// Routing strategies a role may name.
var validStrategies = map[string]bool{"": true, "scored": true, "round_robin": true, "least_loaded": true}

func (c *Catalog) validate() error {
	seen := map[string]string{} // lower name/alias -> field that defined it
	for i := range c.Roles {
		r := &c.Roles[i]
		f := "roles[" + strconv.Itoa(i) + "]"
		if r.Name == "" {
			return &CatalogError{Field: f + ".name", Msg: "a role needs a name"}
		}
		if !ValidID(r.Name) {
			return &CatalogError{Field: f + ".name", Msg: "role name " + strconv.Quote(r.Name) + " may only hold letters, digits and . _ - /"}
		}
		if prev, dup := seen[strings.ToLower(r.Name)]; dup {
			return &CatalogError{Field: f + ".name", Msg: "role " + strconv.Quote(r.Name) + " is already defined at " + prev}
		}
		seen[strings.ToLower(r.Name)] = f + ".name"
		for j, a := range r.Aliases {
			af := f + ".aliases[" + strconv.Itoa(j) + "]"
			if strings.TrimSpace(a) == "" {
				return &CatalogError{Field: af, Msg: "empty alias"}
			}
			if prev, dup := seen[strings.ToLower(a)]; dup {
				return &CatalogError{Field: af, Msg: "alias " + strconv.Quote(a) + " is already used at " + prev}
			}
			seen[strings.ToLower(a)] = af
		}
		if !r.Operation.Valid() {
			return &CatalogError{Field: f + ".operation", Msg: "unknown operation " + strconv.Quote(string(r.Operation)) + " (want chat, embeddings, transcription, speech or images)"}
		}
		if !validStrategies[r.Strategy] {
			return &CatalogError{Field: f + ".strategy", Msg: "unknown strategy " + strconv.Quote(r.Strategy) + " (want scored, round_robin or least_loaded)"}
		}
		if len(r.Candidates) == 0 && len(r.PreferredFamilies) == 0 && len(r.FallbackRoles) == 0 {
			return &CatalogError{Field: f, Msg: "role " + strconv.Quote(r.Name) + " needs candidates, preferred_families or fallback_roles"}
		}
		if err := validatePolicy(r.RequestPolicy, f+".request_policy"); err != nil {
			return err
		}
	}
	for i := range c.Roles {
		r := &c.Roles[i]
		for j, fb := range r.FallbackRoles {
			if _, ok := c.Role(fb); !ok {
				return &CatalogError{Field: "roles[" + strconv.Itoa(i) + "].fallback_roles[" + strconv.Itoa(j) + "]", Msg: "unknown role " + strconv.Quote(fb)}
			}
		}
	}
	for name, p := range c.AssetPolicies {
		if err := validatePolicy(p, "asset_policies."+name); err != nil {
			return err
		}
	}
	return nil
}

func validatePolicy(p *RequestPolicy, field string) error {
	if p == nil {
		return nil
	}
	if sp := p.SystemPrompt; sp != nil {
		switch sp.Mode {
		case PromptPrepend, PromptAppend, PromptReplace:
		case "":
			sp.Mode = PromptPrepend
		default:
			return &CatalogError{Field: field + ".system_prompt.mode", Msg: "unknown mode " + strconv.Quote(sp.Mode) + " (want prepend, append or replace)"}
		}
	}
	if p.MaxTokens < 0 {
		return &CatalogError{Field: field + ".max_tokens", Msg: "must be >= 0"}
	}
	return nil
}

// lineOf finds the line of a field path like "roles[2].aliases[0]" in the
// YAML tree; 0 when not found.
func lineOf(root *yaml.Node, path string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 {
			name = part[:i]
			idx, _ = strconv.Atoi(strings.TrimSuffix(part[i+1:], "]"))
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for k := 0; k+1 < len(n.Content); k += 2 {
			if n.Content[k].Value == name {
				line = n.Content[k].Line
				next = n.Content[k+1]
				break
			}
		}
		if next == nil {
			return line
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}
