//go:build wasip1 && !stdjson

package main

// A narrow hand parser: it reads the few fields the policy needs and skips
// everything else without building values. In a Go guest this costs well
// under a microsecond per request, where encoding/json costs tens.

type scanner struct {
	b   []byte
	i   int
	bad bool
}

func (s *scanner) ws() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\n' || s.b[s.i] == '\t' || s.b[s.i] == '\r') {
		s.i++
	}
}

func (s *scanner) next() byte {
	s.ws()
	if s.i >= len(s.b) {
		s.bad = true
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) eat(c byte) bool {
	if s.next() == c {
		s.i++
		return true
	}
	return false
}

// str reads a string; simple escapes are decoded, \u escapes kept verbatim
// (the fields this policy reads are model names).
func (s *scanner) str() string {
	if !s.eat('"') {
		s.bad = true
		return ""
	}
	start := s.i
	esc := false
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '\\' {
			esc = true
			s.i += 2
			continue
		}
		if c == '"' {
			raw := s.b[start:s.i]
			s.i++
			if !esc {
				return string(raw)
			}
			out := make([]byte, 0, len(raw))
			for j := 0; j < len(raw); j++ {
				if raw[j] == '\\' && j+1 < len(raw) {
					j++
					switch raw[j] {
					case 'n':
						out = append(out, '\n')
					case 't':
						out = append(out, '\t')
					case 'r':
						out = append(out, '\r')
					case 'u':
						out = append(out, '\\', 'u')
					default:
						out = append(out, raw[j])
					}
					continue
				}
				out = append(out, raw[j])
			}
			return string(out)
		}
		s.i++
	}
	s.bad = true
	return ""
}

func (s *scanner) skip() {
	switch s.next() {
	case '{':
		s.object(func(string) { s.skip() })
	case '[':
		s.array(s.skip)
	case '"':
		s.str()
	default:
		for s.i < len(s.b) {
			c := s.b[s.i]
			if c == ',' || c == '}' || c == ']' || c == ' ' || c == '\n' {
				return
			}
			s.i++
		}
	}
}

func (s *scanner) object(f func(key string)) {
	if !s.eat('{') {
		s.bad = true
		return
	}
	if s.eat('}') {
		return
	}
	for !s.bad {
		k := s.str()
		if !s.eat(':') {
			s.bad = true
			return
		}
		f(k)
		if s.eat(',') {
			continue
		}
		if !s.eat('}') {
			s.bad = true
		}
		return
	}
}

func (s *scanner) array(f func()) {
	if !s.eat('[') {
		s.bad = true
		return
	}
	if s.eat(']') {
		return
	}
	for !s.bad {
		f()
		if s.eat(',') {
			continue
		}
		if !s.eat(']') {
			s.bad = true
		}
		return
	}
}

func parseRequest(b []byte, r *request) bool {
	s := scanner{b: b}
	s.object(func(k string) {
		switch k {
		case "operation":
			r.Operation = s.str()
		case "model":
			r.Model = s.str()
		case "model_key":
			r.ModelKey = s.str()
		default:
			s.skip()
		}
	})
	return !s.bad
}

func parseModels(b []byte) (map[string][]string, bool) {
	s := scanner{b: b}
	m := map[string][]string{}
	s.object(func(k string) {
		if k != "models" || s.next() != '{' {
			s.skip()
			return
		}
		s.object(func(model string) {
			var assets []string
			if s.next() == '[' {
				s.array(func() { assets = append(assets, s.str()) })
			} else {
				s.skip()
			}
			m[model] = assets
		})
	})
	return m, !s.bad
}
