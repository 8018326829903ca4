package state

import (
	"testing"
	"time"
)

func TestNodeKeyParsedStrictly(t *testing.T) {
	s := &Store{prefix: "gh:"}
	for k, want := range map[string]string{
		"gh:node:{gpu-a}:state":                            "gpu-a state",
		"gh:node:{gpu-a}:gone":                             "gpu-a gone",
		"gh:node:{a}:x}:state":                             "",
		"gh:node:{a/b}:state":                              "",
		"gh:node:{}:state":                                 "",
		"gh:node:{a}:state:x":                              "",
		"gh:node:{a:b}:state":                              "",
		"gh:node:{" + string(make([]byte, 65)) + "}:state": "",
		"xx:node:{a}:state":                                "",
	} {
		h, kind, _, ok := s.parseNodeKey(k)
		got := ""
		if ok {
			got = h + " " + kind
		}
		if got != want {
			t.Errorf("%q: %q, want %q", k, got, want)
		}
	}
}

func TestEndpointChecks(t *testing.T) {
	for ep, ok := range map[string]bool{
		"http://10.0.0.5:11434":       true,
		"https://gpu-a.lan/ollama/v1": true,
		"http://[::1]:8080":           true,
		"ftp://10.0.0.5":              false,
		"http://u:p@10.0.0.5":         false,
		"http://10.0.0.5/?x":          false,
		"http://10.0.0.5/#f":          false,
		"http://10.0.0.5/a/../b":      false,
		"http://10.0.0.5/a%2fb":       false,
		"http://10.0.0.5/a b":         false,
		"http://:80":                  false,
		"http://10.0.0.5:99999":       false,
		"//10.0.0.5":                  false,
		"http://10.0.0.5/" + string(make([]byte, MaxEndpointLen)): false,
	} {
		if _, err := checkEndpoint(ep); (err == nil) != ok {
			t.Errorf("%q: err %v, want ok=%v", ep, err, ok)
		}
	}
}

func TestResyncWaitStretches(t *testing.T) {
	if got := resyncWait(5*time.Second, 50*time.Millisecond, true); got != 5*time.Second {
		t.Fatalf("a quick resync keeps the period: %v", got)
	}
	if got := resyncWait(5*time.Second, 2*time.Second, true); got != 40*time.Second {
		t.Fatalf("a 2s resync: next in %v, want 40s", got)
	}
	// A resync slowed by a failover (10s of dial timeouts) must not leave
	// the edge without one for 200s: the stretch is capped at 12 periods.
	if got := resyncWait(5*time.Second, 10*time.Second, true); got != 60*time.Second {
		t.Fatalf("a 10s resync: next in %v, want the 60s cap", got)
	}
	// A failed resync is retried after the base period, however long it took.
	if got := resyncWait(5*time.Second, 10*time.Second, false); got != 5*time.Second {
		t.Fatalf("a failed 10s resync: next in %v, want 5s", got)
	}
}
