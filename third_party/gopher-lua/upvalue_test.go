package lua

import (
	"errors"
	"strings"
	"testing"
)

// Regression tests for upstream issue #448: an error must close the upvalues
// of the frames it unwinds, and no others. Before the fix raiseError closed
// the upvalues of every frame on the call stack, so after a caught error the
// caller's locals were no longer shared with its closures.

func runUpvalueScript(t *testing.T, src string, setup func(L *LState)) string {
	t.Helper()
	L := NewState()
	defer L.Close()
	var out []string
	L.SetGlobal("print", L.NewFunction(func(L *LState) int {
		var parts []string
		for i := 1; i <= L.GetTop(); i++ {
			parts = append(parts, L.ToStringMeta(L.Get(i)).String())
		}
		out = append(out, strings.Join(parts, "\t"))
		return 0
	}))
	if setup != nil {
		setup(L)
	}
	if err := L.DoString(src); err != nil {
		t.Fatalf("script failed: %v", err)
	}
	return strings.Join(out, "\n")
}

func TestUpvaluesSurviveCaughtErrors(t *testing.T) {
	goRaise := func(L *LState) {
		L.SetGlobal("goraise", L.NewFunction(func(L *LState) int {
			L.RaiseError("from go")
			return 0
		}))
		L.SetGlobal("goerror", L.NewFunction(func(L *LState) int {
			L.Error(L.NewTable(), 1)
			return 0
		}))
		L.SetGlobal("gopanic", L.NewFunction(func(L *LState) int {
			panic(errors.New("go panic"))
		}))
		L.SetGlobal("gopcall", L.NewFunction(func(L *LState) int {
			L.Push(L.CheckFunction(1))
			err := L.PCall(0, 0, nil)
			L.Push(LBool(err == nil))
			return 1
		}))
	}
	for _, tc := range []struct{ name, src, want string }{
		{"pcall", `
local tried, failed = 0, 0
local function try(f) tried = tried + 1; if not pcall(f) then failed = failed + 1 end end
try(function() error("x") end)
try(function() error("y") end)
print(tried, failed)`, "2\t2"},
		{"xpcall", `
local n = 0
local function try(f) n = n + 1; xpcall(f, function(e) n = n + 10; return e end) end
try(function() error("x") end)
try(function() error({}) end)
print(n)`, "22"},
		{"nested pcall", `
local n = 0
local function bump() n = n + 1 end
pcall(function() bump(); pcall(error, "inner"); bump(); error("outer") end)
bump()
print(n)`, "3"},
		{"go raise, error value, panic, PCall", `
local n = 0
local function bump() n = n + 1 end
pcall(goraise); bump()
pcall(goerror); bump()
pcall(gopanic); bump()
gopcall(function() error("x") end); bump()
print(n)`, "4"},
		{"unwound frames are closed", `
local fs = {}
pcall(function()
  local v = 1
  fs[1] = function() v = v + 1; return v end
  error("x")
end)
local x = {1, 2, 3} -- reuse the registers the dead frame had
print(fs[1](), fs[1]())`, "2\t3"},
		{"coroutine", `
local n = 0
local co = coroutine.create(function()
  local m = 5
  local function get() return m end
  n = n + 1
  coroutine.yield(get)
  error("dies")
end)
local _, get = coroutine.resume(co)
print(coroutine.resume(co))
n = n + 1
print(n, get(), coroutine.status(co))`, "false\t<string>:8: dies\n2\t5\tdead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runUpvalueScript(t, tc.src, goRaise)
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
