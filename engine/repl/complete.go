package repl

import (
	"regexp"
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// completer completes the identifier path before the cursor: globals
// ("ho" -> "host"), table and module members ("host.r" -> "host.read",
// "host.run") and methods after ':' (functions only, including those found
// through a metatable's __index table).
type completer struct {
	L    *lua.LState
	docs []engine.Doc // option names inside a call's {...}
}

var pathRe = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)*[.:]?$|[.:]?$`)

func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	before := string(line[:pos])
	if cands, prefix, ok := c.special(before); ok {
		out := make([][]rune, len(cands))
		for i, s := range cands {
			out[i] = []rune(s[len(prefix):])
		}
		return out, len([]rune(prefix))
	}
	expr := pathRe.FindString(before)
	if expr != "" && strings.Trim(expr, ".:") == "" {
		return nil, 0 // a lone "." or ":" after something we cannot name
	}
	cands, prefix := Complete(c.L, expr)
	out := make([][]rune, len(cands))
	for i, s := range cands {
		out[i] = []rune(s[len(prefix):])
	}
	return out, len([]rune(prefix))
}

// Complete returns the full names that complete the last segment of expr
// ("host.r" -> "read", "run") and that segment ("r").
func Complete(L *lua.LState, expr string) (names []string, prefix string) {
	cut := strings.LastIndexAny(expr, ".:")
	var scope lua.LValue = L.Get(lua.GlobalsIndex)
	methods := false
	if cut >= 0 {
		prefix = expr[cut+1:]
		methods = expr[cut] == ':'
		scope = resolve(L, expr[:cut])
		if scope == lua.LNil {
			return nil, prefix
		}
	} else {
		prefix = expr
	}
	seen := map[string]bool{}
	add := func(t *lua.LTable) {
		t.ForEach(func(k, v lua.LValue) {
			s, ok := k.(lua.LString)
			if !ok || !strings.HasPrefix(string(s), prefix) || !isIdent(string(s)) {
				return
			}
			if methods {
				if _, ok := v.(*lua.LFunction); !ok {
					return
				}
			}
			seen[string(s)] = true
		})
	}
	for _, t := range tablesOf(L, scope) {
		add(t)
	}
	if cut < 0 {
		for _, kw := range []string{"function", "local", "return", "require", "then", "while", "repeat", "until"} {
			if strings.HasPrefix(kw, prefix) && prefix != "" {
				seen[kw] = true
			}
		}
	}
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, prefix
}

var (
	guestArgRe = regexp.MustCompile(`colinux\.get\(\s*["']([A-Za-z0-9_.-]*)$`)
	calleeRe   = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)*)\s*(?:\([^()]*)?$`)
	optKeyRe   = regexp.MustCompile(`(?:^|[{,]\s*)([A-Za-z_][A-Za-z0-9_]*)$`)
)

// special completes where a name is not a Lua path: a guest name inside
// colinux.get(" and an option name inside a documented call's {...}.
func (c *completer) special(before string) ([]string, string, bool) {
	if m := guestArgRe.FindStringSubmatch(before); m != nil {
		var names []string
		for _, n := range GuestNames(c.L) {
			if strings.HasPrefix(n, m[1]) {
				names = append(names, n)
			}
		}
		return names, m[1], true
	}
	open := unclosedBrace(before)
	if open < 0 {
		return nil, "", false
	}
	km := optKeyRe.FindStringSubmatch(before[open:])
	if km == nil && !strings.HasSuffix(strings.TrimSpace(before[open:]), "{") && !strings.HasSuffix(strings.TrimSpace(before[open:]), ",") {
		return nil, "", false
	}
	prefix := ""
	if km != nil {
		prefix = km[1]
	}
	cm := calleeRe.FindStringSubmatch(before[:open])
	if cm == nil {
		return nil, "", false
	}
	callee := cm[1]
	for _, d := range c.docs {
		match := d.Name == callee
		if i := strings.IndexByte(callee, ':'); i >= 0 {
			// Methods are documented on a conventional receiver (g:exec,
			// s:run); any variable name calls them.
			match = strings.HasSuffix(d.Name, callee[i:]) && strings.Contains(d.Name, ":")
		}
		if !match || d.Opts == nil {
			continue
		}
		var names []string
		for _, o := range lx.Options(d.Opts) {
			if strings.HasPrefix(o.Name, prefix) {
				names = append(names, o.Name+" = ")
			}
		}
		return names, prefix, true
	}
	return nil, "", false
}

// unclosedBrace is the index of the innermost '{' before the cursor that
// is not closed yet, ignoring braces in strings; -1 if none.
func unclosedBrace(s string) int {
	var stack []int
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == '\\' {
				i++
			} else if ch == quote {
				quote = 0
			}
		case ch == '"' || ch == '\'':
			quote = ch
		case ch == '{':
			stack = append(stack, i)
		case ch == '}' && len(stack) > 0:
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) == 0 {
		return -1
	}
	return stack[len(stack)-1]
}

// GuestNames lists the farm's guests through colinux.list(), when the
// colinux module is loaded; nil otherwise.
func GuestNames(L *lua.LState) []string {
	mod, ok := L.GetGlobal("colinux").(*lua.LTable)
	if !ok {
		return nil
	}
	list, ok := mod.RawGetString("list").(*lua.LFunction)
	if !ok {
		return nil
	}
	if err := L.CallByParam(lua.P{Fn: list, NRet: 1, Protect: true}); err != nil {
		return nil
	}
	t, ok := L.Get(-1).(*lua.LTable)
	L.Pop(1)
	if !ok {
		return nil
	}
	var names []string
	for i := 1; i <= t.Len(); i++ {
		if row, ok := t.RawGetInt(i).(*lua.LTable); ok {
			names = append(names, row.RawGetString("name").String())
		}
	}
	return names
}

// tablesOf is the table itself and the tables reachable through its
// metatable's __index chain (objects and userdata with methods).
func tablesOf(L *lua.LState, v lua.LValue) []*lua.LTable {
	var out []*lua.LTable
	for i := 0; i < 8 && v != lua.LNil; i++ {
		if t, ok := v.(*lua.LTable); ok {
			out = append(out, t)
		}
		mt, ok := L.GetMetatable(v).(*lua.LTable)
		if !ok {
			break
		}
		// Objects whose __index is a function (a guest) publish their
		// methods in the metatable's "methods" table.
		if m, ok := mt.RawGetString("methods").(*lua.LTable); ok {
			out = append(out, m)
		}
		v = mt.RawGetString("__index")
	}
	return out
}

func resolve(L *lua.LState, path string) lua.LValue {
	var cur lua.LValue = L.Get(lua.GlobalsIndex)
	for _, part := range strings.FieldsFunc(path, func(r rune) bool { return r == '.' || r == ':' }) {
		var next lua.LValue = lua.LNil
		for _, t := range tablesOf(L, cur) {
			if v := t.RawGetString(part); v != lua.LNil {
				next = v
				break
			}
		}
		if next == lua.LNil {
			return lua.LNil
		}
		cur = next
	}
	return cur
}
