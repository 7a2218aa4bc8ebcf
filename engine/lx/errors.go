// Package lx is the binding kit shared by every Lua module of tinyfarm: it
// raises Go errors as Lua errors that carry the playbook's file:line, decodes
// option tables strictly, and converts plain values between Go and Lua.
//
// Only engine/... and stdlib/*/lua.go import this package; a module's Go API
// never does.
package lx

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Error kinds, as seen by Lua code in err.kind.
const (
	KindError       = "error"
	KindNotFound    = "not_found"
	KindUnsupported = "unsupported"
	KindTimeout     = "timeout"
	KindCanceled    = "canceled"
	KindInvalid     = "invalid"
)

// Kinder is implemented by errors that know their Lua kind.
type Kinder interface{ Kind() string }

type kinded struct {
	err  error
	kind string
}

func (k *kinded) Error() string { return k.err.Error() }
func (k *kinded) Unwrap() error { return k.err }
func (k *kinded) Kind() string  { return k.kind }

// WithKind tags err with a Lua kind, keeping it unwrappable.
func WithKind(err error, kind string) error {
	if err == nil {
		return nil
	}
	return &kinded{err: err, kind: kind}
}

// KindOf classifies err for Lua: an explicit Kinder wins, then the standard
// sentinels.
func KindOf(err error) string {
	var k Kinder
	switch {
	case errors.As(err, &k):
		return k.Kind()
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return KindTimeout
	case errors.Is(err, fs.ErrNotExist):
		return KindNotFound
	case errors.Is(err, errors.ErrUnsupported):
		return KindUnsupported
	case errors.Is(err, fs.ErrInvalid):
		return KindInvalid
	}
	return KindError
}

// Error is the value a failed tinyfarm call raises in Lua. Msg starts with
// the playbook position ("site.lua:12: "), Err is the Go error underneath.
type Error struct {
	Where   string // "site.lua:12:" or "" when no Lua frame was found
	Err     error
	Callers string // "site.lua:12" when Where is in another file (a recipe): the calling lines
}

func (e *Error) Error() string {
	msg := e.Err.Error()
	if e.Where != "" {
		msg = e.Where + " " + msg
	}
	if e.Callers != "" {
		msg += " (called from " + e.Callers + ")"
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Kind is the Lua-visible classification of the error.
func (e *Error) Kind() string { return KindOf(e.Err) }

const errorTypeName = "tinyfarm.error"

// Where returns the position of the nearest Lua frame ("file:line:"),
// skipping Go frames such as pcall or the module function itself.
func Where(L *lua.LState) string {
	for i := 1; i < 64; i++ {
		w := L.Where(i)
		if w == "" {
			return ""
		}
		if !strings.HasPrefix(w, "[G]") {
			return w
		}
	}
	return ""
}

// Raise raises err as a Lua error positioned at the calling playbook line.
// It does not return.
func Raise(L *lua.LState, err error) {
	// Re-raise a tinyfarm error as is (pcall + error(e) keeps its position);
	// anything else gets the position of the calling playbook line.
	le, ok := err.(*Error)
	if !ok {
		le = &Error{Where: Where(L), Err: err}
		le.Callers = callers(L, le.Where)
	}
	L.Error(NewErrorValue(L, le), 0)
}

// callers lists, for an error positioned in a recipe, the lines in other
// files that led to it (at most 3, nearest first), so a failure inside
// lib/nginx.lua also names the playbook line that called the recipe.
func callers(L *lua.LState, where string) string {
	file := func(w string) string {
		w = strings.TrimSuffix(w, ":")
		if i := strings.LastIndexByte(w, ':'); i > 0 {
			return w[:i]
		}
		return w
	}
	last := file(where)
	var out []string
	for i := 1; i < 64 && len(out) < 3; i++ {
		w := L.Where(i)
		if w == "" {
			break
		}
		if strings.HasPrefix(w, "[G]") || file(w) == last {
			continue
		}
		last = file(w)
		out = append(out, strings.TrimSuffix(w, ":"))
	}
	return strings.Join(out, ", ")
}

// Raisef is Raise with a formatted message of kind "invalid" (bad input).
func Raisef(L *lua.LState, format string, args ...any) {
	Raise(L, WithKind(errorf(format, args...), KindInvalid))
}

// NewErrorValue wraps e as a Lua userdata with msg, kind and cause fields
// and a __tostring that prints msg.
func NewErrorValue(L *lua.LState, e *Error) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = e
	mt := L.NewTypeMetatable(errorTypeName)
	if mt.RawGetString("__index") == lua.LNil {
		mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LString(checkErr(L).Error()))
			return 1
		}))
		mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
			e := checkErr(L)
			switch L.CheckString(2) {
			case "msg":
				L.Push(lua.LString(e.Error()))
			case "kind":
				L.Push(lua.LString(e.Kind()))
			case "cause":
				L.Push(lua.LString(e.Err.Error()))
			case "where":
				L.Push(lua.LString(e.Where))
			default:
				L.Push(lua.LNil)
			}
			return 1
		}))
		mt.RawSetString("__concat", L.NewFunction(func(L *lua.LState) int {
			L.Push(lua.LString(toStr(L.Get(1)) + toStr(L.Get(2))))
			return 1
		}))
	}
	ud.Metatable = mt
	return ud
}

func toStr(v lua.LValue) string {
	if ud, ok := v.(*lua.LUserData); ok {
		if e, ok := ud.Value.(*Error); ok {
			return e.Error()
		}
	}
	return v.String()
}

func checkErr(L *lua.LState) *Error {
	ud := L.CheckUserData(1)
	e, ok := ud.Value.(*Error)
	if !ok {
		L.ArgError(1, "tinyfarm error expected")
	}
	return e
}

// ErrorFromValue recovers the Go error carried by a raised Lua value, if any.
func ErrorFromValue(v lua.LValue) (*Error, bool) {
	ud, ok := v.(*lua.LUserData)
	if !ok {
		return nil, false
	}
	e, ok := ud.Value.(*Error)
	return e, ok
}
