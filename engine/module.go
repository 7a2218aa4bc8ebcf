package engine

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Module is one Lua module of the stdlib. The engine preloads it, so
// require(Name()) calls the loader on first use.
type Module interface {
	Name() string
	Loader(env *Env) lua.LGFunction
}

// ModuleFunc adapts a name and a loader constructor to Module.
type ModuleFunc struct {
	ModName string
	Open    func(env *Env) lua.LGFunction
	DocList []Doc // for `tinyfarm doc`; optional
}

func (m ModuleFunc) Name() string                   { return m.ModName }
func (m ModuleFunc) Loader(env *Env) lua.LGFunction { return m.Open(env) }
func (m ModuleFunc) Docs() []Doc                    { return m.DocList }

// Env is what a module sees of the run: check mode, state dir, the
// reporting channel and the VM lock. One Env per Engine.
type Env struct {
	// Check is true in check mode: mutating calls report and change nothing.
	Check bool
	// StateDir is tinyfarm's state directory.
	StateDir string
	// Stdout is where print-like output goes.
	Stdout io.Writer
	eng    *Engine
}

// Status is the outcome of one module call.
type Status string

const (
	StatusOK        Status = "ok"         // nothing to change
	StatusChanged   Status = "changed"    // changed (or, in check mode, would change)
	StatusMayChange Status = "may_change" // check mode: depends on an earlier would-be change, or cannot be known without doing it
)

// Change is one module call's report.
type Change struct {
	Module  string `json:"module"`           // "host"
	Action  string `json:"action"`           // "write"
	Subject string `json:"subject"`          // what it acted on: a path, "guest:web1"...
	Status  Status `json:"status"`           // ok, changed, may_change
	Diff    string `json:"diff,omitempty"`   // unified diff for text files
	Detail  string `json:"detail,omitempty"` // one line of extra context
	// ElapsedMS is the time the call spent in blocking work (Env.Block)
	// since the previous report on its thread: what --profile ranks.
	ElapsedMS float64 `json:"elapsed_ms,omitempty"`
}

// Report records a call's outcome against the running task (or as a
// one-call task of its own when no task is running). In check mode a
// changed subject becomes pending, so later calls on it can say may_change.
// Call it while holding the VM, or, while Block's fn runs, from any
// goroutine for the thread L that Block released: so a long call (a far
// playbook) reports its changes as they happen. Report touches no Lua
// state, only the engine's records (under their own lock), and L's task
// cannot change while L is blocked.
func (env *Env) Report(L *lua.LState, c Change) {
	env.eng.report(L, c)
}

// Pending reports whether, in check mode, an earlier call would have changed
// subject or something it lives under or contains ("/etc" covers
// "/etc/motd" and the reverse). Subjects compare as slash paths after a
// "kind:" prefix.
func (env *Env) Pending(subject string) bool {
	if !env.Check {
		return false
	}
	e := env.eng
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pendingLocked(subject)
}

// pendingLocked is Pending for callers holding e.mu.
func (e *Engine) pendingLocked(subject string) bool {
	for p := range e.pending {
		if related(p, subject) {
			return true
		}
	}
	return false
}

func related(a, b string) bool {
	if a == b {
		return true
	}
	pa, sa := splitSubject(a)
	pb, sb := splitSubject(b)
	if pa != pb || sa == "" || sb == "" {
		return false
	}
	sa, sb = path.Clean(sa), path.Clean(sb)
	return sa == sb || strings.HasPrefix(sb, strings.TrimSuffix(sa, "/")+"/") || strings.HasPrefix(sa, strings.TrimSuffix(sb, "/")+"/")
}

func splitSubject(s string) (kind, p string) {
	if i := strings.Index(s, ":"); i > 0 && !strings.HasPrefix(s, "/") {
		return s[:i], s[i+1:]
	}
	return "", s
}

// Block runs fn with the VM lock released, so parallel workers overlap
// during blocking Go work. fn must not touch L. ctx is the run's context.
func (env *Env) Block(L *lua.LState, fn func(ctx context.Context) error) error {
	ctx := L.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	e := env.eng
	e.vm.Unlock()
	defer e.vm.Lock()
	e.mu.Lock()
	e.blockFrom[L] = time.Now()
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.blocked[L] += time.Since(e.blockFrom[L])
		delete(e.blockFrom, L)
		e.mu.Unlock()
	}()
	return fn(ctx)
}

// Context is the run's context for L (cancelled on Ctrl-C).
func (env *Env) Context(L *lua.LState) context.Context {
	if ctx := L.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// OnClose registers fn to run when the engine closes (the end of the run
// or of the REPL session), after the last Lua call. Modules use it to stop
// what they started for the rest of the run, such as a background server.
// Functions run last registered first and must not touch Lua.
func (env *Env) OnClose(fn func()) {
	e := env.eng
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closers = append(e.closers, fn)
}

// Logf prints a log line through the reporter.
func (env *Env) Logf(format string, args ...any) {
	env.eng.rep.Event(Event{Type: "log", Time: time.Now(), Msg: fmt.Sprintf(format, args...)})
}

// Dir is the playbook's directory (the REPL's working directory), where
// modules resolve the relative paths of files that belong to the playbook,
// such as templates.
func (env *Env) Dir() string { return env.eng.pathDir }
