package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGTERMCancelsAndPrintsRecap: SIGTERM during a blocking call cancels
// it through the context, the recap still prints and the exit code is 130.
func TestSIGTERMCancelsAndPrintsRecap(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	pb := filepath.Join(dir, "long.lua")
	os.WriteFile(pb, []byte(`
local host = require("host")
task("quick", function() end)
task("long", function()
  host.write("started", "yes")
  host.sleep(60)
end)
task("never", function() end)
`), 0o644)
	cmd := exec.Command(bin, "run", "long.lua")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TINYFARM_HOME="+filepath.Join(dir, "state"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "started")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("playbook never reached the long task\n%s%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v, want code 130\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"ok         quick", "failed     long", "RECAP  ok=1 changed=0 failed=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "never") {
		t.Errorf("a task ran after the interrupt:\n%s", out)
	}
	if !strings.Contains(stderr.String(), "long.lua:6:") {
		t.Errorf("stderr lacks the interrupted line:\n%s", stderr.String())
	}
}
