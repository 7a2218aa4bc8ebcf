package engine

import (
	"fmt"
	"io"
	"sort"
	"sync"
)

// Profiler is a Reporter that passes every event on and keeps how long
// each task took, for --profile (Ansible's profile_tasks).
type Profiler struct {
	Next  Reporter
	mu    sync.Mutex
	tasks []profiled
}

type profiled struct {
	name string
	ms   float64
}

// Event implements Reporter.
func (p *Profiler) Event(ev Event) {
	if ev.Type == "task_end" && ev.Status != "skipped" {
		p.mu.Lock()
		p.tasks = append(p.tasks, profiled{ev.Task, ev.Elapsed})
		p.mu.Unlock()
	}
	p.Next.Event(ev)
}

// Print writes the n slowest tasks, slowest first, with their share of the
// summed task time (nested tasks count in their parent too).
func (p *Profiler) Print(w io.Writer, n int) {
	p.mu.Lock()
	ts := append([]profiled(nil), p.tasks...)
	p.mu.Unlock()
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].ms > ts[j].ms })
	if len(ts) > n {
		ts = ts[:n]
	}
	fmt.Fprintf(w, "\nPROFILE  the %d slowest tasks\n", len(ts))
	for _, t := range ts {
		fmt.Fprintf(w, "  %9s  %s\n", fmtMS(t.ms), t.name)
	}
}
