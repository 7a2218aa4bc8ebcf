// Package template renders tinyfarm's text templates: plain text with Lua
// inside, so a playbook author reads one language.
//
//	{{ expr }}      the value of a Lua expression (a string, number or boolean;
//	                nil or a table is an error naming the tag)
//	{% statement %} Lua statements: {% for _, s in ipairs(sites) do %} ... {% end %},
//	                {% if tls then %} ... {% elseif x then %} ... {% else %} ... {% end %}
//	{# comment #}   nothing
//
// A line that holds only a {% %} or {# #} tag (and blanks) leaves no empty
// line behind. The variables are the names of the vars table; a name that
// is neither a variable nor one of the few builtins (ipairs, pairs, string,
// table, math, tostring, tonumber, type, select, next, unpack) is an error
// with a suggestion, so a typo never renders as an empty string. Errors
// name the template's own line and column ("page.tpl:3:7: ...").
//
// A template compiles to a Lua function (statements are real Lua, so
// there is no second expression language to learn); the Go side keeps the
// map from generated lines back to template positions.
package template

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/yuin/gopher-lua/parse"
)

// Template is a compiled template.
type Template struct {
	Name string
	code string
	segs []segment // in generated order
}

type segment struct {
	line, col int // 1-based position of the tag (or text) in the template
	genLine   int // first generated line
	tag       string
}

// Error is a template failure at a position of the template.
type Error struct {
	Name      string
	Line, Col int
	Msg       string
}

func (e *Error) Error() string {
	return fmt.Sprintf("template %s:%d:%d: %s", e.Name, e.Line, e.Col, e.Msg)
}

// Compile parses src. name appears in error messages.
func Compile(name, src string) (*Template, error) {
	t := &Template{Name: name}
	var b strings.Builder
	gen := 1
	emit := func(s segment, code string) {
		s.genLine = gen
		t.segs = append(t.segs, s)
		b.WriteString(code)
		b.WriteByte('\n')
		gen += strings.Count(code, "\n") + 1
	}
	b.WriteString("local __b, __n, __s = {}, 0, __s\n")
	gen++
	line, col := 1, 1
	advance := func(s string) {
		for _, r := range s {
			if r == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
	}
	rest := src
	for rest != "" {
		i := indexTag(rest)
		if i < 0 {
			emit(segment{line: line, col: col}, "__n=__n+1 __b[__n]="+luaQuote(rest))
			advance(rest)
			break
		}
		text, open := rest[:i], rest[i:i+2]
		closer := map[string]string{"{{": "}}", "{%": "%}", "{#": "#}"}[open]
		j := strings.Index(rest[i+2:], closer)
		if j < 0 {
			advance(text)
			return nil, &Error{Name: name, Line: line, Col: col, Msg: fmt.Sprintf("%s is never closed with %s", open, closer)}
		}
		inner := rest[i+2 : i+2+j]
		after := rest[i+2+j+2:]
		// A statement or comment alone on its line takes the line with it.
		lineStart := strings.LastIndexByte(text, '\n') + 1
		standalone := open != "{{" && strings.TrimLeft(text[lineStart:], " \t") == "" && (lineStart > 0 || col == 1)
		trail := 0
		if standalone {
			k := 0
			for k < len(after) && (after[k] == ' ' || after[k] == '\t' || after[k] == '\r') {
				k++
			}
			if k == len(after) || after[k] == '\n' {
				trail = k
				if k < len(after) {
					trail++
				}
			} else {
				standalone = false
			}
		}
		kept := text
		if standalone {
			kept = text[:lineStart]
		}
		if kept != "" {
			emit(segment{line: line, col: col}, "__n=__n+1 __b[__n]="+luaQuote(kept))
		}
		advance(text)
		tagLine, tagCol := line, col
		advance(rest[i : i+2+j+2])
		code := strings.TrimSpace(inner)
		switch open {
		case "{{":
			if code == "" {
				return nil, &Error{Name: name, Line: tagLine, Col: tagCol, Msg: "empty {{ }}"}
			}
			emit(segment{line: tagLine, col: tagCol, tag: "{{ " + code + " }}"},
				fmt.Sprintf("__p=%d __n=__n+1 __b[__n]=__s((%s), %d)", len(t.segs), code, len(t.segs)))
		case "{%":
			emit(segment{line: tagLine, col: tagCol, tag: "{% " + code + " %}"}, fmt.Sprintf("__p=%d %s", len(t.segs), code))
		}
		advance(after[:trail])
		rest = after[trail:]
	}
	b.WriteString("return __b\n")
	t.code = b.String()
	if _, err := parse.Parse(strings.NewReader(t.code), name); err != nil {
		return nil, t.syntaxError(err)
	}
	return t, nil
}

func indexTag(s string) int {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '{' && (s[i+1] == '{' || s[i+1] == '%' || s[i+1] == '#') {
			return i
		}
	}
	return -1
}

// luaQuote is a Lua string literal for s (byte-exact, one line).
func luaQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c < 0x20 || c >= 0x7f:
			fmt.Fprintf(&b, `\%03d`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// segAt is the segment generated line n belongs to, and the template
// position of that line.
func (t *Template) segAt(n int) (segment, int, int) {
	i := sort.Search(len(t.segs), func(i int) bool { return t.segs[i].genLine > n }) - 1
	if i < 0 {
		return segment{line: 1, col: 1}, 1, 1
	}
	s := t.segs[i]
	if n == s.genLine {
		return s, s.line, s.col
	}
	return s, s.line + n - s.genLine, 1
}

func (t *Template) syntaxError(err error) error {
	var pe *parse.Error
	if errors.As(err, &pe) {
		n := pe.Pos.Line
		if n == parse.EOF || n <= 0 {
			last := t.segs[len(t.segs)-1]
			for _, s := range t.segs {
				if strings.HasPrefix(s.tag, "{%") {
					last = s
				}
			}
			return &Error{Name: t.Name, Line: last.line, Col: last.col,
				Msg: "the template ends inside a block: a {% end %} is missing (last statement tag here)"}
		}
		s, l, c := t.segAt(n)
		msg := fmt.Sprintf("syntax error near '%s'", pe.Token)
		if s.tag != "" {
			msg += " in " + s.tag
		}
		return &Error{Name: t.Name, Line: l, Col: c, Msg: msg}
	}
	return &Error{Name: t.Name, Line: 1, Col: 1, Msg: err.Error()}
}
