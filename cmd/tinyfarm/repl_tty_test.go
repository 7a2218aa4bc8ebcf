package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildBinary builds the tinyfarm command once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tinyfarm-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "tinyfarm")
		if out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// TestREPLUnderTTY drives `tinyfarm repl` in a real terminal (tmux): tab
// completion of globals, module members and option names, expression
// printing, multi-line chunks (one history entry), :help, Ctrl-C
// cancelling a running call without ending the session, and Ctrl-D
// leaving it.
func TestREPLUnderTTY(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and drives tmux")
	}
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed (scripts/deps.sh installs it)")
	}
	dir := t.TempDir()
	bin := buildBinary(t)
	sock := fmt.Sprintf("tftest%d", os.Getpid())
	tmux := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("tmux", append([]string{"-L", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	tmux("-f", "/dev/null", "new-session", "-d", "-s", "repl", "-x", "150", "-y", "50",
		"env", "TINYFARM_HOME="+filepath.Join(dir, "state"), "TERM=xterm", bin, "repl")
	t.Cleanup(func() { exec.Command("tmux", "-L", sock, "kill-server").Run() })

	screen := func() string { return tmux("capture-pane", "-p", "-t", "repl") }
	waitFor := func(what string) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			s := screen()
			if strings.Contains(s, what) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("screen never showed %q:\n%s", what, s)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("tinyfarm>")

	// Global completion: "hos<Tab>" becomes "host".
	tmux("send-keys", "-t", "repl", "x = hos", "Tab")
	waitFor("x = host")
	tmux("send-keys", "-t", "repl", "C-u")

	// Member completion lists the module's functions.
	tmux("send-keys", "-t", "repl", "host.", "Tab", "Tab")
	s := waitFor("sleep")
	for _, m := range []string{"read", "run", "write"} {
		if !strings.Contains(s, m) {
			t.Errorf("completion of host. lacks %q:\n%s", m, s)
		}
	}
	tmux("send-keys", "-t", "repl", "C-u")

	// Expressions print without return; tables pretty-print.
	tmux("send-keys", "-t", "repl", "20 + 22", "Enter")
	waitFor("\n42")
	tmux("send-keys", "-t", "repl", "({a = 1, b = {2, 3}})", "Enter")
	waitFor(`{ a = 1, b = { 2, 3 } }`)

	// A multi-line chunk continues until complete.
	tmux("send-keys", "-t", "repl", "function sq(x)", "Enter")
	waitFor("      ...")
	tmux("send-keys", "-t", "repl", "return x * x end", "Enter")
	tmux("send-keys", "-t", "repl", "sq(12)", "Enter")
	waitFor("\n144")

	// The multi-line chunk is one history entry: Up recalls it joined.
	tmux("send-keys", "-t", "repl", "Up", "Up")
	waitFor("tinyfarm> function sq(x) return x * x end")
	tmux("send-keys", "-t", "repl", "C-u")

	// Option names complete inside a documented call's {...}.
	tmux("send-keys", "-t", "repl", "colinux.guest{ name = 'x', me", "Tab")
	waitFor("colinux.guest{ name = 'x', mem =") // tmux trims the trailing space
	tmux("send-keys", "-t", "repl", "C-u")

	// :help shows tinyfarm doc's text; a multi-line string prints as lines.
	tmux("send-keys", "-t", "repl", ":help retry", "Enter")
	waitFor("delay multiplier after each attempt")
	tmux("send-keys", "-t", "repl", `"first\nsecond"`, "Enter")
	waitFor("\nfirst\nsecond\n")

	// Ctrl-C cancels a running call and keeps the session.
	tmux("send-keys", "-t", "repl", "host.sleep(60)", "Enter")
	time.Sleep(300 * time.Millisecond)
	tmux("send-keys", "-t", "repl", "C-c")
	waitFor("context canceled")
	tmux("send-keys", "-t", "repl", "print('still here')", "Enter")
	waitFor("\nstill here")

	// Ctrl-D leaves.
	tmux("send-keys", "-t", "repl", "C-d")
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("tmux", "-L", sock, "list-panes", "-t", "repl", "-F", "#{pane_dead}").CombinedOutput()
		if err := exec.Command("tmux", "-L", sock, "has-session", "-t", "repl").Run(); err != nil || strings.TrimSpace(string(out)) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ctrl-D did not end the REPL:\n%s", screen())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "repl_history")); err != nil {
		t.Errorf("no history file: %v", err)
	}
}
