// Package targetlua turns a Lua value into a [target.Target] for the
// module bindings (tcz.install, persist.*, image.edit callbacks), so that
// every module accepts the same three kinds of target argument:
//
//   - a string: a directory on the host, opened with target.OpenDir
//     (confined with os.Root) and closed after the call;
//   - a userdata whose Value is a target.Target (the target object that
//     image.edit passes to its callback);
//   - a userdata whose Value is a [Provider] (a colinux guest), asked for
//     its target with the run's context.
//
// It is binding code and imports gopher-lua, so it lives in lua.go.
package targetlua

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// Provider is implemented by Lua-visible objects that stand for a target
// without being one (a running guest reached over SSH): Target returns the
// live target. Resolve never closes what a Provider returns; the provider
// owns it.
type Provider interface {
	Target(ctx context.Context) (target.Target, error)
}

// Planner is optionally implemented by a Provider whose target may not
// exist yet in check mode (a guest the same playbook would start): check
// mode plans against what PlanTarget returns instead.
type Planner interface {
	PlanTarget(ctx context.Context) (target.Target, error)
}

// Describer is optionally implemented by a target (or a Provider) to name
// it in change reports ("image:/srv/web1.img", "guest:web1").
type Describer interface {
	Describe() string
}

// ErrNotTarget is returned when a value cannot be a target.
var ErrNotTarget = errors.New("not a target")

// Resolve turns v into a target. The returned cleanup releases what
// Resolve itself opened (a host directory) and must always be called; it
// is a no-op for targets owned by someone else. A string is a host
// directory: it must exist (a missing one is a not_found error).
func Resolve(L *lua.LState, v lua.LValue, env *engine.Env) (target.Target, func(), error) {
	nop := func() {}
	switch x := v.(type) {
	case lua.LString:
		p := string(x)
		if p == "" {
			return nil, nop, lx.WithKind(fmt.Errorf("target: empty path: %w", ErrNotTarget), lx.KindInvalid)
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, nop, fmt.Errorf("target %s: %w", p, err)
		}
		if !fi.IsDir() {
			return nil, nop, lx.WithKind(fmt.Errorf("target %s: not a directory: %w", p, ErrNotTarget), lx.KindInvalid)
		}
		d, err := target.OpenDir(p, target.DirOptions{AllowDevices: os.Geteuid() == 0})
		if err != nil {
			return nil, nop, err
		}
		return d, func() { d.Close() }, nil
	case *lua.LUserData:
		switch u := x.Value.(type) {
		case target.Target:
			return u, nop, nil
		case Provider:
			get := u.Target
			if pl, ok := u.(Planner); ok && env.Check {
				get = pl.PlanTarget
			}
			t, err := get(env.Context(L))
			if err != nil {
				return nil, nop, fmt.Errorf("target: %w", err)
			}
			return t, nop, nil
		}
	}
	return nil, nop, lx.WithKind(fmt.Errorf("target: want a directory path, an image target or a guest, got %s: %w", v.Type(), ErrNotTarget), lx.KindInvalid)
}

// Check is Resolve at stack index n, raising on failure; fn names the
// calling function in the message ("tcz.install").
func Check(L *lua.LState, n int, env *engine.Env, fn string) (target.Target, func()) {
	t, done, err := Resolve(L, L.Get(n), env)
	if err != nil {
		lx.Raise(L, fmt.Errorf("%s: argument #%d: %w", fn, n, err))
	}
	return t, done
}

// Subject names file inside t for engine.Change.Subject, so that check
// mode's pending tracking relates calls on the same file: a host
// directory gives the host path ("/srv/root/opt/bootlocal.sh"), a
// [Describer] gives "<description>/<file>", anything else "target:<file>".
func Subject(t target.Target, file string) string {
	file = strings.TrimLeft(file, "/")
	if d, ok := t.(interface{ Path() string }); ok {
		return filepath.Join(d.Path(), file)
	}
	if d, ok := t.(Describer); ok {
		return strings.TrimRight(d.Describe(), "/") + "/" + file
	}
	return "target:" + file
}

// FileOptions describe a whole-file write.
type FileOptions struct {
	Mode     fs.FileMode
	UID, GID int
	Module   string // for the change report: "colinux", "template"
	Action   string // "write", "template"
	Subject  string // default Subject(t, path)
}

// WriteFile makes path in t hold exactly content with opts.Mode: it reads
// what is there, reports ok when equal, changed (with a unified diff)
// otherwise, and in check mode writes nothing. The write is atomic (the
// target's Apply). It raises on failure and returns whether it changed.
func WriteFile(L *lua.LState, env *engine.Env, t target.Target, path string, content []byte, opts FileOptions) bool {
	var res target.PutResult
	err := env.Block(L, func(ctx context.Context) (err error) {
		res, err = target.PutFile(ctx, t, path, content, opts.Mode, opts.UID, opts.GID, env.Check)
		return err
	})
	if err != nil {
		lx.Raise(L, fmt.Errorf("%s.%s %s: %w", opts.Module, opts.Action, path, err))
	}
	subject := opts.Subject
	if subject == "" {
		subject = Subject(t, path)
	}
	ReportPut(L, env, opts.Module, opts.Action, subject, res)
	return res.Changed
}

// ReportPut reports a target.PutResult as one change.
func ReportPut(L *lua.LState, env *engine.Env, module, action, subject string, res target.PutResult) {
	ch := engine.Change{Module: module, Action: action, Subject: subject, Status: engine.StatusOK}
	if res.Changed {
		ch.Status, ch.Diff, ch.Detail = engine.StatusChanged, res.Diff, res.Detail
	}
	env.Report(L, ch)
}
