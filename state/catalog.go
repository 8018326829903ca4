package state

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/geniehive/geniehive/fleet"
	"gopkg.in/yaml.v3"
)

// LoadCatalogFile reads and validates a role catalog YAML file.
func LoadCatalogFile(path string) (*fleet.Catalog, error) {
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
func ParseCatalog(name string, b []byte) (*fleet.Catalog, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, &fleet.CatalogError{File: name, Msg: err.Error()}
	}
	var c fleet.Catalog
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
		msg = strings.Replace(msg, " in type fleet.Role", " (not a role setting)", 1)
		return nil, &fleet.CatalogError{File: name, Line: line, Msg: strings.TrimPrefix(msg, "yaml: ")}
	}
	if err := c.Validate(); err != nil {
		var ce *fleet.CatalogError
		if errors.As(err, &ce) {
			ce.File = name
			ce.Line = lineOf(&root, ce.Field)
		}
		return nil, err
	}
	return &c, nil
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
