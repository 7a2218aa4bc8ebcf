//go:build linux

package persist_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

// crashPlaybook edits every persistence file of a Tiny Core root, one
// call per file: v names the version of the content, so a run with v=2
// over a root a run with v=1 made changes each file.
const crashPlaybook = `
local persist = require("persist")
local root, v = vars.root, vars.v
persist.bootlocal(root, { "echo start " .. v, "/usr/local/bin/svc" .. v .. " &" }, { id = "svc" })
persist.bootsync(root, { "echo sync " .. v }, { id = "sync" })
persist.onboot(root, { "pkg" .. v .. ".tcz", "common.tcz" })
persist.filetool(root, { add = { "etc/conf" .. v }, exclude = { "tmp/x" .. v } })
`

var crashFiles = []string{"opt/bootlocal.sh", "opt/bootsync.sh", "tce/onboot.lst", "opt/.filetool.lst", "opt/.xfiletool.lst"}

// TestCrashPersistEdits kills `tinyfarm run` at random moments of a
// playbook that edits bootlocal.sh, bootsync.sh, onboot.lst and the
// filetool lists: every file must hold its previous or its new content,
// never an empty or truncated one, and a rerun converges (and cleans up
// the temporary files a killed write left).
func TestCrashPersistEdits(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary many times")
	}
	work := t.TempDir()
	pb := filepath.Join(work, "edit.lua")
	if err := os.WriteFile(pb, []byte(crashPlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	run := func(root, v string) crashtest.Cmd {
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		return crashtest.Cmd{Args: []string{"run", pb, "-e", "root=" + root, "-e", "v=" + v}, Env: []string{"TINYFARM_HOME=" + state}, Dir: work}
	}
	read := func(root string) map[string][]byte {
		m := map[string][]byte{}
		for _, f := range crashFiles {
			b, err := os.ReadFile(filepath.Join(root, f))
			if err != nil {
				t.Fatalf("read %s: %v", f, err)
			}
			m[f] = b
		}
		return m
	}
	// The "before" and "after" of every trial.
	ref := filepath.Join(work, "ref")
	crashtest.MustRun(t, run(ref, "1"))
	old := read(ref)
	crashtest.MustRun(t, run(ref, "2"))
	want := read(ref)
	for _, f := range crashFiles {
		if bytes.Equal(old[f], want[f]) {
			t.Fatalf("%s: the playbook does not change it", f)
		}
	}
	var root string
	crashtest.RunOp(t, crashtest.Op{
		Name: "persist edits",
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			root = filepath.Join(work, fmt.Sprintf("trial%d", trial))
			crashtest.MustRun(t, run(root, "1"))
			return run(root, "2")
		},
		Check: func(t *testing.T, r crashtest.Result) {
			for _, f := range crashFiles {
				got, err := os.ReadFile(filepath.Join(root, f))
				if err != nil {
					t.Errorf("%v: read %s: %v", r, f, err)
					continue
				}
				if !bytes.Equal(got, old[f]) && !bytes.Equal(got, want[f]) {
					t.Errorf("%v: %s is neither the old nor the new content:\n%q\nold %q\nnew %q", r, f, got, old[f], want[f])
				}
			}
			out := crashtest.MustRun(t, run(root, "2"))
			if got := read(root); !equalAll(got, want) {
				t.Errorf("%v: rerun did not converge:\n%s", r, out)
			}
			out = crashtest.MustRun(t, run(root, "2"))
			if !strings.Contains(out, "changed=0") {
				t.Errorf("%v: second rerun changed something:\n%s", r, out)
			}
			if tmp := crashtest.TempFiles(root); len(tmp) > 0 {
				t.Errorf("%v: temporary files left after the rerun: %v", r, tmp)
			}
		},
	})
}

func equalAll(a, b map[string][]byte) bool {
	for k := range b {
		if !bytes.Equal(a[k], b[k]) {
			return false
		}
	}
	return true
}
