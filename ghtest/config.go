package ghtest

import (
	"strconv"
	"strings"
)

// edgeConfig renders one edge's YAML configuration.
func (c *Cluster) edgeConfig(id string) string {
	var b strings.Builder
	b.WriteString("listen: \":8080\"\n")
	b.WriteString("id: " + id + "\n")
	b.WriteString("redis:\n  url: " + strconv.Quote(c.redisURL()) + "\n")
	b.WriteString("keys:\n")
	b.WriteString("  - id: ghtest-client\n    secret: " + strconv.Quote(c.cfg.apiKey) + "\n    scope: client\n")
	b.WriteString("  - id: ghtest-admin\n    secret: " + strconv.Quote(c.cfg.adminKey) + "\n    scope: operator\n")
	if c.cfg.policyDir != "" {
		b.WriteString("policy:\n  dir: /etc/geniehive/policies\n")
	}
	b.WriteString(c.cfg.edgeYAML)
	return b.String()
}

func (c *Cluster) policyMount() map[string]string {
	if c.cfg.policyDir == "" {
		return nil
	}
	return map[string]string{c.cfg.policyDir: "/etc/geniehive/policies"}
}

// nodeConfig renders node agent i's YAML configuration (nodeagent.Config):
// every upstream assigned to it, reached by its alias (simulated) or URL
// (the caller's). A simulated upstream offering models of several kinds is
// registered as one service per kind ("<name>", "<name>-embeddings", ...),
// all at the same endpoint.
func (c *Cluster) nodeConfig(i int) string {
	var b strings.Builder
	b.WriteString("host_id: node" + strconv.Itoa(i+1) + "\n")
	b.WriteString("redis_url: " + strconv.Quote(c.redisURL()) + "\n")
	b.WriteString("heartbeat_interval: " + c.cfg.heartbeat.String() + "\n")
	b.WriteString("heartbeat_ttl: " + c.cfg.ttl.String() + "\n")
	b.WriteString("nvidia_smi: \"off\"\n")
	b.WriteString("services:\n")
	svc := func(name, url, proto, kind string, vram int64) {
		b.WriteString("  - name: " + name + "\n")
		b.WriteString("    endpoint: " + url + "\n")
		b.WriteString("    discover_protocol: " + proto + "\n")
		if kind != "" {
			b.WriteString("    kind: " + kind + "\n")
		}
		if vram > 0 {
			b.WriteString("    vram_total: " + strconv.FormatInt(vram, 10) + "\n")
		}
	}
	for _, u := range c.cfg.upstreams {
		if u.Node != i {
			continue
		}
		if u.URL != "" {
			proto := u.Protocol
			if proto == "" {
				proto = "openai"
			}
			svc(u.Name, strings.TrimSuffix(strings.TrimRight(u.URL, "/"), "/v1"), proto, u.Kind, u.VRAMTotal)
			continue
		}
		url := "http://" + u.Name + ":" + simPort(u.Flavor)
		for j, kind := range simKinds(u) {
			name := u.Name
			if j > 0 {
				name += "-" + kind
			}
			svc(name, url, u.Flavor, kind, u.VRAMTotal)
		}
	}
	return b.String()
}

// simKinds lists the kinds of a simulated upstream's models, in first-seen
// order, inferred as the simulator does.
func simKinds(u Upstream) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range u.Models {
		k := ModelKind(u.Flavor, m)
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// ModelKind is the kind the simulator gives a model: "embeddings" when the
// name contains "embed", "transcription" for "whisper" names or the whisper
// flavor, else "chat".
func ModelKind(flavor, model string) string {
	m := strings.ToLower(model)
	switch {
	case flavor == "whisper" || strings.Contains(m, "whisper"):
		return "transcription"
	case strings.Contains(m, "embed"):
		return "embeddings"
	}
	return "chat"
}
