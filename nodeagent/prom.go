package nodeagent

import (
	"strconv"
	"strings"
)

// parseProm reads Prometheus text exposition format and returns, for every
// metric name in want, the sum of its samples over all label sets. Comments,
// blank lines, timestamps and unknown metrics are skipped; a malformed line
// is skipped, never fatal (a partly readable /metrics still yields figures).
func parseProm(text string, want ...string) map[string]float64 {
	out := make(map[string]float64, len(want))
	for len(text) > 0 {
		var line string
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			line, text = text, ""
		}
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ \t")
		if end <= 0 {
			continue
		}
		name := line[:end]
		if !contains(want, name) {
			continue
		}
		rest := line[end:]
		if rest[0] == '{' {
			close := labelsEnd(rest)
			if close < 0 {
				continue
			}
			rest = rest[close+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
	}
	return out
}

// labelsEnd returns the index of the '}' closing the label set that s
// starts with, honouring quoted values with escapes; -1 when unterminated.
func labelsEnd(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case c == '}' && !inQuote:
			return i
		}
	}
	return -1
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
