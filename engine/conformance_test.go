package engine_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aymanbagabas/go-udiff"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/all"
)

// The differential conformance suite: every script under
// testdata/conformance runs under Debian's lua5.1 (the reference) and under
// tinyfarm's engine, set up as for a playbook, and the outputs must be equal
// line for line. A difference that cannot be fixed is recorded next to the
// script as NAME.diff (the unified diff from lua5.1's output to tinyfarm's)
// and listed in README.md under "Lua differences"; any other difference, or a
// recorded one that changed or went away, fails.

var updateDiffs = flag.Bool("update-lua-diffs", false, "rewrite testdata/conformance/*.diff from the current differences")

const conformanceDir = "testdata/conformance"

// os.time and os.date read and write local time; the reference runs with
// TZ=UTC, so the engine's Go runtime must use UTC too, whatever the machine's
// /etc/localtime says. Set before any test runs.
func init() { time.Local = time.UTC }

// refLua finds the reference interpreter or skips the test.
func refLua(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("lua5.1")
	if err != nil {
		t.Skip("lua5.1 not installed (Debian package lua5.1, installed by scripts/deps.sh): the conformance suite needs the reference interpreter")
	}
	return p
}

// runRef runs dir/name under lua5.1 from dir, so error positions read
// "name:line:" as in tinyfarm. An uncaught error becomes a last line
// "error: MSG".
func runRef(t testing.TB, lua, dir, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, lua, name)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("lua5.1 %s: timed out", name)
	}
	out := stdout.String()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		msg, _, _ := strings.Cut(stderr.String(), "\n")
		// "lua5.1: MSG", or "/usr/bin/lua5.1: MSG" when run by path.
		if i := strings.Index(msg, "lua5.1: "); i >= 0 {
			msg = msg[i+len("lua5.1: "):]
		}
		out += "error: " + msg + "\n"
	} else if err != nil {
		t.Fatalf("lua5.1 %s: %v", name, err)
	}
	return out
}

// runEngine runs src as chunk name in a fresh engine with the modules and
// globals of `tinyfarm run`, the same way as RunFile runs a playbook.
func runEngine(t testing.TB, name, src string) string {
	t.Helper()
	var out bytes.Buffer
	eng, err := engine.New(engine.Options{
		Modules:  all.Modules(),
		Stdout:   &out,
		Reporter: engine.NewHumanReporter(&bytes.Buffer{}, false),
		StateDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := eng.Eval(ctx, src, name, false); err != nil {
		if ctx.Err() != nil {
			t.Fatalf("tinyfarm %s: timed out", name)
		}
		msg, _, _ := strings.Cut(err.Error(), "\n")
		out.WriteString("error: " + msg + "\n")
	}
	return out.String()
}

// outputDiff is "" when the outputs are equal, else a unified diff from
// the reference's output to tinyfarm's.
func outputDiff(name, ref, got string) string {
	if ref == got {
		return ""
	}
	return udiff.Unified("lua5.1/"+name, "tinyfarm/"+name, ref, got)
}

func TestLuaConformance(t *testing.T) {
	lua := refLua(t)
	scripts, err := filepath.Glob(filepath.Join(conformanceDir, "*.lua"))
	if err != nil {
		t.Fatal(err)
	}
	if len(scripts) < 60 {
		t.Errorf("%d conformance scripts, want at least 60", len(scripts))
	}
	for _, path := range scripts {
		name := filepath.Base(path)
		t.Run(strings.TrimSuffix(name, ".lua"), func(t *testing.T) {
			t.Parallel()
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			ref := runRef(t, lua, conformanceDir, name)
			got := runEngine(t, name, string(src))
			checkDiff(t, strings.TrimSuffix(path, ".lua")+".diff", outputDiff(name, ref, got))
		})
	}
}

// checkDiff compares the difference found with the one recorded in
// diffPath (none recorded: the outputs must be equal).
func checkDiff(t *testing.T, diffPath, diff string) {
	t.Helper()
	if *updateDiffs {
		if diff == "" {
			if err := os.Remove(diffPath); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return
		}
		if err := os.WriteFile(diffPath, []byte(diff), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(diffPath)
	if errors.Is(err, os.ErrNotExist) {
		if diff != "" {
			t.Errorf("output differs from lua5.1 (fix it, or record it with -update-lua-diffs and list it in README.md under \"Lua differences\"):\n%s", diff)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case diff == "":
		t.Errorf("%s records a difference that is gone: delete it (go test -run TestLuaConformance -update-lua-diffs) and its README entry", diffPath)
	case diff != string(want):
		t.Errorf("output differs from lua5.1 other than recorded in %s:\n%s\nrecorded:\n%s", diffPath, diff, want)
	}
}
