package repl

import (
	"strings"
	"testing"

	lua "github.com/yuin/gopher-lua"
)

func TestPretty(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	for src, want := range map[string]string{
		`"a\nb"`:                  `"a\nb"`,
		`{1, 2, 3}`:               `{ 1, 2, 3 }`,
		`{b = 2, a = {x = true}}`: `{ a = { x = true }, b = 2 }`,
		`{["not id"] = 1}`:        `{ ["not id"] = 1 }`,
		`{}`:                      `{}`,
		`{{{{{{1}}}}}}`:           `{ { { { {…1} } } } }`,
	} {
		if err := L.DoString("return " + src); err != nil {
			t.Fatal(err)
		}
		if got := Pretty(L.Get(-1), 4); got != want {
			t.Errorf("Pretty(%s) = %s, want %s", src, got, want)
		}
		L.Pop(1)
	}
	// A cycle prints as a marker, not forever.
	L.DoString("c = {}; c.self = c")
	if got := Pretty(L.GetGlobal("c"), 4); !strings.Contains(got, "<cycle>") {
		t.Errorf("cycle: %s", got)
	}
	// Long tables break over lines.
	L.DoString(`long = {} for i = 1, 20 do long[i] = "item" .. i end`)
	if got := Pretty(L.GetGlobal("long"), 4); strings.Count(got, "\n") != 21 {
		t.Errorf("long table not one item per line:\n%s", got)
	}
}

func TestComplete(t *testing.T) {
	L := lua.NewState()
	defer L.Close()
	L.DoString(`
mod = { read = function() end, run = function() end, version = "1" }
obj = setmetatable({ field = 1 }, { __index = { start = function() end, stop = function() end } })
`)
	for expr, want := range map[string]string{
		"mo":       "mod module", // module is a Lua 5.1 global
		"mod.r":    "read run",
		"mod.":     "read run version",
		"obj:st":   "start stop",
		"obj:":     "start stop", // methods only: not "field"
		"nothing.": "",
	} {
		got, _ := Complete(L, expr)
		if strings.Join(got, " ") != want {
			t.Errorf("Complete(%q) = %v, want %s", expr, got, want)
		}
	}
}
