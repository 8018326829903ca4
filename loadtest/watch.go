package loadtest

import (
	"bytes"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"
)

// ProcessReport is what was sampled of one watched process during the
// measured part of a run.
type ProcessReport struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	MaxRSSMiB  float64 `json:"max_rss_mib"`
	LastRSSMiB float64 `json:"last_rss_mib"`
	// CPUSeconds is user+system CPU time the process used meanwhile.
	CPUSeconds float64 `json:"cpu_seconds"`
}

type watcher struct {
	mu    sync.Mutex
	procs []*ProcessReport
	cpu0  map[int]float64
	done  chan struct{}
	wg    sync.WaitGroup
}

// startWatch samples /proc/<pid> of each process every 100ms.
func startWatch(m map[string]int) *watcher {
	w := &watcher{done: make(chan struct{}), cpu0: map[int]float64{}}
	if len(m) == 0 {
		return w
	}
	for name, pid := range m {
		w.procs = append(w.procs, &ProcessReport{Name: name, PID: pid})
	}
	sort.Slice(w.procs, func(i, j int) bool { return w.procs[i].Name < w.procs[j].Name })
	w.reset()
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			w.sample()
			select {
			case <-w.done:
				return
			case <-tk.C:
			}
		}
	}()
	return w
}

func (w *watcher) sample() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.procs {
		rss := ProcRSSMiB(p.PID)
		if rss <= 0 {
			continue
		}
		p.LastRSSMiB = rss
		if rss > p.MaxRSSMiB {
			p.MaxRSSMiB = rss
		}
	}
}

// reset starts the measured part: max RSS and CPU count from now.
func (w *watcher) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.procs {
		p.MaxRSSMiB = 0
		w.cpu0[p.PID] = ProcCPUSeconds(p.PID)
	}
}

func (w *watcher) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}

func (w *watcher) results() []ProcessReport {
	w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]ProcessReport, 0, len(w.procs))
	for _, p := range w.procs {
		q := *p
		q.CPUSeconds = ProcCPUSeconds(p.PID) - w.cpu0[p.PID]
		out = append(out, q)
	}
	return out
}

// ProcRSSMiB returns a process's resident set size in MiB (Linux), 0 when
// unknown.
func ProcRSSMiB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte("VmRSS:"))
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+6:])
	if len(f) < 1 {
		return 0
	}
	kb, _ := strconv.ParseFloat(string(f[0]), 64)
	return kb / 1024
}

// ProcCPUSeconds returns a process's user+system CPU time (Linux), 0 when
// unknown. Assumes the usual 100 ticks per second.
func ProcCPUSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(string(f[11]), 64)
	s, _ := strconv.ParseFloat(string(f[12]), 64)
	return (u + s) / 100
}
