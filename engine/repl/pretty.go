package repl

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Show renders a result of the REPL: a multi-line string (g:console(5))
// as its lines, anything else as Pretty does.
func Show(v lua.LValue, depth int) string {
	if s, ok := v.(lua.LString); ok && strings.Contains(string(s), "\n") {
		return strings.TrimSuffix(string(s), "\n")
	}
	return Pretty(v, depth)
}

// Pretty renders a Lua value for the REPL: strings quoted, tables nested
// with sorted keys up to depth levels, cycles marked, objects with a
// __tostring as it says, other Go values by their Go form.
func Pretty(v lua.LValue, depth int) string {
	var b strings.Builder
	pretty(&b, v, depth, 0, map[*lua.LTable]bool{})
	return b.String()
}

func pretty(b *strings.Builder, v lua.LValue, depth, indent int, seen map[*lua.LTable]bool) {
	switch x := v.(type) {
	case lua.LString:
		b.WriteString(strconv.Quote(string(x)))
	case *lua.LFunction:
		if x.IsG {
			b.WriteString("<function>")
		} else {
			fmt.Fprintf(b, "<function %s:%d>", x.Proto.SourceName, x.Proto.LineDefined)
		}
	case *lua.LUserData:
		if e, ok := lx.ErrorFromValue(x); ok {
			fmt.Fprintf(b, "<error %s: %s>", e.Kind(), e.Error())
			return
		}
		// An object that says what it is (a guest: "guest web1 (ns,
		// running, 10.77.0.3)") prints as it says.
		if mt, ok := x.Metatable.(*lua.LTable); ok {
			if fn, ok := mt.RawGetString("__tostring").(*lua.LFunction); ok && fn.IsG {
				L := lua.NewState(lua.Options{SkipOpenLibs: true})
				defer L.Close()
				if err := L.CallByParam(lua.P{Fn: fn, NRet: 1, Protect: true}, x); err == nil {
					if s, ok := L.Get(-1).(lua.LString); ok {
						b.WriteString(string(s))
						return
					}
				}
			}
		}
		// Go values (gopher-luar wrappers, module objects) print in Go form.
		s := fmt.Sprintf("%+v", x.Value)
		if len(s) > 200 {
			s = s[:200] + "…"
		}
		fmt.Fprintf(b, "<%T %s>", x.Value, s)
	case *lua.LTable:
		printTable(b, x, depth, indent, seen)
	default:
		b.WriteString(v.String())
	}
}

func printTable(b *strings.Builder, t *lua.LTable, depth, indent int, seen map[*lua.LTable]bool) {
	if seen[t] {
		b.WriteString("<cycle>")
		return
	}
	n := t.Len()
	var keys []lua.LValue
	t.ForEach(func(k, _ lua.LValue) {
		if kn, ok := k.(lua.LNumber); ok && int(kn) >= 1 && int(kn) <= n && float64(kn) == float64(int(kn)) {
			return
		}
		keys = append(keys, k)
	})
	if n == 0 && len(keys) == 0 {
		b.WriteString("{}")
		return
	}
	if depth <= 0 {
		fmt.Fprintf(b, "{…%d}", n+len(keys))
		return
	}
	seen[t] = true
	defer delete(seen, t)
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	// Short tables stay on one line.
	if n+len(keys) <= 8 {
		var line strings.Builder
		inline(&line, t, n, keys, depth, seen)
		if line.Len() < 72 && !strings.Contains(line.String(), "\n") {
			b.WriteString(line.String())
			return
		}
	}
	pad := strings.Repeat("  ", indent+1)
	b.WriteString("{\n")
	for i := 1; i <= n; i++ {
		b.WriteString(pad)
		pretty(b, t.RawGetInt(i), depth-1, indent+1, seen)
		b.WriteString(",\n")
	}
	for _, k := range keys {
		b.WriteString(pad)
		writeKey(b, k)
		pretty(b, t.RawGet(k), depth-1, indent+1, seen)
		b.WriteString(",\n")
	}
	b.WriteString(strings.Repeat("  ", indent) + "}")
}

func inline(b *strings.Builder, t *lua.LTable, n int, keys []lua.LValue, depth int, seen map[*lua.LTable]bool) {
	b.WriteString("{ ")
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		pretty(b, t.RawGetInt(i), depth-1, 0, seen)
	}
	for i, k := range keys {
		if i > 0 || n > 0 {
			b.WriteString(", ")
		}
		writeKey(b, k)
		pretty(b, t.RawGet(k), depth-1, 0, seen)
	}
	b.WriteString(" }")
}

func writeKey(b *strings.Builder, k lua.LValue) {
	if s, ok := k.(lua.LString); ok && isIdent(string(s)) {
		b.WriteString(string(s) + " = ")
		return
	}
	b.WriteString("[")
	pretty(b, k, 0, 0, nil)
	b.WriteString("] = ")
}

func isIdent(s string) bool {
	if s == "" || isKeyword(s) {
		return false
	}
	for i, r := range s {
		if r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9' {
			continue
		}
		return false
	}
	return true
}

func isKeyword(s string) bool {
	switch s {
	case "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in",
		"local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while":
		return true
	}
	return false
}
