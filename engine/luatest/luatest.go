// Package luatest runs Lua test files the way gopher-lua-libs does: every
// global function whose name starts with "Test" becomes a Go subtest and
// gets a `t` object with t:log, t:error, t:fatal, t:skip, t:name and
// t:tempdir.
package luatest

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Run loads file into a fresh engine built from opts and runs its Test*
// functions as subtests. Reporter output goes to the test log.
func Run(t *testing.T, file string, opts engine.Options) {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Reporter == nil {
		opts.Reporter = engine.NewHumanReporter(logWriter{t}, true)
	}
	if opts.Stdout == nil {
		opts.Stdout = logWriter{t}
	}
	eng, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	name := filepath.Base(file)
	if _, err := eng.Eval(context.Background(), string(src), name, false); err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	L := eng.State()
	var tests []string
	L.Get(lua.GlobalsIndex).(*lua.LTable).ForEach(func(k, v lua.LValue) {
		if s, ok := k.(lua.LString); ok && strings.HasPrefix(string(s), "Test") {
			if _, ok := v.(*lua.LFunction); ok {
				tests = append(tests, string(s))
			}
		}
	})
	sort.Strings(tests)
	if len(tests) == 0 {
		t.Fatalf("%s: no Test* functions", file)
	}
	for _, tn := range tests {
		t.Run(tn, func(t *testing.T) {
			call(t, eng, tn)
		})
	}
}

func call(t *testing.T, eng *engine.Engine, fname string) {
	L := eng.State()
	fn := L.GetGlobal(fname)
	tv := newT(L, t)
	L.SetGlobal("__luatest_fn", fn)
	L.SetGlobal("__luatest_t", tv)
	_, err := eng.Eval(context.Background(), "__luatest_fn(__luatest_t)", fname, false)
	if err != nil {
		if strings.Contains(err.Error(), skipMarker) {
			t.SkipNow()
		}
		if !strings.Contains(err.Error(), fatalMarker) {
			t.Fatalf("%v", err)
		}
		t.FailNow()
	}
}

const (
	fatalMarker = "luatest: fatal"
	skipMarker  = "luatest: skip"
)

func newT(L *lua.LState, t *testing.T) *lua.LUserData {
	ud := L.NewUserData()
	ud.Value = t
	mt := L.NewTable()
	methods := map[string]lua.LGFunction{
		"log": func(L *lua.LState) int {
			t.Logf("%s %s", lx.Where(L), args(L))
			return 0
		},
		"error": func(L *lua.LState) int {
			t.Errorf("%s %s", lx.Where(L), args(L))
			return 0
		},
		"fatal": func(L *lua.LState) int {
			t.Errorf("%s %s", lx.Where(L), args(L))
			L.RaiseError(fatalMarker)
			return 0
		},
		"skip": func(L *lua.LState) int {
			t.Logf("%s skip: %s", lx.Where(L), args(L))
			L.RaiseError(skipMarker)
			return 0
		},
		"name": func(L *lua.LState) int {
			L.Push(lua.LString(t.Name()))
			return 1
		},
		"tempdir": func(L *lua.LState) int {
			L.Push(lua.LString(t.TempDir()))
			return 1
		},
	}
	idx := L.NewTable()
	for k, f := range methods {
		idx.RawSetString(k, L.NewFunction(f))
	}
	mt.RawSetString("__index", idx)
	ud.Metatable = mt
	return ud
}

func args(L *lua.LState) string {
	var parts []string
	for i := 2; i <= L.GetTop(); i++ {
		parts = append(parts, lx.ToStringValue(L.Get(i)))
	}
	return strings.Join(parts, " ")
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
