package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine/lx"
)

type taskRun struct {
	name     string
	start    time.Time
	changes  []Change
	skipped  string
	failure  *lx.Error
	tags     []string // its own and its enclosing tasks'
	notify   []string // handlers to queue if the task changes something
	attempts int      // retry() attempts beyond the first
	handler  bool     // a handler's run
}

// errSkip is raised by skip() and caught by the enclosing task.
type errSkip struct{ reason string }

func (e *errSkip) Error() string { return "skip: " + e.reason }

func (e *Engine) installGlobals() {
	L := e.L
	L.SetGlobal("task", L.NewFunction(e.luaTask))
	L.SetGlobal("skip", L.NewFunction(func(L *lua.LState) int {
		lx.Raise(L, &errSkip{reason: L.OptString(1, "")})
		return 0
	}))
	L.SetGlobal("parallel", L.NewFunction(e.luaParallel))
	L.SetGlobal("retry", L.NewFunction(e.luaRetry))
	L.SetGlobal("log", L.NewFunction(func(L *lua.LState) int {
		e.rep.Event(Event{Type: "log", Time: time.Now(), Msg: joinArgs(L)})
		return 0
	}))
	L.SetGlobal("print", L.NewFunction(func(L *lua.LState) int {
		fmt.Fprintln(e.opts.Stdout, joinArgs(L))
		return 0
	}))
	L.SetGlobal("check_mode", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LBool(e.opts.Check))
		return 1
	}))
	vars := L.NewTable()
	for k, v := range e.opts.Vars {
		vars.RawSetString(k, lx.FromGo(L, v))
	}
	L.SetGlobal("vars", vars)
}

func joinArgs(L *lua.LState) string {
	parts := make([]string, L.GetTop())
	for i := range parts {
		// tostring(): a tinyfarm error's __tostring gives its message.
		parts[i] = L.ToStringMeta(L.Get(i + 1)).String()
	}
	return strings.Join(parts, "\t")
}

// currentTask finds the task running on L or on the thread that started L.
// Callers hold e.mu.
func (e *Engine) currentTask(L *lua.LState) *taskRun {
	for th := L; th != nil; th = e.parent[th] {
		if t := e.tasks[th]; t != nil {
			return t
		}
	}
	return nil
}

func (e *Engine) report(L *lua.LState, c Change) {
	e.mu.Lock()
	d := e.blocked[L]
	if from, ok := e.blockFrom[L]; ok {
		// Reported from inside Block: the time up to here is this
		// report's, the rest the next one's.
		now := time.Now()
		d += now.Sub(from)
		e.blockFrom[L] = now
	}
	if d > 0 {
		c.ElapsedMS = float64(d.Microseconds()) / 1000
		delete(e.blocked, L)
	}
	if e.opts.Check && c.Status == StatusChanged && c.Subject != "" && e.pendingLocked(c.Subject) {
		// Planned against a state an earlier would-be change alters first.
		c.Status = StatusMayChange
		if c.Detail == "" {
			c.Detail = "depends on an earlier change"
		}
	}
	if e.opts.Check && c.Status != StatusOK && c.Subject != "" {
		e.pending[c.Subject] = true
	}
	t := e.currentTask(L)
	if t != nil {
		t.changes = append(t.changes, c)
		e.mu.Unlock()
		e.rep.Event(Event{Type: "change", Time: time.Now(), Task: t.name, Change: &c})
		return
	}
	e.mu.Unlock()
	// A call outside any task is a one-call task of its own, like an
	// Ansible task is one module call. Its change is an event too (with
	// no task): the JSON stream, which leaves a task_end's changes out,
	// carries every change, as a far run sends them to cluster.run.
	e.rep.Event(Event{Type: "change", Time: time.Now(), Change: &c})
	name := strings.TrimSpace(c.Module + "." + c.Action + " " + c.Subject)
	t = &taskRun{name: name, start: time.Now(), changes: []Change{c}}
	e.finishTask(t, nil)
}

// luaTask is task(name, fn) and task(name, {tags, on}, fn).
func (e *Engine) luaTask(L *lua.LState) int {
	name := L.CheckString(1)
	var opts taskOpts
	fnArg := 2
	if L.Get(2).Type() != lua.LTFunction {
		lx.Opts(L, 2, "task "+name, &opts)
		fnArg = 3
	}
	fn := L.CheckFunction(fnArg)
	on, err := targetNames(L, opts.On)
	if err != nil {
		lx.Raisef(L, "task %s: %v", name, err)
	}
	e.mu.Lock()
	var outer []string
	if t := e.currentTask(L); t != nil {
		outer = t.tags
	}
	tags := unionTags(opts.Tags, outer)
	reason := e.skipReasonLocked(name, tags, on)
	e.mu.Unlock()
	if e.opts.ListTasks {
		status := "run"
		if reason != "" {
			status = "skip"
		}
		e.rep.Event(Event{Type: "task_list", Time: time.Now(), Task: name, Status: status, Msg: reason, Tags: tags, On: on})
		return 0
	}
	t := &taskRun{name: name, start: time.Now(), tags: tags}
	if reason != "" {
		t.skipped = reason
		e.rep.Event(Event{Type: "task_start", Time: t.start, Task: name})
		e.finishTask(t, nil)
		return 0
	}
	top := L.GetTop()
	if le := e.runTask(L, t, fn); le != nil {
		L.Error(lx.NewErrorValue(L, le), 0)
		return 0
	}
	return L.GetTop() - top
}

// runTask calls fn as task t on L and reports it; fn's results stay on the
// stack. A failure is returned, not raised, so Go callers outside any Lua
// call (the end-of-play handler flush) can use it too.
func (e *Engine) runTask(L *lua.LState, t *taskRun, fn *lua.LFunction) *lx.Error {
	e.mu.Lock()
	prev := e.tasks[L]
	e.tasks[L] = t
	e.mu.Unlock()
	e.rep.Event(Event{Type: "task_start", Time: t.start, Task: t.name})

	top := L.GetTop()
	L.Push(fn)
	err := L.PCall(0, lua.MultRet, nil)

	e.mu.Lock()
	e.tasks[L] = prev
	e.mu.Unlock()

	if err != nil {
		L.SetTop(top)
		le := e.toLxError(err)
		var skip *errSkip
		if errors.As(le, &skip) {
			t.skipped = skip.reason
			if t.skipped == "" {
				t.skipped = "skipped"
			}
			e.finishTask(t, nil)
			return nil
		}
		t.failure = le
		e.finishTask(t, le)
		return le
	}
	e.finishTask(t, nil)
	return nil
}

// toLxError turns whatever a pcall caught into a tinyfarm error value, so a
// failure keeps one identity from the task that failed to the end of the
// run (the recap tells a caught failure from an uncaught one by it).
func toLxError(err error) *lx.Error { return toLxErrorHint(err, nil) }

// toLxError is toLxError with the engine's hints for plain Lua errors.
func (e *Engine) toLxError(err error) *lx.Error { return toLxErrorHint(err, e.hintFor) }

func toLxErrorHint(err error, hint func(string) string) *lx.Error {
	var ae *lua.ApiError
	if errors.As(err, &ae) {
		if le, ok := lx.ErrorFromValue(ae.Object); ok {
			return le
		}
		if ae.Object != nil {
			msg := lx.ToStringValue(ae.Object)
			if hint != nil {
				msg = hint(msg)
			}
			return &lx.Error{Err: errors.New(msg)}
		}
	}
	return &lx.Error{Err: err}
}

func (e *Engine) finishTask(t *taskRun, failure *lx.Error) {
	status := StatusOK
	for _, c := range t.changes {
		if c.Status == StatusChanged {
			status = StatusChanged
		} else if c.Status == StatusMayChange && status == StatusOK {
			status = StatusMayChange
		}
	}
	label := string(status)
	msg := ""
	switch {
	case failure != nil:
		label, msg = "failed", failure.Error()
	case t.skipped != "":
		label, msg = "skipped", t.skipped
		if msg == "skipped" {
			msg = ""
		}
	}
	if t.handler && e.opts.Check && label != "failed" && label != "skipped" {
		label = "would_run"
	}
	e.queueNotified(t, status)
	e.mu.Lock()
	e.recap.Tasks++
	e.recap.Retries += t.attempts
	if t.handler && label != "skipped" {
		e.recap.Handlers++
	}
	switch label {
	case "ok":
		e.recap.OK++
	case "changed":
		e.recap.Changed++
	case "may_change", "would_run":
		e.recap.MayChange++
	case "failed":
		e.recap.Failed++
		e.failures = append(e.failures, failure)
	case "skipped":
		e.recap.Skipped++
	}
	e.mu.Unlock()
	e.rep.Event(Event{
		Type: "task_end", Time: time.Now(), Task: t.name, Status: label,
		Elapsed: float64(time.Since(t.start).Microseconds()) / 1000, Msg: msg, Changes: t.changes,
		Attempts: t.attempts,
	})
}

// settle decides, at the end of a run, which failed tasks the playbook
// recovered from (pcall): those are "ignored", not "failed".
func (e *Engine) settle(runErr error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	uncaught := 0
	for _, f := range e.failures {
		if runErr != nil && errors.Is(runErr, f) {
			uncaught++
		}
	}
	e.recap.Ignored += e.recap.Failed - uncaught
	e.recap.Failed = uncaught
	if runErr != nil && uncaught == 0 {
		e.recap.Failed++ // failed outside any task
	}
	e.failures = nil
}

type parallelOpts struct {
	Forks int   `lua:"forks" default:"--forks (8)" doc:"items at once"`
	Limit *bool `lua:"limit" default:"true" doc:"false: ignore --limit for these items"`
}

// luaParallel runs fn(item, index) for every item of a list, at most
// --forks at a time, each on its own Lua thread, and returns the results in
// item order. All items run even when some fail; then the failures are
// raised together.
func (e *Engine) luaParallel(L *lua.LState) int {
	items := L.CheckTable(1)
	fn := L.CheckFunction(2)
	opts := parallelOpts{Forks: e.opts.Forks}
	lx.Opts(L, 3, "parallel", &opts)
	if opts.Forks < 1 {
		lx.Raisef(L, "parallel: forks must be at least 1, got %d", opts.Forks)
	}
	idx := e.parallelItems(L, items, opts.Limit == nil || *opts.Limit)
	n := len(idx)
	results := make([]lua.LValue, n)
	failures := make([]*lx.Error, n)
	_ = e.env.Block(L, func(ctx context.Context) error {
		sem := make(chan struct{}, opts.Forks)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				failures[i] = &lx.Error{Err: fmt.Errorf("parallel item %d: %w", idx[i], ctx.Err())}
				continue
			}
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				e.vm.Lock()
				defer e.vm.Unlock()
				th, cancel := L.NewThread()
				if cancel != nil {
					defer cancel()
				}
				e.mu.Lock()
				e.parent[th] = L
				e.mu.Unlock()
				defer func() {
					e.mu.Lock()
					delete(e.parent, th)
					delete(e.tasks, th)
					delete(e.blocked, th)
					delete(e.blockFrom, th)
					e.mu.Unlock()
				}()
				err := th.CallByParam(lua.P{Fn: fn, NRet: 1, Protect: true}, items.RawGetInt(idx[i]), lua.LNumber(idx[i]))
				if err != nil {
					failures[i] = e.toLxError(err)
					return
				}
				results[i] = th.Get(-1)
				th.Pop(1)
			}(i)
		}
		wg.Wait()
		return nil
	})
	var errs []error
	for _, f := range failures {
		if f != nil {
			errs = append(errs, f)
		}
	}
	if len(errs) > 0 {
		lx.Raise(L, &parallelError{errs: errs, n: n})
	}
	out := L.CreateTable(n, 0)
	for i, r := range results {
		if r == nil {
			r = lua.LNil
		}
		out.RawSetInt(i+1, r)
	}
	L.Push(out)
	return 1
}

// parallelItems returns the indexes of the items parallel() runs: all of
// them, or with --limit (unless the call says limit = false) those that are
// not guests or guest names outside it; each one left out is reported as a
// skipped task.
func (e *Engine) parallelItems(L *lua.LState, items *lua.LTable, limit bool) []int {
	lim := e.opts.Select.Limit
	var idx []int
	for i := 1; i <= items.Len(); i++ {
		if name, ok := itemName(L, items.RawGetInt(i)); ok && limit && !lim.Match(name) {
			t := &taskRun{name: "parallel item " + name, start: time.Now(), skipped: name + " outside --limit " + lim.String()}
			if e.opts.ListTasks {
				e.rep.Event(Event{Type: "task_list", Time: t.start, Task: t.name, Status: "skip", Msg: t.skipped, On: []string{name}})
			} else {
				e.rep.Event(Event{Type: "task_start", Time: t.start, Task: t.name})
				e.finishTask(t, nil)
			}
			continue
		}
		idx = append(idx, i)
	}
	return idx
}

// parallelError carries every failed item; errors.Is/As see each of them.
type parallelError struct {
	errs []error
	n    int
}

func (p *parallelError) Error() string {
	msgs := make([]string, len(p.errs))
	for i, e := range p.errs {
		msgs[i] = strings.TrimSpace(e.Error())
	}
	return fmt.Sprintf("parallel: %d of %d items failed:\n  %s", len(p.errs), p.n, strings.Join(msgs, "\n  "))
}

func (p *parallelError) Unwrap() []error { return p.errs }
