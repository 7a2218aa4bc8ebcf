package engine_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLuaDifferential feeds chunks built from a small grammar of the
// conformance corpus's constructs (closures over shared locals, pcall,
// xpcall and error with values and levels, coroutines, multiple
// assignment, varargs and select, arithmetic, string functions,
// string.format, tostring and tonumber, tables) to lua5.1 and to the
// engine, and fails when their outputs differ. The fuzzer's bytes are the
// grammar's choices, so every input is a valid program and mutations stay
// meaningful. The seeds run in every `go test`; `go test -fuzz
// FuzzLuaDifferential ./engine` searches further.
//
// Error messages are compared by their position ("file:line:") and, for
// errors the chunk raises itself, their marker; the wording of runtime
// errors is a known difference (README, "Lua differences").
func FuzzLuaDifferential(f *testing.F) {
	lua := refLua(f)
	for _, seed := range [][]byte{
		{},
		[]byte("issue 13: closures and pcall"),
		{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20},
		{3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
		{7, 1, 9, 2, 200, 13, 5, 5, 1, 0, 99, 42, 17, 3, 8, 250, 6, 4, 4, 11},
		{12, 6, 1, 0, 2, 12, 7, 3, 14, 2, 1, 5, 5, 9, 13, 1, 2, 3},
		{255, 254, 253, 252, 251, 250, 249, 248, 247, 246, 245, 244, 243},
		[]byte("coroutine.wrap(function() error('x') end)"),
		[]byte("local a, b = b, a; string.format('%5.2f', 1/3)"),
		[]byte("xpcall(f, function(e) return e end) select('#', ...)"),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		src := genChunk(data)
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "fuzz.lua"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		ref := runRef(t, lua, dir, "fuzz.lua")
		got := runEngine(t, "fuzz.lua", src)
		if d := outputDiff("fuzz.lua", ref, got); d != "" {
			t.Errorf("outputs differ for the chunk\n%s\n%s", numbered(src), d)
		}
	})
}

func numbered(src string) string {
	lines := strings.Split(src, "\n")
	for i, l := range lines {
		lines[i] = fmt.Sprintf("%3d  %s", i+1, l)
	}
	return strings.Join(lines, "\n")
}

// fuzzPrelude defines the shared locals and show(), which prints values
// the same way in both interpreters (no addresses; errors by position and
// marker).
const fuzzPrelude = `local a, b, c, s, t = 1, -2, 0.5, "str", { 3, 1, 2 }
local n = 0
local function show(tag, ...)
  local out = { tag }
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local ty = type(v)
    if ty == "string" then
      local pos = v:match("^[^:]*:%d+:")
      if pos or v:find("attempt to") or v:find("bad argument") then v = (pos or "") .. (v:match("E%d+") or "?") end
      v = string.format("%q", v)
    elseif ty == "table" and v.m then
      v = "err" .. v.m
    elseif ty ~= "number" and ty ~= "boolean" and ty ~= "nil" then
      v = ty
    end
    out[#out + 1] = tostring(v)
  end
  print(table.concat(out, " "))
end
local function K(x) return x end
local function bump(d) n = n + d; return n end
local function f1(x) a = a + x; return a end
local function f2(...) b = b + select("#", ...); return b, ... end
local f3 = function(x) if x > 2 then error("E3", 2) end; c = c * 2; return c end
`

// gen turns fuzz bytes into grammar choices; past the end every choice is 0.
type gen struct {
	data  []byte
	i     int
	sb    strings.Builder
	depth int
	line  int
}

func (g *gen) pick(n int) int {
	if g.i >= len(g.data) {
		return 0
	}
	v := int(g.data[g.i])
	g.i++
	return v % n
}

func (g *gen) emit(format string, args ...any) {
	fmt.Fprintf(&g.sb, format, args...)
	g.sb.WriteByte('\n')
	g.line++
}

func genChunk(data []byte) string {
	g := &gen{data: data}
	g.sb.WriteString(fuzzPrelude)
	// The whole chunk runs in a pcall, so an error ends it the same way in
	// both interpreters and is printed by show.
	g.emit("show(\"main\", pcall(function(...)")
	for k := 0; k < 12 && (k < 3 || g.i < len(g.data)); k++ {
		g.stmt()
	}
	g.emit("end, 1, nil, \"v\"))")
	g.emit("show(\"end\", a, b, c, s, n, #t, table.concat(t, \",\"))")
	return g.sb.String()
}

var (
	fuzzVars = []string{"a", "b", "c"}
	fuzzNums = []string{"0", "1", "2", "3", "-1", "0.5", "-2.25", "10", "1e15", "2^53", "1/3", "1/0", "100", "0/0"} // nan last; no -0 (README, "Lua differences")
	fuzzStrs = []string{`"str"`, `""`, `"10"`, `" 0x1F "`, `"1e2"`, `"abc def"`, `"a,b,,c"`, `"line\n2"`, `"q\"uote"`, `"%d"`}
	fuzzFmts = []string{`"%d"`, `"%5.2f"`, `"%g"`, `"%e"`, `"%x"`, `"%-6s|"`, `"%q"`, `"%.3s"`, `"%5d"`, `"%+.1f"`, `"%o"`, `"%c"`}
	fuzzPats = []string{`"%a+"`, `"(%w+)=(%w+)"`, `"%d"`, `"."`, `"^a"`, `"b$"`, `"[%s,]"`, `""`, `"(a)(b)"`, `"%p"`, `"x*"`, `"()"`}
)

// maxExprDepth bounds expression nesting: both compilers reject very deep
// expressions ("too complex"), each in its own words.
const maxExprDepth = 9

func (g *gen) num() string {
	g.depth++
	defer func() { g.depth-- }()
	if g.depth > maxExprDepth {
		return fuzzNums[g.pick(len(fuzzNums))]
	}
	switch g.pick(6) {
	case 0, 1:
		return fuzzNums[g.pick(len(fuzzNums))]
	case 2:
		return fuzzVars[g.pick(len(fuzzVars))]
	case 3:
		// K() keeps the right operand from being a constant: constant
		// folding can make a -0 constant, and which of 0 and -0 a function
		// then prints is a known difference (README, "Lua differences").
		ops := []string{"+", "-", "*", "/", "%", "^"}
		return "(" + g.num() + " " + ops[g.pick(len(ops))] + " K(" + g.num() + "))"
	case 4:
		return fmt.Sprintf("select(\"#\"%s)", g.moreArgs())
	default:
		return fmt.Sprintf("bump(%s)", fuzzNums[g.pick(4)])
	}
}

func (g *gen) str() string {
	g.depth++
	defer func() { g.depth-- }()
	if g.depth > maxExprDepth {
		return fuzzStrs[g.pick(len(fuzzStrs))]
	}
	switch g.pick(5) {
	case 0, 1:
		return fuzzStrs[g.pick(len(fuzzStrs))]
	case 2:
		return "s"
	case 3:
		return fmt.Sprintf("tostring(%s)", g.num())
	default:
		return fmt.Sprintf("(%s .. %s)", g.str(), g.num())
	}
}

// moreArgs is args() after a comma, or nothing.
func (g *gen) moreArgs() string {
	if a := g.args(); a != "" {
		return ", " + a
	}
	return ""
}

func (g *gen) args() string {
	k := g.pick(4)
	parts := make([]string, k)
	for i := range parts {
		if g.pick(3) == 0 {
			parts[i] = "nil"
		} else {
			parts[i] = g.num()
		}
	}
	return strings.Join(parts, ", ")
}

// errValue is a value for error(): strings carry a marker show() keeps.
func (g *gen) errValue() string {
	switch g.pick(5) {
	case 0:
		return fmt.Sprintf("{ m = %d }", g.line)
	case 1:
		return g.num()
	case 2:
		return "nil"
	default:
		return fmt.Sprintf("\"E%d\"", g.line)
	}
}

func (g *gen) block(max int) {
	g.depth++
	defer func() { g.depth-- }()
	for k := 0; k <= g.pick(max); k++ {
		g.stmt()
	}
}

func (g *gen) stmt() {
	if g.depth > 3 {
		g.emit("show(\"leaf\", %s)", g.num())
		return
	}
	v := fuzzVars[g.pick(len(fuzzVars))]
	switch g.pick(20) {
	case 0:
		g.emit("%s = %s", v, g.num())
	case 1:
		w := fuzzVars[g.pick(len(fuzzVars))]
		g.emit("%s, %s = %s, %s", v, w, w, v) // swaps and multiple assignment
	case 2:
		g.emit("show(\"f1\", pcall(f1, %s))", g.num())
	case 3:
		g.emit("show(\"f2\", f2(%s))", g.args())
	case 4:
		g.emit("show(\"f3\", pcall(f3, %s))", fuzzNums[g.pick(6)])
	case 5:
		g.emit("show(\"pcall\", pcall(function(...)")
		g.block(3)
		g.emit("error(%s, %d) end%s))", g.errValue(), g.pick(3), g.moreArgs())
	case 6:
		g.emit("show(\"xpcall\", xpcall(function()")
		g.block(2)
		g.emit("error(%s) end, function(e) bump(1); return e end))", g.errValue())
	case 7:
		g.emit("do local co = coroutine.wrap(function(x)")
		g.emit("  %s = %s + x", v, v)
		g.block(2)
		g.emit("  local y = coroutine.yield(%s)", v)
		g.emit("  if y then error(%s, 0) end return %s end)", g.errValue(), g.num())
		g.emit("show(\"co\", pcall(co, %s)); show(\"co2\", pcall(co, %s)) end", fuzzNums[g.pick(6)], []string{"nil", "true", "false"}[g.pick(3)])
	case 8:
		g.emit("show(\"fmt\", pcall(string.format, %s, %s))", fuzzFmts[g.pick(len(fuzzFmts))], g.num())
	case 9:
		g.emit("show(\"fmts\", string.format(\"%%q %%s\", %s, %s))", g.str(), g.str())
	case 10:
		g.emit("show(\"find\", string.find(%s, %s, %s))", g.str(), fuzzPats[g.pick(len(fuzzPats))], fuzzNums[g.pick(5)])
	case 11:
		g.emit("show(\"gsub\", string.gsub(%s, %s, %s))", g.str(), fuzzPats[g.pick(len(fuzzPats))], []string{`"<%0>"`, `"%1"`, `string.upper`, `{ a = 1, str = "S" }`, `""`}[g.pick(5)])
	case 12:
		// tonumber with a base only on the constant strings: a negative
		// number in another base is a known difference.
		g.emit("show(\"num\", %s, tostring(%s), tonumber(%s), tonumber(%s, %d))", g.num(), g.num(), g.str(), fuzzStrs[g.pick(len(fuzzStrs))], []int{10, 16, 2, 36}[g.pick(4)])
	case 13:
		g.emit("for i = %d, %d do", g.pick(3), g.pick(4))
		g.emit("  local l = i * 2")
		g.emit("  local function cl() %s = %s + l; return %s end", v, v, v)
		g.emit("  show(\"loop\", pcall(function() cl(); if i %% 2 == 0 then error(%s) end end))", g.errValue())
		g.emit("end")
	case 14:
		// no nan into t: sorting a nan is order-dependent in any sort.
		g.emit("t[#t + 1] = %s", fuzzNums[g.pick(len(fuzzNums)-2)])
	case 15:
		g.emit("show(\"sort\", pcall(table.sort, t, function(x, y) return x %s y end))", []string{"<", ">"}[g.pick(2)])
	case 16:
		g.emit("show(\"sub\", (%s):sub(%s, %s), (%s):rep(%d, \",\"), #%s)", g.str(), fuzzNums[g.pick(6)], fuzzNums[g.pick(6)], g.str(), g.pick(4), g.str())
	case 17:
		g.emit("if %s %s %s then", g.num(), []string{"<", "<=", "==", "~="}[g.pick(4)], g.num())
		g.block(2)
		g.emit("else show(\"else\", %s) end", g.num())
	case 18:
		// unpack with an explicit end: the length of a table with holes is
		// any border in both interpreters.
		list := g.args()
		g.emit("show(\"va\", (function(...) return select(%d, ...), select(\"#\", ...) end)(%s), unpack({ %s }, 1, %d))",
			1+g.pick(4), g.args(), list, len(strings.Split(list, ","))-boolInt(list == ""))
	default:
		g.emit("s = %s", g.str())
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
