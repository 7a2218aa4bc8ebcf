package playbooks_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/playbooks"
	"github.com/tinyfarm/tinyfarm/stdlib/all"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

func TestMain(m *testing.M) {
	ns.Main() // guests started by these tests are monitored by this binary
	farmnet.Main()
	code := m.Run()
	ns.DeleteBridge("tfbr0")
	os.Exit(code)
}

// miniMirror is the mini release's mirror URL, or "" when not built.
func miniMirror(t testing.TB) string {
	wd, _ := os.Getwd()
	p := filepath.Join(filepath.Dir(wd), "testdata", "minicore", "out", "mirror")
	if d := os.Getenv("TINYFARM_MINICORE"); d != "" { // as stdlib/internal/minicore.Locate
		p = filepath.Join(d, "mirror")
	}
	if _, err := os.Stat(filepath.Join(p, "15.x", "x86_64", "tcz", "nginx.tcz")); err != nil {
		return ""
	}
	return "file://" + p
}

type runResult struct {
	out   string
	recap engine.Recap
	err   error
}

// run runs a shipped playbook in-process, from dir, with its own state.
func run(t *testing.T, playbook, dir, state string, check bool, vars map[string]any) runResult {
	t.Helper()
	t.Setenv("TINYFARM_HOME", state)
	var out bytes.Buffer
	eng, err := engine.New(engine.Options{
		Modules: all.Modules(), Check: check, Vars: vars, Lib: playbooks.FS,
		StateDir: state, Stdout: &out, Reporter: engine.NewHumanReporter(&out, check),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	abs, _ := filepath.Abs(filepath.Join(repoPlaybooks(t), playbook))
	t.Chdir(dir)
	runErr := eng.RunFile(context.Background(), abs)
	rec := eng.Finish(runErr)
	return runResult{out.String(), rec, runErr}
}

func repoPlaybooks(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return wd
}

// TestCheckRunEveryPlaybook check-runs every shipped playbook on an empty
// state: it must plan without failing and change nothing.
func TestCheckRunEveryPlaybook(t *testing.T) {
	mirror := miniMirror(t)
	if mirror == "" {
		t.Skip("mini Tiny Core release not built (make minicore): playbooks plan against its mirror")
	}
	pbDir := repoPlaybooks(t)
	entries, err := fs.Glob(playbooks.FS, "*.lua")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no playbooks: %v", err)
	}
	for _, pb := range entries {
		t.Run(pb, func(t *testing.T) {
			dir, state := t.TempDir(), t.TempDir()
			r := run(t, pb, dir, state, true, map[string]any{"mirror": mirror, "guests": "2", "proxy": "none", "dir": filepath.Join(dir, "out")})
			if r.err != nil {
				t.Fatalf("check run failed: %v\n%s", r.err, r.out)
			}
			if r.recap.Failed != 0 {
				t.Errorf("recap %+v\n%s", r.recap, r.out)
			}
			left, _ := os.ReadDir(dir)
			if len(left) != 0 {
				t.Errorf("check mode created %v in the working directory", left)
			}
			_ = pbDir
		})
	}
}

// TestRecipesLoadAndDocumentThemselves: every recipe is a module with a
// version, loadable through require("lib.NAME").
func TestRecipesLoadAndDocumentThemselves(t *testing.T) {
	libs, _ := fs.Glob(playbooks.FS, "lib/*.lua")
	if len(libs) == 0 {
		t.Fatal("no recipes")
	}
	for _, l := range libs {
		name := "lib." + strings.TrimSuffix(filepath.Base(l), ".lua")
		src, _ := fs.ReadFile(playbooks.FS, l)
		if !strings.Contains(string(src), "version") || !strings.Contains(string(src), "--- M.") {
			t.Errorf("%s: a recipe documents its functions (--- M.fn) and has a version", l)
		}
		eng, err := engine.New(engine.Options{Modules: all.Modules(), Lib: playbooks.FS, Reporter: discard{}, StateDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		vals, err := eng.Eval(context.Background(), `local m = require("`+name+`"); return m.version`, "t", false)
		eng.Close()
		if err != nil || len(vals) != 1 || vals[0].String() == "nil" {
			t.Errorf("%s: require: %v %v", name, vals, err)
		}
	}
}

type discard struct{}

func (discard) Event(engine.Event) {}
