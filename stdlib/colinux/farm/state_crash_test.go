//go:build linux

package farm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

// statePlaybook writes the state dir's JSON files: the farm network, a
// guest definition (its memory from v) and proxy routes (a vhost
// re-pointed): one write per file, so a kill leaves each file before or
// after its one write.
const statePlaybook = `
local colinux, proxy = require("colinux"), require("proxy")
colinux.network{ bridge = "tfcrash4", subnet = "10.77.233.0/24" }
local g = colinux.guest{ name = "web", disk = vars.disk, mem = (32 * vars.v) .. "M" }
proxy.vhost{ host = "site.test", to = g, port = 8000 + vars.v, replace = true }
`

// stateFiles reads every regular file below the state dir (lock files,
// empty by design, left out).
func stateFiles(t *testing.T, state string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	filepath.WalkDir(state, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, ".lock") || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(state, p)
		m[rel] = b
		return nil
	})
	return m
}

func statePlay(t *testing.T) (run func(state, v string) crashtest.Cmd) {
	t.Helper()
	guesttest.NeedRoot(t)
	if testing.Short() {
		t.Skip("runs the real binary many times")
	}
	work := t.TempDir()
	pb := filepath.Join(work, "state.lua")
	disk := filepath.Join(work, "disk.img")
	if err := os.WriteFile(pb, []byte(statePlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return func(state, v string) crashtest.Cmd {
		return crashtest.Cmd{Args: []string{"run", pb, "-e", "disk=" + disk, "-e", "v=" + v}, Env: []string{"TINYFARM_HOME=" + state}, Dir: work}
	}
}

// TestCrashStateJSON kills `tinyfarm run` at random moments of a playbook
// that rewrites the state dir's JSON files (network.json, a guest.json,
// proxy/routes.json): each must hold its previous or its new content,
// never an empty or truncated one, and a rerun converges.
func TestCrashStateJSON(t *testing.T) {
	run := statePlay(t)
	base := t.TempDir()
	var state string
	var old map[string][]byte
	crashtest.RunOp(t, crashtest.Op{
		Name: "state dir JSON",
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			state = filepath.Join(base, fmt.Sprintf("trial%d", trial))
			crashtest.MustRun(t, run(state, "1"))
			old = stateFiles(t, state)
			return run(state, "2")
		},
		Check: func(t *testing.T, r crashtest.Result) {
			mid := stateFiles(t, state)
			for f, b := range mid {
				if !json.Valid(b) {
					t.Errorf("%v: %s is not JSON after the kill: %q", r, f, b)
				}
			}
			crashtest.MustRun(t, run(state, "2"))
			now := stateFiles(t, state)
			for f, b := range mid {
				if !bytes.Equal(b, old[f]) && !bytes.Equal(b, now[f]) {
					t.Errorf("%v: %s is neither its previous nor its new content:\n%s", r, f, b)
				}
			}
			if out := crashtest.MustRun(t, run(state, "2")); !strings.Contains(out, "changed=0") {
				t.Errorf("%v: second rerun changed something:\n%s", r, out)
			}
			if tmp := crashtest.TempFiles(state); len(tmp) > 0 {
				t.Errorf("%v: temporary files left after the rerun: %v", r, tmp)
			}
			os.RemoveAll(state)
		},
	})
}

// TestStateDirFull: the state dir's file system is full (a 1 MiB tmpfs
// filled up). Every run that must write state (a guest definition, the
// farm network, proxy routes, the handler queue, the farm's SSH key)
// fails with an error naming the file and the space it needed; what is
// there stays intact; once space is freed the rerun converges.
func TestStateDirFull(t *testing.T) {
	run := statePlay(t)
	work := t.TempDir()
	state := t.TempDir()
	if err := syscall.Mount("tmpfs", state, "tmpfs", 0, "size=1m,mode=0700"); err != nil {
		t.Skipf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(state, syscall.MNT_DETACH) })
	crashtest.MustRun(t, run(state, "1"))
	before := stateFiles(t, state)
	// Fill the file system up (dd stops at ENOSPC).
	filler := filepath.Join(state, "filler")
	exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=4k").Run()
	writes := []struct{ name, lua string }{
		{"the state playbook (network, guest.json, routes)", ""},
		{"proxy routes", `require("proxy").vhost{ host = "new.test", to = "127.0.0.1", port = 1 }`},
		{"farm network", `require("colinux").network{ bridge = "tfcrash4", subnet = "10.77.234.0/24" }`},
		{"handler queue", `handler("h", function() end); task("t", function() require("host").write(vars.f, tostring(os.clock())); notify("h"); error("stop") end)`},
		{"farm SSH key", `require("ssh").farm_key()`},
	}
	for _, w := range writes {
		c := run(state, "2")
		if w.lua != "" {
			pb := filepath.Join(work, strings.ReplaceAll(w.name, " ", "_")+".lua")
			os.WriteFile(pb, []byte(w.lua+"\n"), 0o644)
			c.Args = []string{"run", pb, "-e", "f=" + filepath.Join(work, "changed")}
		}
		if w.name == "farm network" {
			// A farm network changes only while no guest is defined.
			c.Env = append(c.Env, "TINYFARM_HOME="+filepath.Join(state, "fresh"))
		}
		if w.name == "farm SSH key" {
			os.RemoveAll(filepath.Join(state, "ssh"))
		}
		out, err := crashtest.Run(t, c)
		if err == nil {
			t.Errorf("%s: a run on a full state dir succeeded:\n%s", w.name, out)
			continue
		}
		t.Logf("%s on a full state dir:\n%s", w.name, out)
		if w.name == "handler queue" {
			// The queue is best effort: its failure is a warning in a
			// run that fails anyway; the queue file must not be emptied.
			if m, _ := filepath.Glob(filepath.Join(state, "handlers", "*.json")); len(m) > 0 {
				t.Errorf("handler queue: %v written on a full file system", m)
			}
			if !strings.Contains(out, "NOT kept for the next run") {
				t.Errorf("handler queue: the run does not say the queue was not kept:\n%s", out)
			}
		}
		if !strings.Contains(out, "no space left on device: needs ") || !strings.Contains(out, "write "+state) {
			t.Errorf("%s: the error does not say which file and how much space:\n%s", w.name, out)
		}
	}
	after := stateFiles(t, state)
	delete(after, "filler")
	for f, b := range before {
		if !bytes.Equal(after[f], b) {
			t.Errorf("%s changed on a full file system:\n%s\nwas\n%s", f, after[f], b)
		}
	}
	if tmp := crashtest.TempFiles(state); len(tmp) > 0 {
		t.Errorf("temporary files left: %v", tmp)
	}
	os.Remove(filler)
	crashtest.MustRun(t, run(state, "2"))
	if out := crashtest.MustRun(t, run(state, "2")); !strings.Contains(out, "changed=0") {
		t.Errorf("rerun after freeing space changed something:\n%s", out)
	}
}
