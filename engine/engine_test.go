package engine_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
)

func TestLua(t *testing.T) {
	luatest.Run(t, "testdata/engine_test.lua", engine.Options{
		Modules: []engine.Module{host.Module()},
		Vars:    map[string]any{"name": "web1", "nested": map[string]any{"n": 3}},
	})
}

// run runs src as a playbook named pb.lua and returns its output, recap and error.
func run(t *testing.T, src string, opts engine.Options) (string, engine.Recap, error) {
	t.Helper()
	dir := t.TempDir()
	pb := filepath.Join(dir, "pb.lua")
	if err := os.WriteFile(pb, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	opts.Stdout = &out
	opts.Modules = append(opts.Modules, host.Module())
	eng, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	t.Chdir(dir)
	runErr := eng.RunFile(context.Background(), "pb.lua")
	rec := eng.Finish(runErr)
	return out.String(), rec, runErr
}

func TestRecapCountsAndStopsAtFailure(t *testing.T) {
	out, rec, err := run(t, `
task("one", function() end)
task("two", function() require("host").write(vars.dir .. "/f", "x") end)
task("three", function() error("boom") end)
task("four", function() end)
`, engine.Options{Vars: map[string]any{"dir": t.TempDir()}})
	if err == nil {
		t.Fatal("failing playbook returned no error")
	}
	if got := engine.ExitCode(err); got != engine.ExitFailed {
		t.Errorf("exit code %d, want %d", got, engine.ExitFailed)
	}
	if rec.OK != 1 || rec.Changed != 1 || rec.Failed != 1 || rec.Tasks != 3 {
		t.Errorf("recap %+v, want ok=1 changed=1 failed=1 tasks=3", rec)
	}
	if strings.Contains(out, "four") {
		t.Errorf("task after the failure ran:\n%s", out)
	}
	if !strings.Contains(out, "pb.lua:4: boom") {
		t.Errorf("failure without position:\n%s", out)
	}
}

func TestPcallRecoveredTaskIsIgnoredNotFailed(t *testing.T) {
	_, rec, err := run(t, `
pcall(task, "flaky", function() error("transient") end)
task("after", function() end)
`, engine.Options{})
	if err != nil {
		t.Fatalf("run failed: %v", err)
	}
	if rec.Failed != 0 || rec.Ignored != 1 || rec.OK != 1 {
		t.Errorf("recap %+v, want failed=0 ignored=1 ok=1", rec)
	}
}

func TestGoErrorSurvivesUnderScriptError(t *testing.T) {
	_, _, err := run(t, `require("host").write("/nonexistent-dir/f", "x")`, engine.Options{})
	var se *engine.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("error %T is not a *ScriptError", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = false for %v", err)
	}
	if se.File != "pb.lua" || se.Line != 1 || se.Kind != "not_found" {
		t.Errorf("got file=%q line=%d kind=%q", se.File, se.Line, se.Kind)
	}
}

func TestSyntaxError(t *testing.T) {
	_, _, err := run(t, "local x = \n\nx = = 2\n", engine.Options{})
	if got := engine.ExitCode(err); got != engine.ExitSyntax {
		t.Fatalf("exit code %d, want %d (%v)", got, engine.ExitSyntax, err)
	}
	if !strings.HasPrefix(err.Error(), "pb.lua:3: syntax error") {
		t.Errorf("message %q", err.Error())
	}
}

func TestCheckModeChangesNothingAndShowsDiff(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "motd")
	if err := os.WriteFile(f, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, rec, err := run(t, `
local host = require("host")
task("edit", function() host.write(vars.f, "new\n") end)
task("again", function() host.write(vars.f, "newer\n") end)
task("cmd", function() host.run("touch " .. vars.f .. ".ran") end)
`, engine.Options{Check: true, Vars: map[string]any{"f": f}})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(f); string(b) != "old\n" {
		t.Errorf("check mode changed the file to %q", b)
	}
	if _, err := os.Stat(f + ".ran"); err == nil {
		t.Error("check mode ran a command")
	}
	if !strings.Contains(out, "-old") || !strings.Contains(out, "+new") {
		t.Errorf("no unified diff in check output:\n%s", out)
	}
	// The second write depends on the first would-be write: may change.
	if rec.Changed != 1 || rec.MayChange != 2 {
		t.Errorf("recap %+v, want changed=1 may_change=2\n%s", rec, out)
	}
}

func TestRequirePathOrder(t *testing.T) {
	inc := t.TempDir()
	os.MkdirAll(filepath.Join(inc, "lib"), 0o755)
	os.WriteFile(filepath.Join(inc, "lib", "a.lua"), []byte(`return {from="include"}`), 0o644)
	os.WriteFile(filepath.Join(inc, "lib", "b.lua"), []byte(`return {from="include"}`), 0o644)
	lib := fstest.MapFS{
		"lib/b.lua": {Data: []byte(`return {from="builtin"}`)},
		"lib/c.lua": {Data: []byte(`return {from="builtin"}`)},
	}
	out, _, err := run(t, `
print(require("lib.a").from, require("lib.b").from, require("lib.c").from)
local ok, e = pcall(require, "lib.nope")
print(ok, (string.find(tostring(e), "no built%-in recipe") ~= nil))
`, engine.Options{Path: []string{inc}, Lib: lib})
	if err != nil {
		t.Fatal(err)
	}
	if want := "include\tinclude\tbuiltin\nfalse\ttrue\n"; !strings.HasPrefix(out, want) {
		t.Errorf("got %q, want %q", out, want)
	}
}

func TestGoAPIPackagesDoNotImportLua(t *testing.T) {
	root := filepath.Join("..")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// third_party holds vendored code (a patched gopher-lua), not tinyfarm's API.
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "third_party" || strings.HasPrefix(d.Name(), ".")) && p != root {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(p, ".go") {
			return nil
		}
		rel := filepath.ToSlash(p[len(root)+1:])
		if strings.HasPrefix(rel, "engine/") || strings.HasPrefix(rel, "cmd/") || filepath.Base(rel) == "lua.go" ||
			strings.HasPrefix(filepath.Base(rel), "lua_") ||
			strings.HasPrefix(rel, "stdlib/all/") ||
			strings.HasSuffix(rel, "lua_test.go") || strings.HasPrefix(rel, "playbooks/") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, imp := range []string{`"github.com/yuin/gopher-lua"`, `lua "github.com/yuin/gopher-lua"`, `"layeh.com/gopher-luar"`, `"github.com/tinyfarm/tinyfarm/engine`} {
			if bytes.Contains(src, []byte(imp)) {
				t.Errorf("%s imports %s: only engine/... and stdlib/*/lua.go may bind Lua", rel, imp)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOnCloseRunsAtCloseLastFirst(t *testing.T) {
	eng, err := engine.New(engine.Options{Stdout: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	eng.Env().OnClose(func() { got = append(got, "first") })
	eng.Env().OnClose(func() { got = append(got, "second") })
	if len(got) != 0 {
		t.Fatalf("ran before Close: %v", got)
	}
	eng.Close()
	if strings.Join(got, ",") != "second,first" {
		t.Errorf("ran %v, want second then first", got)
	}
}
