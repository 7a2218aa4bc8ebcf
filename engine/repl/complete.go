package repl

import (
	"regexp"
	"sort"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// completer completes the identifier path before the cursor: globals
// ("ho" -> "host"), table and module members ("host.r" -> "host.read",
// "host.run") and methods after ':' (functions only, including those found
// through a metatable's __index table).
type completer struct{ L *lua.LState }

var pathRe = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*(?:[.:][A-Za-z_][A-Za-z0-9_]*)*[.:]?$|[.:]?$`)

func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	before := string(line[:pos])
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
