// Package engine is tinyfarm's Lua host: it preloads the stdlib modules,
// runs playbooks and REPL chunks, tracks tasks for the recap, carries check
// mode to the modules and turns Lua failures into *ScriptError values that
// keep the Go error underneath.
//
// # Concurrency: one VM, a VM lock, one Lua thread per parallel worker
//
// A gopher-lua state is not goroutine-safe. parallel(items, fn) therefore
// runs each item on its own Lua thread (LState.NewThread: separate stacks,
// shared globals) in its own goroutine, and every goroutine must hold the
// engine's VM lock while it touches Lua. Module functions release the lock
// around blocking Go work (Env.Block: an SSH command, a download, a guest
// boot, a sleep), so workers overlap exactly where the time goes, while Lua
// code itself runs one thread at a time. This is the design of CPython's
// GIL, chosen over per-worker LStates because a worker's fn is a closure
// over the playbook's locals, which cannot be copied into another state.
// Consequence for module authors: never touch *lua.LState inside the func
// given to Env.Block, and never call Block while holding another lock that
// Lua code might need. coroutine.yield across a parallel worker boundary
// is not supported.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Options configure an Engine. The zero value runs with no modules, human
// output to os.Stdout and 8 forks.
type Options struct {
	// Modules are preloaded so require(name) works. Default: none.
	Modules []Module
	// Check turns on check mode: modules report what they would change
	// and change nothing.
	Check bool
	// Diff prints unified diffs of changed text files also outside check mode.
	Diff bool
	// Vars becomes the global table `vars`. Default: empty.
	Vars map[string]any
	// Forks bounds parallel(). Default 8.
	Forks int
	// Path lists extra require directories (-I, then $TINYFARM_PATH), searched
	// after the playbook's own directory.
	Path []string
	// Lib is the built-in recipe tree (playbooks/ of the install), searched
	// last: require("lib.nginx") finds lib/nginx.lua in it. Optional.
	Lib fs.FS
	// StateDir is tinyfarm's state directory, handed to modules.
	StateDir string
	// Reporter receives task and change events. Default: human output on
	// Stdout.
	Reporter Reporter
	// Stdout receives print() output. Default os.Stdout.
	Stdout io.Writer
	// Select chooses the tasks that run (--tags, --skip-tags,
	// --start-at-task, --limit).
	Select Selection
	// ListTasks reports every task as a task_list event instead of running
	// it (--list-tasks); the rest of the playbook runs in check mode.
	ListTasks bool
	// ForceHandlers flushes the queued handlers also after a failure.
	ForceHandlers bool
}

// Engine is one Lua VM with tinyfarm's globals and modules: one playbook run
// or one REPL session. Methods are safe to call from one goroutine at a time.
type Engine struct {
	opts  Options
	L     *lua.LState
	env   *Env
	vm    sync.Mutex // the VM lock; see the package doc
	rep   Reporter
	start time.Time

	pathDir   string // the playbook's directory, head of the require path
	libLoader bool

	mu       sync.Mutex // guards the fields below
	tasks    map[*lua.LState]*taskRun
	parent   map[*lua.LState]*lua.LState
	pending  map[string]bool
	recap    Recap
	failures []*lx.Error
	closers  []func() // Env.OnClose, run by Close in reverse order
	started  bool     // --start-at-task found its task

	handlers    []*handlerDef   // in definition order
	queued      map[string]bool // notified, not run yet
	carried     map[string]bool // pending from an earlier run, not defined yet
	pendingPath string          // the state dir's record of queued handlers
	playbookAbs string
	pendMu      sync.Mutex // serializes writes of pendingPath
	pendErr     error      // the last write of pendingPath failed (under pendMu)

	sources map[string]string             // chunk name -> source, for error hints
	blocked map[*lua.LState]time.Duration // Env.Block time not yet reported, per thread
	// blockFrom is when a thread's running Block (or its last report from
	// inside it) began: a report inside Block counts the time up to it.
	blockFrom map[*lua.LState]time.Time
}

// New makes an Engine with the standard Lua libraries, tinyfarm's globals
// and the given modules preloaded.
func New(opts Options) (*Engine, error) {
	if opts.Forks <= 0 {
		opts.Forks = 8
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.ListTasks {
		opts.Check = true // the playbook runs only to find its tasks
	}
	if opts.Reporter == nil {
		opts.Reporter = NewHumanReporter(opts.Stdout, opts.Check || opts.Diff)
	}
	if opts.ListTasks {
		opts.Reporter = listOnly{opts.Reporter}
	}
	e := &Engine{
		opts:      opts,
		L:         lua.NewState(lua.Options{IncludeGoStackTrace: false}),
		rep:       opts.Reporter,
		start:     time.Now(),
		tasks:     map[*lua.LState]*taskRun{},
		parent:    map[*lua.LState]*lua.LState{},
		pending:   map[string]bool{},
		queued:    map[string]bool{},
		carried:   map[string]bool{},
		sources:   map[string]string{},
		blocked:   map[*lua.LState]time.Duration{},
		blockFrom: map[*lua.LState]time.Time{},
	}
	e.env = &Env{Check: opts.Check, StateDir: opts.StateDir, Stdout: opts.Stdout, eng: e}
	e.installGlobals()
	e.installHandlerGlobals()
	seen := map[string]bool{}
	for _, m := range opts.Modules {
		if seen[m.Name()] {
			return nil, fmt.Errorf("engine: module %q registered twice", m.Name())
		}
		seen[m.Name()] = true
		e.L.PreloadModule(m.Name(), m.Loader(e.env))
	}
	return e, nil
}

// Env is the per-run environment handed to module loaders.
func (e *Engine) Env() *Env { return e.env }

// State exposes the Lua state, for the REPL's completion and for tests.
// Callers must not use it while a run is in progress.
func (e *Engine) State() *lua.LState { return e.L }

// Close runs the Env.OnClose functions, last registered first, then
// releases the Lua state.
func (e *Engine) Close() {
	e.mu.Lock()
	fns := e.closers
	e.closers = nil
	e.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	e.L.Close()
}

// RunFile runs the playbook at path. The playbook's directory heads the
// require path. A failure comes back as *ScriptError.
func (e *Engine) RunFile(ctx context.Context, path string) error {
	src, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return &UsageError{Err: fmt.Errorf("playbook %s: no such file", path)}
		}
		return &UsageError{Err: fmt.Errorf("playbook %s: %w", path, err)}
	}
	dir, _ := filepath.Abs(filepath.Dir(path))
	e.setPath(dir)
	abs, _ := filepath.Abs(path)
	e.loadPending(abs)
	_, err = e.exec(ctx, string(src), displayName(path), false)
	return e.endOfPlay(ctx, err)
}

// Eval runs one chunk (REPL input) and returns its results. When asExpr is
// set the chunk is tried as "return <chunk>" first, so `1+1` yields 2.
func (e *Engine) Eval(ctx context.Context, chunk, name string, asExpr bool) ([]lua.LValue, error) {
	if e.pathDir == "" {
		wd, _ := os.Getwd()
		e.setPath(wd)
	}
	return e.exec(ctx, chunk, name, asExpr)
}

func (e *Engine) exec(ctx context.Context, src, name string, asExpr bool) ([]lua.LValue, error) {
	var fn *lua.LFunction
	var err error
	if asExpr {
		fn, err = e.L.Load(stringsReader("return "+src), name)
	}
	if !asExpr || err != nil {
		fn, err = e.L.Load(stringsReader(src), name)
	}
	if err != nil {
		return nil, syntaxError(err)
	}
	e.mu.Lock()
	e.sources[name] = src
	e.mu.Unlock()
	e.vm.Lock()
	defer e.vm.Unlock()
	e.L.SetContext(ctx)
	defer e.L.RemoveContext()
	top := e.L.GetTop()
	e.L.Push(fn)
	if err := e.L.PCall(0, lua.MultRet, nil); err != nil {
		e.L.SetTop(top)
		return nil, e.scriptError(ctx, err)
	}
	n := e.L.GetTop() - top
	out := make([]lua.LValue, n)
	for i := 0; i < n; i++ {
		out[i] = e.L.Get(top + 1 + i)
	}
	e.L.SetTop(top)
	return out, nil
}

// IsIncomplete reports whether err is a syntax error at end of input, so a
// REPL should read another line.
func IsIncomplete(err error) bool {
	var se *ScriptError
	if errors.As(err, &se) && se.Syntax {
		var pe *parse.Error
		if errors.As(se.Err, &pe) {
			return pe.Pos.Line == parse.EOF
		}
	}
	return false
}

// Finish ends the run given the error RunFile returned: failures the
// playbook caught with pcall count as ignored, and the recap is reported
// and returned.
func (e *Engine) Finish(runErr error) Recap {
	e.settle(runErr)
	e.mu.Lock()
	r := e.recap
	e.mu.Unlock()
	r.Elapsed = time.Since(e.start)
	r.ElapsedMS = float64(r.Elapsed.Microseconds()) / 1000
	r.Check = e.opts.Check
	e.rep.Event(Event{Type: "recap", Time: time.Now(), Recap: &r})
	return r
}

func displayName(path string) string {
	if filepath.IsAbs(path) {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, path); err == nil && !filepath.IsAbs(rel) && len(rel) < len(path) && rel[0] != '.' {
				return rel
			}
		}
	}
	return filepath.Clean(path)
}
