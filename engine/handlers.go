package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// Handlers: handler(name, fn) defines one, notify(name) inside a task
// queues it when that task changes something, and queued handlers run once
// each, in definition order, at flush_handlers() or at the end of the play.
//
// Unlike Ansible's, a queued handler is never lost: the queue is written to
// the state directory whenever it changes (not only at a clean exit, so a
// kill -9 keeps it too), and the next run of the same playbook queues those
// handlers again as soon as it defines them.

type handlerDef struct {
	name string
	fn   *lua.LFunction
}

// pendingFile is what the state directory keeps per playbook.
type pendingFile struct {
	Playbook string    `json:"playbook"`
	Pending  []string  `json:"pending"`
	Since    time.Time `json:"since"`
}

func (e *Engine) installHandlerGlobals() {
	L := e.L
	L.SetGlobal("handler", L.NewFunction(e.luaHandler))
	L.SetGlobal("notify", L.NewFunction(e.luaNotify))
	L.SetGlobal("flush_handlers", L.NewFunction(func(L *lua.LState) int {
		if le := e.flushHandlers(L); le != nil {
			L.Error(lx.NewErrorValue(L, le), 0)
		}
		return 0
	}))
}

// handler(name, fn) defines (or redefines) a handler.
func (e *Engine) luaHandler(L *lua.LState) int {
	name := L.CheckString(1)
	fn := L.CheckFunction(2)
	if e.opts.ListTasks {
		e.rep.Event(Event{Type: "task_list", Time: time.Now(), Task: name, Status: "handler"})
	}
	e.mu.Lock()
	i := slices.IndexFunc(e.handlers, func(h *handlerDef) bool { return h.name == name })
	if i >= 0 {
		e.handlers[i].fn = fn
	} else {
		e.handlers = append(e.handlers, &handlerDef{name: name, fn: fn})
	}
	carried := e.carried[name]
	if carried {
		delete(e.carried, name)
		e.queued[name] = true
	}
	e.mu.Unlock()
	if carried {
		e.env.Logf("handler %s: notified by an earlier run that did not finish; queued", name)
	}
	return 0
}

// notify(name, ...) inside a task queues the named handlers if the task
// changes something (in check mode: would change).
func (e *Engine) luaNotify(L *lua.LState) int {
	var names []string
	for i := 1; i <= L.GetTop(); i++ {
		switch v := L.Get(i).(type) {
		case lua.LString:
			names = append(names, string(v))
		case *lua.LTable:
			names = append(names, lx.StringList(L, i, "notify")...)
		default:
			lx.Raisef(L, "notify: argument #%d: want a handler name, got %s", i, v.Type())
		}
	}
	if len(names) == 0 {
		lx.Raisef(L, "notify: name a handler: notify(\"restart nginx\")")
	}
	e.mu.Lock()
	t := e.currentTask(L)
	var unknown string
	var defined []string
	for _, h := range e.handlers {
		defined = append(defined, h.name)
	}
	for _, n := range names {
		if !slices.Contains(defined, n) {
			unknown = n
			break
		}
	}
	if t != nil && unknown == "" {
		t.notify = append(t.notify, names...)
	}
	e.mu.Unlock()
	switch {
	case unknown != "":
		hint := ""
		if s := nearest(unknown, defined); s != "" {
			hint = fmt.Sprintf(" (did you mean %q?)", s)
		}
		lx.Raisef(L, "notify: no handler %q%s: define it with handler(%q, fn) before the task that notifies it", unknown, hint, unknown)
	case t == nil:
		lx.Raisef(L, "notify %q: outside a task: call notify inside the task whose changes need the handler", names[0])
	}
	return 0
}

// queueNotified queues what t notified when t changed something.
func (e *Engine) queueNotified(t *taskRun, status Status) {
	if len(t.notify) == 0 || status == StatusOK {
		return
	}
	e.mu.Lock()
	for _, n := range t.notify {
		e.queued[n] = true
	}
	e.mu.Unlock()
	e.savePending()
}

// flushHandlers runs the queued handlers, each at most once, in definition
// order (a handler notified by an earlier one in the same flush runs too).
// A failing handler stays queued and its failure is returned.
func (e *Engine) flushHandlers(L *lua.LState) *lx.Error {
	ran := map[string]bool{}
	for {
		e.mu.Lock()
		var next *handlerDef
		for _, h := range e.handlers {
			if e.queued[h.name] && !ran[h.name] {
				next = h
				break
			}
		}
		e.mu.Unlock()
		if next == nil {
			return nil
		}
		ran[next.name] = true
		t := &taskRun{name: "handler " + next.name, start: time.Now(), handler: true}
		if e.opts.Check {
			// Check mode says what would run; the handler's effect depends
			// on changes that were not made.
			e.rep.Event(Event{Type: "task_start", Time: t.start, Task: t.name})
			e.finishTask(t, nil)
		} else {
			top := L.GetTop()
			le := e.runTask(L, t, next.fn)
			L.SetTop(top)
			if le != nil {
				return le
			}
		}
		e.mu.Lock()
		delete(e.queued, next.name)
		e.mu.Unlock()
		e.savePending()
	}
}

// loadPending points the engine at the pending-handler record of the
// playbook at abs and reads what an earlier run left queued.
func (e *Engine) loadPending(abs string) {
	if e.opts.StateDir == "" {
		return
	}
	sum := sha256.Sum256([]byte(abs))
	base := strings.TrimSuffix(filepath.Base(abs), filepath.Ext(abs))
	e.pendingPath = filepath.Join(e.opts.StateDir, "handlers", base+"-"+hex.EncodeToString(sum[:6])+".json")
	e.playbookAbs = abs
	b, err := os.ReadFile(e.pendingPath)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			e.env.Logf("warning: pending handlers %s: %v", e.pendingPath, err)
		}
		return
	}
	var pf pendingFile
	if err := json.Unmarshal(b, &pf); err != nil {
		e.env.Logf("warning: pending handlers %s: %v (ignored)", e.pendingPath, err)
		return
	}
	e.mu.Lock()
	for _, n := range pf.Pending {
		e.carried[n] = true
	}
	e.mu.Unlock()
}

// savePending writes the queued (and carried, not yet defined) handlers to
// the state directory, or removes the record when none are left. Check
// mode changes nothing.
func (e *Engine) savePending() {
	if e.pendingPath == "" || e.opts.Check {
		return
	}
	e.pendMu.Lock()
	defer e.pendMu.Unlock()
	names := e.PendingHandlers()
	if len(names) == 0 {
		if err := os.Remove(e.pendingPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			e.env.Logf("warning: pending handlers: %v", err)
		}
		return
	}
	b, _ := json.MarshalIndent(pendingFile{Playbook: e.playbookAbs, Pending: names, Since: time.Now().UTC()}, "", "  ")
	e.pendErr = writeAtomic(e.pendingPath, append(b, '\n'))
	if e.pendErr != nil {
		e.env.Logf("warning: pending handlers: %v", e.pendErr)
	}
}

// PendingHandlers lists the handlers queued but not run yet, including
// those an earlier run left that this run has not defined (yet).
func (e *Engine) PendingHandlers() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, h := range e.handlers {
		if e.queued[h.name] {
			out = append(out, h.name)
		}
	}
	for n := range e.carried {
		out = append(out, n)
	}
	slices.Sort(out[len(out)-len(e.carried):])
	return out
}

// endOfPlay runs after the playbook's chunk: it flushes the handlers (also
// after a failure with --force-handlers), says which stay pending, and
// checks --start-at-task found its task.
func (e *Engine) endOfPlay(ctx context.Context, runErr error) error {
	var se *ScriptError
	if errors.As(runErr, &se) && se.Syntax || e.opts.ListTasks {
		return runErr
	}
	if runErr == nil || (e.opts.ForceHandlers && ctx.Err() == nil) {
		e.vm.Lock()
		e.L.SetContext(ctx)
		le := e.flushHandlers(e.L)
		e.L.RemoveContext()
		e.vm.Unlock()
		if le != nil && runErr == nil {
			se := &ScriptError{Kind: le.Kind(), Err: le, Msg: le.Error()}
			fillPos(se, se.Msg)
			runErr = se
		}
	}
	if runErr == nil {
		e.mu.Lock()
		var gone []string
		for n := range e.carried {
			gone = append(gone, n)
			delete(e.carried, n)
		}
		e.mu.Unlock()
		if len(gone) > 0 {
			slices.Sort(gone)
			e.env.Logf("warning: handlers %s, pending from an earlier run, are no longer defined: dropped", strings.Join(gone, ", "))
			e.savePending()
		}
	}
	if p := e.PendingHandlers(); len(p) > 0 && !e.opts.Check && e.pendingPath != "" {
		e.pendMu.Lock()
		perr := e.pendErr
		e.pendMu.Unlock()
		if perr != nil {
			e.env.Logf("handlers pending: %s (NOT kept for the next run: %v; --force-handlers runs them after a failure)", strings.Join(p, ", "), perr)
		} else {
			e.env.Logf("handlers pending: %s (kept in %s; the next run of this playbook runs them, --force-handlers runs them after a failure)",
				strings.Join(p, ", "), e.pendingPath)
		}
	}
	if runErr == nil && e.opts.Select.StartAt != "" && !e.started {
		return &UsageError{Err: fmt.Errorf("--start-at-task %q: no task by that name ran or was skipped (names are exact or globs)", e.opts.Select.StartAt)}
	}
	return runErr
}

// writeAtomic writes data to path atomically (fsutil.WriteFileAtomic),
// creating its directory first.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, fsutil.SpaceError(dir, int64(len(data)), err))
	}
	return fsutil.WriteFileAtomic(path, data, 0o600)
}

// nearest is the candidate closest to s within two edits, or "".
func nearest(s string, candidates []string) string {
	best, hint := 3, ""
	for _, c := range candidates {
		if d := lx.Distance(s, c); d < best {
			best, hint = d, c
		}
	}
	return hint
}
