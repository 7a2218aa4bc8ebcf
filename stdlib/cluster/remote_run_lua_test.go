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

// TestRunStreamsOverSSH: `tinyfarm run --json` on h1 prints the change of
// a cluster.run on h3 (through h3's sshd and `tinyfarm machine`) while the
// far playbook still runs: the far run waits for a file the test creates
// only once it has read that change from h1's output. The recap counts
// each far change once.
func TestRunStreamsOverSSH(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: three etcd members and sshds")
	}
	f := newRemoteFarm(t)
	h1 := f.hosts[0]
	dir := t.TempDir()
	far := f.playbook("far-stream.lua", `
local host = require("host")
host.write(vars.dir .. "/far-1", "one\n")
log("far waits for go")
while not host.read(vars.dir .. "/go") do host.sleep(0.05) end
host.write(vars.dir .. "/far-2", "two\n")`)
	pb := f.playbook("controller-stream.lua", `
local r = require("cluster").run("h3", "`+far+`", { dir = vars.dir })
log("far recap: changed " .. r.changed .. " of " .. r.tasks)`)
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
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var all []string
	var evs []engine.Event
	next := func() (engine.Event, bool) {
		select {
		case l, ok := <-lines:
			if !ok {
				return engine.Event{}, false
			}
			all = append(all, l)
			var ev engine.Event
			json.Unmarshal([]byte(l), &ev)
			evs = append(evs, ev)
			return ev, true
		case <-time.After(60 * time.Second):
			t.Fatalf("no output from the controller for 60s; so far:\n%s\n%s", strings.Join(all, "\n"), stderr.String())
		}
		return engine.Event{}, false
	}
	first := "host.write h3:" + filepath.Join(dir, "far-1")
	for {
		ev, ok := next()
		if !ok {
			t.Fatalf("the controller ended before reporting %q:\n%s\n%s", first, strings.Join(all, "\n"), stderr.String())
		}
		if ev.Type == "task_end" && ev.Task == first {
			break
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "far-2")); err == nil {
		t.Fatal("the far run went on before the test let it")
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, ok := next(); ok; _, ok = next() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("controller: %v\n%s\n%s", err, strings.Join(all, "\n"), stderr.String())
	}
	got, lg := changes(evs), logs(evs)
	for _, p := range []string{"far-1", "far-2"} {
		if s := got["h3:"+filepath.Join(dir, p)]; s != engine.StatusChanged {
			t.Errorf("far change %s: %q", p, s)
		}
	}
	for _, want := range []string{"h3: far waits for go", "far recap: changed 2 of 2"} {
		if !strings.Contains(lg, want) {
			t.Errorf("logs lack %q:\n%s", want, lg)
		}
	}
	var rec *engine.Recap
	for _, ev := range evs {
		if ev.Type == "recap" {
			rec = ev.Recap
		}
	}
	if rec == nil || rec.Tasks != 2 || rec.Changed != 2 || rec.Failed != 0 {
		t.Errorf("controller recap %+v, want 2 tasks, 2 changed", rec)
	}
	if t.Failed() {
		t.Logf("output:\n%s", strings.Join(all, "\n"))
	}
}
