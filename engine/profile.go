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
	calls []profiled
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
		for _, c := range ev.Changes {
			if c.ElapsedMS > 0 {
				p.calls = append(p.calls, profiled{c.Module + "." + c.Action + " " + c.Subject, c.ElapsedMS})
			}
		}
		p.mu.Unlock()
	}
	p.Next.Event(ev)
}

// Print writes the n slowest tasks and the n slowest module calls (by the
// time they spent in blocking work: SSH, downloads, boots), slowest first.
// A nested task's time counts in its parent's too.
func (p *Profiler) Print(w io.Writer, n int) {
	p.mu.Lock()
	ts := append([]profiled(nil), p.tasks...)
	cs := append([]profiled(nil), p.calls...)
	p.mu.Unlock()
	list := func(what string, ps []profiled) {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].ms > ps[j].ms })
		if len(ps) > n {
			ps = ps[:n]
		}
		if len(ps) == 0 {
			return
		}
		fmt.Fprintf(w, "\nPROFILE  the %d slowest %s\n", len(ps), what)
		for _, t := range ps {
			fmt.Fprintf(w, "  %9s  %s\n", fmtMS(t.ms), t.name)
		}
	}
	list("tasks", ts)
	list("calls", cs)
}
