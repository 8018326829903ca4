package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/geniehive/geniehive/deploy/localimages"
	"github.com/geniehive/geniehive/ghtest"
)

// skipReason is set by TestMain when the suite cannot run here (and may be
// skipped: never under CI=true).
var skipReason string

// Heartbeat settings of the chaos cluster's node agents.
const (
	hbInterval = 500 * time.Millisecond
	hbTTL      = 3 * time.Second
)

func TestMain(m *testing.M) {
	if err := localimages.Prepare(); err != nil {
		if !errors.Is(err, localimages.ErrSkip) {
			fmt.Fprintf(os.Stderr, "chaos: %v\n", err)
			os.Exit(1)
		}
		skipReason = err.Error()
	}
	os.Exit(m.Run())
}

func needDocker(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip("chaos suite skipped: " + skipReason)
	}
}

// Models of the chaos cluster. Both upstreams serve the shared chat and
// embeddings models (so one can fail over to the other); only up2 serves
// soloModel (so its departure is visible in /v1/models).
const (
	chatModel  = "llama3.1:8b"
	embedModel = "nomic-embed-text"
	soloModel  = "solo-b:1b"
)

// edgeYAML tightens the edges' timeouts so a stuck upstream fails over in
// seconds, and turns active probing on (edgeYAMLNoProbe leaves it off).
const edgeYAML = edgeYAMLNoProbe + "  probe_interval: 1s\n"

const edgeYAMLNoProbe = `
presence_interval: 1s
timeouts:
  connect: 1s
  request: 5s
  stream_idle: 5s
  shutdown: 10s
failover:
  attempts: 3
routing:
  failure_threshold: 2
  cooldown: 30s
`

// simArgs keep answers short: streams are ~16 tokens × 2ms.
var simArgs = []string{"--chunks", "16", "--chunk-interval", "2ms", "--ttft", "5ms"}

func startCluster(t *testing.T, extra ...ghtest.Option) *ghtest.Cluster {
	t.Helper()
	return startClusterYAML(t, edgeYAML, extra...)
}

func startClusterYAML(t *testing.T, yaml string, extra ...ghtest.Option) *ghtest.Cluster {
	t.Helper()
	needDocker(t)
	return ghtest.Start(t, append(clusterOpts(yaml,
		ghtest.Upstream{Name: "up1", Flavor: "openai", Models: []string{chatModel, embedModel}, Node: 0, Args: simArgs},
		ghtest.Upstream{Name: "up2", Flavor: "ollama", Models: []string{chatModel, embedModel, soloModel}, Node: 1, Args: append([]string{"--loaded", "all"}, simArgs...)},
	), extra...)...)
}

// clusterOpts are the chaos cluster's options: 3 edges behind HAProxy, 2
// node agents, the given upstreams and edge YAML.
func clusterOpts(yaml string, ups ...ghtest.Upstream) []ghtest.Option {
	opts := []ghtest.Option{
		ghtest.WithName("chaos"),
		ghtest.WithEdges(3),
		ghtest.WithNodes(2),
		ghtest.WithUpstreams(ups...),
		ghtest.WithHeartbeat(hbInterval, hbTTL),
		ghtest.WithEdgeConfig(yaml),
		ghtest.WithStartupTimeout(90 * time.Second),
	}
	if os.Getenv("GENIEHIVE_CHAOS_LOGS") != "" {
		opts = append(opts, ghtest.WithLogs(os.Stderr))
	}
	if m := os.Getenv("GENIEHIVE_MUTANT"); m != "" {
		// make test-mutants: the edges run a deliberately broken build.
		opts = append(opts, ghtest.WithEdgeEnv(map[string]string{"GENIEHIVE_MUTANT": m}))
	}
	return opts
}

func startLoad(c *ghtest.Cluster) *Load {
	return StartLoad(LoadConfig{BaseURL: c.BaseURL, APIKey: c.APIKey, Workers: 4, Pause: 40 * time.Millisecond,
		ChatModel: chatModel, EmbedModel: embedModel})
}

// promise is what a scenario's fault may cost. The zero promise: every
// request succeeds.
type promise struct {
	// cutAtFault tolerates connections cut for requests in flight at a
	// Load.Mark (a SIGKILLed replica's open connections), and nothing else.
	cutAtFault bool
	// errorAtFault tolerates a clean retryable error (an error event ending
	// a stream) for requests in flight at a Load.Mark (streams already under
	// way on an upstream that died or was cut off cannot fail over).
	errorAtFault bool
}

// report prints the scenario's one-line summary and fails the test when the
// load saw anything its promise does not allow. Successes are required: a
// cluster that answered nothing lost nothing, and proves nothing.
func report(t *testing.T, name string, s Summary, p promise) {
	t.Helper()
	line := fmt.Sprintf("chaos %-28s %s", name+":", s)
	fmt.Println(line)
	t.Log(line)
	appendSummary(line)
	for _, f := range s.Failures {
		t.Log("  " + f)
	}
	if s.Requests < 50 || s.OK == 0 {
		t.Errorf("only %d requests completed, %d succeeded: the load did not run", s.Requests, s.OK)
	}
	if s.Other > 0 {
		t.Errorf("%d requests lost (hang, truncated body or stream, non-OpenAI or non-retryable error)", s.Other)
	}
	cut, retryable := s.Cut, s.Retryable
	if p.cutAtFault {
		cut -= s.SpannedCut
	}
	if p.errorAtFault {
		retryable -= s.SpannedRetryable
	}
	if cut > 0 {
		t.Errorf("%d requests had their connection cut that this scenario does not allow (%d in flight at the fault, allowed: %v)", cut, s.SpannedCut, p.cutAtFault)
	}
	if retryable > 0 {
		t.Errorf("%d requests failed with retryable errors that this scenario does not allow (%d in flight at the fault, allowed: %v)", retryable, s.SpannedRetryable, p.errorAtFault)
	}
}

var summaryMu sync.Mutex

// appendSummary adds the line to $GENIEHIVE_CHAOS_SUMMARY when set (go test
// hides a passing package's output without -v).
func appendSummary(line string) {
	p := os.Getenv("GENIEHIVE_CHAOS_SUMMARY")
	if p == "" {
		return
	}
	summaryMu.Lock()
	defer summaryMu.Unlock()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err == nil {
		fmt.Fprintln(f, line)
		f.Close()
	}
}

func sleep(d time.Duration) { time.Sleep(d) }

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// verifyRegistry waits until the Redis registry lists exactly the live node
// agents and every one of them heartbeats its services.
func verifyRegistry(t *testing.T, c *ghtest.Cluster, live ...string) {
	t.Helper()
	sort.Strings(live)
	ctx := ctxT(t, hbTTL+10*time.Second)
	var last []string
	var lastErr error
	for {
		ids, err := registryNodes(ctx, c)
		if err == nil && strings.Join(ids, ",") == strings.Join(live, ",") {
			return
		}
		last, lastErr = ids, err
		select {
		case <-ctx.Done():
			t.Errorf("registry lists nodes %v (err %v); live node agents are %v", last, lastErr, live)
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func registryNodes(ctx context.Context, c *ghtest.Cluster) ([]string, error) {
	s, err := c.Store(ctx)
	if err != nil {
		return nil, err
	}
	defer s.Client().Close()
	recs, err := s.ReadNodes(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, r := range recs {
		if time.Now().Before(r.Deadline) {
			ids = append(ids, r.State.Host.ID)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// verifyInflight waits until the cluster-wide in-flight counters in Redis
// and every running edge's own gauge are zero. Leases held by a replica
// that was SIGKILLed (killedEdges) cannot be released by it; they must
// carry a deadline within the lease bound and are reported, not failed.
func verifyInflight(t *testing.T, c *ghtest.Cluster, killedEdges ...string) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	var last string
	for {
		msg, ok := inflightState(ctx, c, killedEdges)
		if ok {
			if msg != "" {
				t.Log(msg)
			}
			return
		}
		last = msg
		select {
		case <-ctx.Done():
			t.Errorf("in-flight counters did not return to zero: %s", last)
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func inflightState(ctx context.Context, c *ghtest.Cluster, killed []string) (string, bool) {
	s, err := c.Store(ctx)
	if err != nil {
		return err.Error(), false
	}
	defer s.Client().Close()
	rc := s.Client()
	keys, err := scanKeys(ctx, rc, s.Prefix()+"if:{*")
	if err != nil {
		return err.Error(), false
	}
	now := time.Now().UnixMilli()
	var stale []string
	for _, k := range keys {
		zs, err := rc.ZRangeByScoreWithScores(ctx, k, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now, 10), Max: "+inf"}).Result()
		if err != nil {
			return err.Error(), false
		}
		for _, z := range zs {
			m := fmt.Sprint(z.Member)
			edge, _, _ := strings.Cut(m, ":")
			if contains(killed, edge) && int64(z.Score)-now <= int64(2*time.Minute/time.Millisecond) {
				stale = append(stale, k+" "+m)
				continue
			}
			return fmt.Sprintf("%s holds lease %s (deadline in %dms)", k, m, int64(z.Score)-now), false
		}
	}
	for i, e := range c.Edges {
		u, err := c.EdgeURL(ctx, i)
		if err != nil {
			return err.Error(), false
		}
		n, err := gaugeSum(ctx, u+"/metrics", "geniehive_inflight_requests")
		if err != nil {
			return e.Alias + ": " + err.Error(), false
		}
		if n != 0 {
			return fmt.Sprintf("%s reports %v requests in flight", e.Alias, n), false
		}
	}
	if len(stale) > 0 {
		return fmt.Sprintf("in-flight zero except %d lease(s) left by SIGKILLed replicas, expiring within the lease TTL: %v", len(stale), stale), true
	}
	return "", true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// metricSum sums every sample of a Prometheus metric whose labels contain
// match (all samples when match is "").
func metricSum(ctx context.Context, url, name, match string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		if match != "" && !strings.Contains(line, match) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}

func gaugeSum(ctx context.Context, url, name string) (float64, error) {
	return metricSum(ctx, url, name, "")
}

// edgesMetricSum sums a metric over every running edge.
func edgesMetricSum(ctx context.Context, c *ghtest.Cluster, name, match string) (float64, error) {
	var sum float64
	for i := range c.Edges {
		u, err := c.EdgeURL(ctx, i)
		if err != nil {
			return 0, err
		}
		v, err := metricSum(ctx, u+"/metrics", name, match)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// edgeModels lists /v1/models on edge i directly (not through the load
// balancer, which picks any edge).
func edgeModels(ctx context.Context, c *ghtest.Cluster, i int) ([]string, error) {
	u, err := c.EdgeURL(ctx, i)
	if err != nil {
		return nil, err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+"/v1/models", nil)
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("edge %d /v1/models: %s: %w", i, resp.Status, err)
	}
	ids := make([]string, 0, len(r.Data))
	for _, d := range r.Data {
		ids = append(ids, d.ID)
	}
	return ids, nil
}
