package repl

import (
	"slices"
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
)

type fakeOpts struct {
	Grace   int `lua:"grace"`
	Timeout int `lua:"timeout"`
	Mem     int `lua:"mem"`
}

func TestCompleteGuestsMethodsAndOptions(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	L.DoString(`colinux = { list = function() return { { name = "web1" }, { name = "web2" }, { name = "db1" } } end }`)
	mt := L.NewTable()
	mt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int { return 0 }))
	methods := L.NewTable()
	for _, m := range []string{"start", "stop", "status"} {
		methods.RawSetString(m, L.NewFunction(func(L *lua.LState) int { return 0 }))
	}
	mt.RawSetString("methods", methods)
	ud := L.NewUserData()
	ud.Metatable = mt
	L.SetGlobal("g", ud)
	c := &completer{L: L, docs: []engine.Doc{
		{Name: "colinux.guest", Opts: fakeOpts{}},
		{Name: "g:stop", Opts: fakeOpts{}},
	}}
	for line, want := range map[string][]string{
		`local g = colinux.get("we`:         {"b1", "b2"},
		`g:st`:                              {"art", "op", "atus"},
		`colinux.guest{ na`:                 nil,
		`colinux.guest{ name = "x", m`:      {"em = "},
		`colinux.guest{`:                    {"grace = ", "mem = ", "timeout = "},
		`other:stop{ gr`:                    {"ace = "},
		`x = { a = "{" }; colinux.guest{ t`: {"imeout = "},
	} {
		got, _ := c.Do([]rune(line), len([]rune(line)))
		var gs []string
		for _, r := range got {
			gs = append(gs, string(r))
		}
		slices.Sort(gs)
		slices.Sort(want)
		if !slices.Equal(gs, want) {
			t.Errorf("complete %q = %q, want %q", line, gs, want)
		}
	}
}

func TestShowPrintsAsAUserReads(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	if got := Show(lua.LString("line 1\nline 2\n"), 4); got != "line 1\nline 2" {
		t.Errorf("multi-line string: %q", got)
	}
	if got := Show(lua.LString("one"), 4); got != `"one"` {
		t.Errorf("string: %q", got)
	}
	mt := L.NewTable()
	mt.RawSetString("__tostring", L.NewFunction(func(L *lua.LState) int {
		L.Push(lua.LString("guest web1 (ns, running, 10.77.0.3)"))
		return 1
	}))
	ud := L.NewUserData()
	ud.Value = struct{ farm *int }{}
	ud.Metatable = mt
	if got := Show(ud, 4); got != "guest web1 (ns, running, 10.77.0.3)" {
		t.Errorf("guest: %q", got)
	}
	tb := L.NewTable()
	tb.RawSetString("g", ud)
	if got := Pretty(tb, 4); !strings.Contains(got, "g = guest web1 (ns, running, 10.77.0.3)") {
		t.Errorf("guest in a table: %q", got)
	}
}

func TestHistoryKeepsAMultiLineEntryAsOne(t *testing.T) {
	got := historyEntries("function f(x)\n  return x + 1\nend")
	if len(got) != 1 || got[0] != "function f(x) return x + 1 end" {
		t.Errorf("joined: %q", got)
	}
	if got := historyEntries("x = 1 -- one\ny = 2"); len(got) != 2 {
		t.Errorf("a comment must not swallow the next line: %q", got)
	}
}
