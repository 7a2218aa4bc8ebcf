package template

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// builtins are the globals a template sees besides its variables.
var builtins = []string{"ipairs", "pairs", "string", "table", "math", "tostring", "tonumber", "type", "select", "next", "unpack", "error", "assert"}

var ident = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var genPos = regexp.MustCompile(`^[^\n]*?:(\d+): `)

// Render runs the template on L with the given variables (nil: none).
// It must be called with the VM (it runs Lua on L).
func (t *Template) Render(L *lua.LState, vars *lua.LTable) (string, error) {
	fn, err := L.Load(strings.NewReader(t.code), t.Name)
	if err != nil {
		return "", t.syntaxError(err)
	}
	env := L.NewTable()
	var names []string
	for _, b := range builtins {
		env.RawSetString(b, L.GetGlobal(b))
		names = append(names, b)
	}
	if vars != nil {
		var bad error
		vars.ForEach(func(k, v lua.LValue) {
			ks, ok := k.(lua.LString)
			if !ok {
				bad = fmt.Errorf("template %s: variable names must be strings, got %s %s", t.Name, k.Type(), k)
				return
			}
			env.RawSetString(string(ks), v)
			names = append(names, string(ks))
		})
		if bad != nil {
			return "", bad
		}
	}
	env.RawSetString("__s", L.NewFunction(func(L *lua.LState) int {
		v := L.Get(1)
		switch v.Type() {
		case lua.LTString, lua.LTNumber, lua.LTBool:
			L.Push(lua.LString(v.String()))
			return 1
		case lua.LTNil:
			seg := t.segs[L.CheckInt(2)]
			code := strings.TrimSuffix(strings.TrimPrefix(seg.tag, "{{ "), " }}")
			if ident.MatchString(code) && !slices.Contains(names, code) {
				// A name the variables do not have: most likely a typo.
				msg := fmt.Sprintf("undefined variable %q", code)
				if s := nearest(code, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				L.RaiseError("%s", msg)
			}
			L.RaiseError("%s is nil", seg.tag)
		default:
			L.RaiseError("%s is a %s, not text (use table.concat or a loop)", t.segs[L.CheckInt(2)].tag, v.Type())
		}
		return 0
	}))
	// Unknown names read as nil, so {{ x or "default" }} and {% if x then %}
	// work; printing a nil is the error, which names a likely typo.
	fn.Env = env
	L.Push(fn)
	if err := L.PCall(0, 1, nil); err != nil {
		p, _ := env.RawGetString("__p").(lua.LNumber)
		s := segment{line: 1, col: 1}
		if _, ok := env.RawGetString("__p").(lua.LNumber); ok && int(p) < len(t.segs) {
			s = t.segs[int(p)]
		}
		msg := err.Error()
		var ae *lua.ApiError
		if errors.As(err, &ae) {
			msg = lua.LVAsString(ae.Object)
			if msg == "" {
				msg = ae.Object.String()
			}
		}
		msg = genPos.ReplaceAllString(msg, "")
		if i := strings.Index(msg, "\nstack traceback"); i >= 0 {
			msg = msg[:i]
		}
		return "", &Error{Name: t.Name, Line: s.line, Col: s.col, Msg: msg}
	}
	out := L.Get(-1).(*lua.LTable)
	L.Pop(1)
	var b strings.Builder
	for i := 1; i <= out.Len(); i++ {
		b.WriteString(out.RawGetInt(i).String())
	}
	return b.String(), nil
}

func nearest(s string, candidates []string) string {
	best, hint := 3, ""
	for _, c := range candidates {
		if d := lx.Distance(s, c); d < best {
			best, hint = d, c
		}
	}
	return hint
}
