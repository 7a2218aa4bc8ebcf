//go:build linux

package cluster_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/engine"
)

// TestFarRunEndsWithControllerOverSSH: the controller (`tinyfarm run` on
// h1, its cluster.run on h3 through h3's sshd and `tinyfarm machine`) is
// killed by PID while the far playbook waits; the far run ends (its run
// directory on h3 is removed: it ended, not killed) and never reaches its
// next step, even once what it waited for comes.
func TestFarRunEndsWithControllerOverSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: three etcd members and sshds")
	}
	f := newRemoteFarm(t)
	h1, h3 := f.hosts[0], f.hosts[2]
	dir := t.TempDir()
	// Whatever happens, the far run is let go at the end.
	t.Cleanup(func() { os.WriteFile(filepath.Join(dir, "go"), nil, 0o644) })
	far := f.playbook("far-wait.lua", `
local host = require("host")
host.write(vars.dir .. "/far-1", "one\n")
while not host.read(vars.dir .. "/go") do host.sleep(0.05) end
host.write(vars.dir .. "/far-2", "two\n")`)
	pb := f.playbook("controller-wait.lua", `require("cluster").run("h3", "`+far+`", { dir = vars.dir })`)
	cmd := inNS(h1, f.exe, "run", pb, "--json", "-e", "dir="+dir)
	cmd.Env = append(os.Environ(), "TF_CLUSTER_TEST_ROLE=tinyfarm", "TINYFARM_HOME="+h1.home)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	first := "host.write h3:" + filepath.Join(dir, "far-1")
	seen := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var ev engine.Event
			if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Type == "task_end" && ev.Task == first {
				seen <- true
				return
			}
		}
		seen <- false
	}()
	select {
	case ok := <-seen:
		if !ok {
			t.Fatalf("the controller ended before reporting %q: %s", first, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no %q from the controller in 60s: %s", first, stderr.String())
	}
	runs := filepath.Join(h3.home, "machine")
	if left, _ := os.ReadDir(runs); len(left) == 0 {
		t.Fatalf("no far run in %s while it waits", runs)
	}
	killed := time.Now()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no goodbye
		t.Fatal(err)
	}
	for {
		left, _ := os.ReadDir(runs)
		if len(left) == 0 {
			break
		}
		if time.Since(killed) > 30*time.Second {
			t.Fatalf("the far run on h3 still goes on 30s after its controller was killed (%s holds %v)", runs, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the far run ended %v after its controller was killed", time.Since(killed).Round(time.Millisecond))
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // 10 of its polls, had it gone on
	if _, err := os.Stat(filepath.Join(dir, "far-2")); err == nil {
		t.Error("the far run reached its next step after its controller was killed")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "far-1")); !strings.Contains(string(b), "one") {
		t.Errorf("far-1: %q", b)
	}
}
