package edge

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/geniehive/geniehive/loadtest/sim"
)

// simChildEnv set to 1 makes this test binary serve a simulated upstream
// instead of running tests (TestMain): BenchmarkTracingOverhead runs its
// upstream in such a child process, so the upstream's work (parsing the
// traceparent the edge sends it, among the rest) is not charged to the
// edge's CPU; in production the upstream runs on another host.
const simChildEnv = "GENIEHIVE_EDGE_SIM_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(simChildEnv) == "1" {
		os.Exit(simChildMain(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

// simChildConfig is the child's upstream: the models of newStack's chat
// simulator, answering at once with 8 content chunks (what the tracing
// benchmark set on the in-process one).
func simChildConfig() sim.Config {
	return sim.Config{Models: []sim.Model{
		{Name: "llama3.1:8b", Family: "llama", Loaded: true, ContextLength: 32768},
		{Name: "qwen3:8b", Family: "qwen3", Thinking: true, Loaded: true},
	}, Behavior: sim.Behavior{Chunks: 8, ReasoningChunks: 2}}
}

// simChildMain serves simChildConfig on a loopback port, writes its URL as
// the first line to out, then answers each line read from in with the
// process's CPU time so far in nanoseconds (user and system, getrusage),
// and exits when in ends: the parent closed it, or died.
func simChildMain(in io.Reader, out io.Writer) int {
	s, err := sim.Start(simChildConfig())
	if err != nil {
		fmt.Fprintln(os.Stderr, "sim child:", err)
		return 3
	}
	defer s.Close()
	w := bufio.NewWriter(out)
	w.WriteString(s.URL() + "\n")
	w.Flush()
	r := bufio.NewScanner(in)
	for r.Scan() {
		w.WriteString(strconv.FormatInt(int64(processCPU()), 10) + "\n")
		if w.Flush() != nil {
			return 0
		}
	}
	return 0
}

// simChild is a simulated upstream in a child process (this test binary
// re-executed with simChildEnv=1).
type simChild struct {
	url string
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startSimChild starts the child and waits for its URL. It is stopped
// (stdin closed, then killed if it has not exited within 5 s) when tb ends;
// it also exits on its own when this process dies (its stdin ends).
func startSimChild(tb testing.TB) *simChild {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), simChildEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	c := &simChild{cmd: cmd, in: in, out: bufio.NewReader(outPipe)}
	tb.Cleanup(c.stop)
	line, err := c.out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "http://") {
		tb.Fatalf("sim child: first line %q: %v", line, err)
	}
	c.url = strings.TrimSpace(line)
	return c
}

// cpu is the child's CPU time so far (user and system), as it measures it.
func (c *simChild) cpu(tb testing.TB) time.Duration {
	if _, err := io.WriteString(c.in, "\n"); err != nil {
		tb.Fatalf("sim child: %v", err)
	}
	line, err := c.out.ReadString('\n')
	if err != nil {
		tb.Fatalf("sim child: %v", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		tb.Fatalf("sim child: %q: %v", line, err)
	}
	return time.Duration(n)
}

func (c *simChild) stop() {
	_ = c.in.Close()
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
}

// TestSimChild checks the tracing benchmark's out-of-process upstream: it
// answers a chat request, reports its CPU time, and exits by itself (exit
// status 0, not killed) when its stdin is closed.
func TestSimChild(t *testing.T) {
	c := startSimChild(t)
	resp, err := http.Post(c.url+"/v1/chat/completions", "application/json",
		strings.NewReader(`{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"llama3.1:8b"`) {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if a, b := c.cpu(t), c.cpu(t); runtime.GOOS == "linux" && (a <= 0 || b < a) {
		t.Fatalf("child CPU %v then %v", a, b)
	}
	c.stop()
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("child exit status %d after stdin closed, want 0 (it had to be killed, or failed)", code)
	}
}

// BenchmarkSimTraceparent is the upstream's side of a traced request
// alone: 32 clients send non-streamed chat requests straight to
// BenchmarkTracingOverhead's upstream child, with and without the
// traceparent header the edge propagates, in alternating ABBA rounds, and
// it reports the child's CPU per request in each mode (its getrusage)
// and their difference: what parsing the header costs the upstream's
// host, with no edge in between.
//
//	go test ./edge -run XXX -bench SimTraceparent -benchtime 60000x
func BenchmarkSimTraceparent(b *testing.B) {
	child := startSimChild(b)
	const clients, rounds = 32, 20
	hc := &fasthttp.Client{MaxConnsPerHost: 2 * clients}
	body := []byte(`{"model":"llama3.1:8b","messages":[{"role":"user","content":"hi"}]}`)
	round := func(n int, traced bool) {
		sendConcurrently(b, hc, clients, n/clients, func(req *fasthttp.Request) {
			req.SetRequestURI(child.url + "/v1/chat/completions")
			if traced {
				req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			}
			req.SetBody(body)
		})
	}
	round(clients*20, true)
	round(clients*20, false)
	per := max(b.N/(2*rounds), clients) / clients * clients
	var off, on time.Duration
	timed := func(traced bool, cpu *time.Duration) {
		c0 := child.cpu(b)
		round(per, traced)
		*cpu += child.cpu(b) - c0
	}
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		if r%2 == 0 {
			timed(false, &off)
			timed(true, &on)
		} else {
			timed(true, &on)
			timed(false, &off)
		}
	}
	b.StopTimer()
	n := float64(rounds * per)
	if off > 0 && on > 0 {
		b.ReportMetric(float64(off.Nanoseconds())/n/1e3, "upstream-off-cpu-µs/req")
		b.ReportMetric(float64(on.Nanoseconds())/n/1e3, "upstream-on-cpu-µs/req")
		b.ReportMetric(float64(on-off)/n/1e3, "upstream-traceparent-µs/req")
	}
}
