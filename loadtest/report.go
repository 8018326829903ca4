package loadtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"text/tabwriter"
	"time"
)

// ReportVersion is the version of the JSON report format.
const ReportVersion = 1

// Report is the result of one Run, written as JSON and printed as a table.
type Report struct {
	Version   int             `json:"version"`
	StartedAt time.Time       `json:"started_at"`
	Seconds   float64         `json:"seconds"` // measured wall time, all targets
	Host      HostInfo        `json:"host"`
	Config    ReportConfig    `json:"config"`
	Baseline  string          `json:"baseline"`
	Targets   []TargetReport  `json:"targets"`
	Processes []ProcessReport `json:"processes,omitempty"`
	Notes     []string        `json:"notes,omitempty"`
}

// HostInfo says where the run happened.
type HostInfo struct {
	Hostname   string `json:"hostname"`
	NumCPU     int    `json:"num_cpu"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
}

// ReportConfig is the load shape of the run.
type ReportConfig struct {
	Mode        Mode    `json:"mode"`
	Kind        Kind    `json:"kind"`
	Concurrency int     `json:"concurrency"`
	Rate        float64 `json:"rate,omitempty"`
	Duration    string  `json:"duration,omitempty"`
	Requests    int     `json:"requests_per_target,omitempty"`
	Slice       string  `json:"slice"`
	Stream      bool    `json:"stream"`
	Chunks      int     `json:"chunks"`
	Model       string  `json:"model"`
}

// TargetReport is one target's figures. Latencies are in microseconds.
type TargetReport struct {
	Name     string           `json:"name"`
	URL      string           `json:"url"`
	Requests int64            `json:"requests"`
	OK       int64            `json:"ok"`
	Errors   map[string]int64 `json:"errors,omitempty"`
	// FirstError is the first failure's message, to tell kinds apart.
	FirstError    string  `json:"first_error,omitempty"`
	ActiveSeconds float64 `json:"active_seconds"`
	RPS           float64 `json:"rps"` // successful requests per active second
	// Latency counts from the intended send time (open loop) or the send
	// (closed loop) to the last byte.
	Latency *LatencySummary `json:"latency,omitempty"`
	// Service counts from the actual send (open loop only: the difference
	// to Latency is time spent queued behind the target).
	Service *LatencySummary `json:"service,omitempty"`
	TTFB    *LatencySummary `json:"ttfb,omitempty"`
	Gap     *LatencySummary `json:"chunk_gap,omitempty"`
	Chunks  int64           `json:"chunks,omitempty"`
	// VsBaseline compares this target with the baseline target.
	VsBaseline *Delta `json:"vs_baseline,omitempty"`
}

// Delta is a target's cost over the baseline: ratios (target/baseline)
// and added microseconds (target - baseline).
type Delta struct {
	RPSRatio    float64 `json:"rps_ratio"`
	P50Ratio    float64 `json:"p50_ratio"`
	P99Ratio    float64 `json:"p99_ratio"`
	P50AddedUS  float64 `json:"p50_added_us"`
	P90AddedUS  float64 `json:"p90_added_us"`
	P99AddedUS  float64 `json:"p99_added_us"`
	TTFBP50Add  float64 `json:"ttfb_p50_added_us,omitempty"`
	TTFBP99Add  float64 `json:"ttfb_p99_added_us,omitempty"`
	GapP50Added float64 `json:"gap_p50_added_us,omitempty"`
	GapP99Added float64 `json:"gap_p99_added_us,omitempty"`
}

func (r *runner) report(started time.Time, elapsed time.Duration, procs []ProcessReport) *Report {
	c := r.cfg
	rep := &Report{
		Version:   ReportVersion,
		StartedAt: started.UTC(),
		Seconds:   round3(elapsed.Seconds()),
		Host:      hostInfo(),
		Config: ReportConfig{
			Mode: c.Mode, Kind: c.Kind, Concurrency: c.Concurrency, Rate: c.Rate,
			Requests: c.Requests, Slice: c.Slice.String(), Stream: c.Stream, Chunks: c.Chunks, Model: c.Model,
		},
		Baseline:  c.Baseline,
		Processes: procs,
	}
	if c.Duration > 0 {
		rep.Config.Duration = c.Duration.String()
	}
	for _, t := range r.targets {
		tr := TargetReport{
			Name: t.Name, URL: t.URL, Requests: t.total(), OK: t.ok.Load(),
			ActiveSeconds: round3(t.active.Seconds()),
			Latency:       t.lat.Summary(), TTFB: t.ttfb.Summary(), Gap: t.gap.Summary(),
			Chunks: t.chunks.Load(),
		}
		if c.Mode == Open {
			tr.Service = t.svc.Summary()
		}
		if t.active > 0 {
			tr.RPS = math.Round(float64(tr.OK)/t.active.Seconds()*10) / 10
		}
		for i, k := range errKinds {
			if n := t.errs[i].Load(); n > 0 {
				if tr.Errors == nil {
					tr.Errors = map[string]int64{}
				}
				tr.Errors[k] = n
			}
		}
		if p := t.firstErr.Load(); p != nil {
			tr.FirstError = *p
		}
		rep.Targets = append(rep.Targets, tr)
	}
	rep.computeDeltas()
	return rep
}

// computeDeltas fills VsBaseline of every target but the baseline.
func (rep *Report) computeDeltas() {
	base := rep.Target(rep.Baseline)
	if base == nil || base.Latency == nil {
		return
	}
	for i := range rep.Targets {
		t := &rep.Targets[i]
		t.VsBaseline = nil
		if t.Name == base.Name || t.Latency == nil {
			continue
		}
		d := &Delta{
			RPSRatio:   ratio(t.RPS, base.RPS),
			P50Ratio:   ratio(t.Latency.P50, base.Latency.P50),
			P99Ratio:   ratio(t.Latency.P99, base.Latency.P99),
			P50AddedUS: round1(t.Latency.P50 - base.Latency.P50),
			P90AddedUS: round1(t.Latency.P90 - base.Latency.P90),
			P99AddedUS: round1(t.Latency.P99 - base.Latency.P99),
		}
		if t.TTFB != nil && base.TTFB != nil {
			d.TTFBP50Add = round1(t.TTFB.P50 - base.TTFB.P50)
			d.TTFBP99Add = round1(t.TTFB.P99 - base.TTFB.P99)
		}
		if t.Gap != nil && base.Gap != nil {
			d.GapP50Added = round1(t.Gap.P50 - base.Gap.P50)
			d.GapP99Added = round1(t.Gap.P99 - base.Gap.P99)
		}
		t.VsBaseline = d
	}
}

// Target returns the named target's figures, nil when absent.
func (rep *Report) Target(name string) *TargetReport {
	for i := range rep.Targets {
		if rep.Targets[i].Name == name {
			return &rep.Targets[i]
		}
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }
func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// WriteJSON writes the report to path (indented).
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadReport reads a JSON report written by WriteJSON.
//
// # Errors
// An unreadable file, invalid JSON, or a report of another version.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rep.Version != ReportVersion {
		return nil, fmt.Errorf("%s: report version %d, want %d", path, rep.Version, ReportVersion)
	}
	if len(rep.Targets) == 0 {
		return nil, fmt.Errorf("%s: %w", path, errors.New("report has no targets"))
	}
	return &rep, nil
}

func us(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 1000:
		return fmt.Sprintf("%.0fµs", v)
	case v < 1e6:
		return fmt.Sprintf("%.2fms", v/1000)
	}
	return fmt.Sprintf("%.2fs", v/1e6)
}

func signedUS(v float64) string {
	if v >= 0 {
		return "+" + fmt.Sprintf("%.0fµs", v)
	}
	return fmt.Sprintf("%.0fµs", v)
}

// WriteTable prints the human-readable table.
func (rep *Report) WriteTable(w io.Writer) {
	c := rep.Config
	fmt.Fprintf(w, "\n%s loop, %s, concurrency %d", c.Mode, c.Kind, c.Concurrency)
	if c.Mode == Open {
		fmt.Fprintf(w, ", %.0f req/s offered", c.Rate)
	}
	if c.Stream {
		fmt.Fprintf(w, ", streaming %d chunks", c.Chunks)
	}
	fmt.Fprintf(w, "; %.1fs measured in %s slices; %d CPUs (GOMAXPROCS %d); baseline %s\n\n",
		rep.Seconds, c.Slice, rep.Host.NumCPU, rep.Host.GOMAXPROCS, rep.Baseline)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\treq/s\tp50\tp90\tp99\tp99.9\tmax\terrors\t×req/s\t+p50\t+p99\t")
	for _, t := range rep.Targets {
		l := t.Latency
		if l == nil {
			l = &LatencySummary{}
		}
		var errs int64
		for _, n := range t.Errors {
			errs += n
		}
		x, a50, a99 := "base", "", ""
		if d := t.VsBaseline; d != nil {
			x = fmt.Sprintf("%.3f", d.RPSRatio)
			a50, a99 = signedUS(d.P50AddedUS), signedUS(d.P99AddedUS)
		} else if t.Name != rep.Baseline {
			x = "-"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t\n", t.Name, t.RPS,
			us(l.P50), us(l.P90), us(l.P99), us(l.P999), us(l.Max), errs, x, a50, a99)
	}
	tw.Flush()
	if c.Stream {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "target\tTTFB p50\tTTFB p99\t+TTFB p50\t+TTFB p99\tgap p50\tgap p99\tgap max\t+gap p50\t+gap p99\t")
		for _, t := range rep.Targets {
			tt, g := t.TTFB, t.Gap
			if tt == nil {
				tt = &LatencySummary{}
			}
			if g == nil {
				g = &LatencySummary{}
			}
			d := t.VsBaseline
			a := []string{"", "", "", ""}
			if d != nil {
				a = []string{signedUS(d.TTFBP50Add), signedUS(d.TTFBP99Add), signedUS(d.GapP50Added), signedUS(d.GapP99Added)}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", t.Name, us(tt.P50), us(tt.P99), a[0], a[1],
				us(g.P50), us(g.P99), us(g.Max), a[2], a[3])
		}
		tw.Flush()
	}
	if c.Mode == Open {
		fmt.Fprintln(w, "\nopen loop: latency counts from each request's intended send time; service time from the actual send:")
		for _, t := range rep.Targets {
			if t.Service != nil {
				fmt.Fprintf(w, "  %s service p50 %s p99 %s\n", t.Name, us(t.Service.P50), us(t.Service.P99))
			}
		}
	}
	for _, p := range rep.Processes {
		fmt.Fprintf(w, "process %s (pid %d): max RSS %.1f MiB, CPU %.2fs\n", p.Name, p.PID, p.MaxRSSMiB, p.CPUSeconds)
	}
	for _, t := range rep.Targets {
		if t.FirstError != "" {
			fmt.Fprintf(w, "%s errors %v; first: %s\n", t.Name, t.Errors, t.FirstError)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

// Comparison is the change of each target between two reports.
type Comparison struct {
	Target    string  `json:"target"`
	OldRPS    float64 `json:"old_rps"`
	NewRPS    float64 `json:"new_rps"`
	RPSChange float64 `json:"rps_change"` // fraction: +0.10 = 10 % more
	OldP50    float64 `json:"old_p50_us"`
	NewP50    float64 `json:"new_p50_us"`
	P50Change float64 `json:"p50_change"`
	OldP99    float64 `json:"old_p99_us"`
	NewP99    float64 `json:"new_p99_us"`
	P99Change float64 `json:"p99_change"`
	OldRatio  float64 `json:"old_rps_ratio,omitempty"` // vs each report's baseline
	NewRatio  float64 `json:"new_rps_ratio,omitempty"`
	OnlyInOld bool    `json:"only_in_old,omitempty"`
	OnlyInNew bool    `json:"only_in_new,omitempty"`
}

// Compare matches targets by name and returns how each changed from old
// to rep. Targets present on one side only are listed with OnlyIn*.
func Compare(old, rep *Report) []Comparison {
	var out []Comparison
	change := func(o, n float64) float64 {
		if o == 0 {
			return 0
		}
		return math.Round((n-o)/o*1000) / 1000
	}
	for _, t := range rep.Targets {
		o := old.Target(t.Name)
		if o == nil {
			out = append(out, Comparison{Target: t.Name, NewRPS: t.RPS, OnlyInNew: true})
			continue
		}
		c := Comparison{Target: t.Name, OldRPS: o.RPS, NewRPS: t.RPS, RPSChange: change(o.RPS, t.RPS)}
		if o.Latency != nil && t.Latency != nil {
			c.OldP50, c.NewP50, c.P50Change = o.Latency.P50, t.Latency.P50, change(o.Latency.P50, t.Latency.P50)
			c.OldP99, c.NewP99, c.P99Change = o.Latency.P99, t.Latency.P99, change(o.Latency.P99, t.Latency.P99)
		}
		if o.VsBaseline != nil {
			c.OldRatio = o.VsBaseline.RPSRatio
		}
		if t.VsBaseline != nil {
			c.NewRatio = t.VsBaseline.RPSRatio
		}
		out = append(out, c)
	}
	for _, o := range old.Targets {
		if rep.Target(o.Name) == nil {
			out = append(out, Comparison{Target: o.Name, OldRPS: o.RPS, OnlyInOld: true})
		}
	}
	return out
}

// WriteComparison prints Compare's result as a table, with a warning when
// the two runs had a different load shape.
func WriteComparison(w io.Writer, old, rep *Report) {
	fmt.Fprintln(w, "\ncompared with the previous report:")
	if old.Config != rep.Config {
		fmt.Fprintf(w, "warning: load shapes differ (old %+v, new %+v)\n", old.Config, rep.Config)
	}
	if old.Host.NumCPU != rep.Host.NumCPU || old.Host.Hostname != rep.Host.Hostname {
		fmt.Fprintf(w, "warning: different machines (old %s/%d CPUs, new %s/%d CPUs)\n", old.Host.Hostname, old.Host.NumCPU, rep.Host.Hostname, rep.Host.NumCPU)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\told req/s\tnew req/s\tΔ\told p50\tnew p50\tΔ\told p99\tnew p99\tΔ\told ×base\tnew ×base\t")
	pct := func(v float64) string { return fmt.Sprintf("%+.1f%%", v*100) }
	for _, c := range Compare(old, rep) {
		switch {
		case c.OnlyInNew:
			fmt.Fprintf(tw, "%s\t-\t%.0f\tnew\t\t\t\t\t\t\t\t\t\n", c.Target, c.NewRPS)
		case c.OnlyInOld:
			fmt.Fprintf(tw, "%s\t%.0f\t-\tgone\t\t\t\t\t\t\t\t\t\n", c.Target, c.OldRPS)
		default:
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.Target, c.OldRPS, c.NewRPS, pct(c.RPSChange),
				us(c.OldP50), us(c.NewP50), pct(c.P50Change), us(c.OldP99), us(c.NewP99), pct(c.P99Change),
				ratioStr(c.OldRatio), ratioStr(c.NewRatio))
		}
	}
	tw.Flush()
}

func ratioStr(v float64) string {
	if v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", v)
}
