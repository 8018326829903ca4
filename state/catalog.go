package state

import "strings"

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
