package engine

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Event is one thing that happened in a run, as the reporters see it.
// With --json each event is one line of JSON on stdout.
type Event struct {
	Type     string    `json:"event"` // task_start, task_end, change, log, error, recap, task_list
	Time     time.Time `json:"time"`
	Task     string    `json:"task,omitempty"`
	Status   string    `json:"status,omitempty"` // task_end: ok, changed, may_change, would_run (a handler in check mode), failed, skipped; task_list: run, skip, handler
	Elapsed  float64   `json:"elapsed_ms,omitempty"`
	Msg      string    `json:"msg,omitempty"` // log text, error message, skip reason
	Where    string    `json:"where,omitempty"`
	Change   *Change   `json:"change,omitempty"`
	Recap    *Recap    `json:"recap,omitempty"`
	Changes  []Change  `json:"-"`                 // task_end: the task's reported changes, for human output
	Tags     []string  `json:"tags,omitempty"`    // task_list: the task's tags
	On       []string  `json:"on,omitempty"`      // task_list: the guests it targets
	Attempts int       `json:"retries,omitempty"` // task_end: retry() attempts beyond the first
}

// Recap is the end-of-run summary.
type Recap struct {
	Tasks     int           `json:"tasks"`
	OK        int           `json:"ok"`
	Changed   int           `json:"changed"`
	MayChange int           `json:"may_change"`
	Failed    int           `json:"failed"`
	Skipped   int           `json:"skipped"`
	Ignored   int           `json:"ignored"`  // failed tasks whose error the playbook caught with pcall
	Handlers  int           `json:"handlers"` // handlers run (check mode: that would run)
	Retries   int           `json:"retries"`  // retry() attempts beyond the first
	Check     bool          `json:"check"`
	Elapsed   time.Duration `json:"-"`
	ElapsedMS float64       `json:"elapsed_ms"`
}

// Reporter receives the events of a run. Implementations must be safe for
// concurrent use (parallel workers report from several goroutines).
type Reporter interface {
	Event(ev Event)
}

// HumanReporter prints terse Ansible-like lines.
type HumanReporter struct {
	mu       sync.Mutex
	w        *bufio.Writer
	showDiff bool
}

// NewHumanReporter writes to w; showDiff prints unified diffs (check mode, --diff).
func NewHumanReporter(w io.Writer, showDiff bool) *HumanReporter {
	return &HumanReporter{w: bufio.NewWriterSize(w, 32<<10), showDiff: showDiff}
}

func (h *HumanReporter) Event(ev Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch ev.Type {
	case "task_end":
		label := strings.ReplaceAll(ev.Status, "_", " ")
		fmt.Fprintf(h.w, "%-10s %s", label, ev.Task)
		if ev.Elapsed >= 1 {
			fmt.Fprintf(h.w, "  (%s)", fmtMS(ev.Elapsed))
		}
		if ev.Attempts > 0 {
			fmt.Fprintf(h.w, "  [%d retries]", ev.Attempts)
		}
		h.w.WriteByte('\n')
		for _, c := range ev.Changes {
			c := c
			if c.Status == StatusOK {
				continue
			}
			mark := "~"
			if c.Status == StatusMayChange {
				mark = "?"
			}
			fmt.Fprintf(h.w, "  %s %s.%s %s", mark, c.Module, c.Action, c.Subject)
			if c.Detail != "" {
				fmt.Fprintf(h.w, " (%s)", c.Detail)
			}
			h.w.WriteByte('\n')
			if h.showDiff && c.Diff != "" {
				for _, l := range strings.SplitAfter(strings.TrimRight(c.Diff, "\n"), "\n") {
					h.w.WriteString("    " + strings.TrimRight(l, "\n") + "\n")
				}
			}
		}
		if ev.Msg != "" {
			fmt.Fprintf(h.w, "  %s\n", ev.Msg)
		}
	case "task_list":
		fmt.Fprintf(h.w, "%-7s %s", ev.Status, ev.Task)
		if len(ev.Tags) > 0 {
			fmt.Fprintf(h.w, "  tags=%s", strings.Join(ev.Tags, ","))
		}
		if len(ev.On) > 0 {
			fmt.Fprintf(h.w, "  on=%s", strings.Join(ev.On, ","))
		}
		if ev.Msg != "" {
			fmt.Fprintf(h.w, "  (%s)", ev.Msg)
		}
		h.w.WriteByte('\n')
	case "log":
		fmt.Fprintf(h.w, "%s\n", ev.Msg)
		h.w.Flush()
	case "error":
		fmt.Fprintf(h.w, "error: %s\n", ev.Msg)
	case "recap":
		r := ev.Recap
		mode := ""
		if r.Check {
			mode = " (check mode: nothing was changed)"
		}
		fmt.Fprintf(h.w, "\nRECAP  ok=%d changed=%d", r.OK, r.Changed)
		if r.Check || r.MayChange > 0 {
			fmt.Fprintf(h.w, " may_change=%d", r.MayChange)
		}
		fmt.Fprintf(h.w, " failed=%d skipped=%d", r.Failed, r.Skipped)
		if r.Ignored > 0 {
			fmt.Fprintf(h.w, " ignored=%d", r.Ignored)
		}
		if r.Handlers > 0 {
			fmt.Fprintf(h.w, " handlers=%d", r.Handlers)
		}
		if r.Retries > 0 {
			fmt.Fprintf(h.w, " retries=%d", r.Retries)
		}
		fmt.Fprintf(h.w, "  elapsed %s%s\n", fmtMS(r.ElapsedMS), mode)
	}
	if ev.Type != "task_start" && ev.Type != "change" {
		h.w.Flush()
	}
}

func fmtMS(ms float64) string {
	switch {
	case ms < 1000:
		return fmt.Sprintf("%.0fms", ms)
	case ms < 60000:
		return fmt.Sprintf("%.2fs", ms/1000)
	}
	return time.Duration(ms * float64(time.Millisecond)).Round(time.Second).String()
}

// JSONReporter writes one JSON object per event.
type JSONReporter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

// NewJSONReporter writes JSON lines to w.
func NewJSONReporter(w io.Writer) *JSONReporter {
	return &JSONReporter{enc: json.NewEncoder(w)}
}

func (j *JSONReporter) Event(ev Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.enc.Encode(ev)
}

// Tee sends every event to several reporters.
type Tee []Reporter

func (t Tee) Event(ev Event) {
	for _, r := range t {
		r.Event(ev)
	}
}

// Interface guards
var (
	_ Reporter = (*HumanReporter)(nil)
	_ Reporter = (*JSONReporter)(nil)
	_ Reporter = Tee(nil)
)
