//go:build linux

package tcz_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

const crashInstall = `
local tcz = require("tcz")
tcz.mirror{ url = vars.mirror, kernel = vars.kernel }
task("install", function() tcz.install(vars.root, vars.pkg) end)
`

// TestCrashInstallDir kills `tinyfarm run` at random moments of a
// tcz.install of openssh (and its dependencies) into a directory. After
// every kill, each extension whose marker is there is fully there (its
// files as a clean install writes them, and its file list); the next run
// reports changed when a marker was missing and then leaves exactly the
// tree a clean install makes; the run after it is ok.
func TestCrashInstallDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary many times")
	}
	rel := minicore.Require(t)
	work, state := t.TempDir(), t.TempDir()
	pb := filepath.Join(work, "install.lua")
	if err := os.WriteFile(pb, []byte(crashInstall), 0o644); err != nil {
		t.Fatal(err)
	}
	const pkg = "openssh"
	run := func(root string) crashtest.Cmd {
		if err := os.MkdirAll(root, 0o755); err != nil {
			t.Fatal(err)
		}
		return crashtest.Cmd{
			Args: []string{"run", pb, "-e", "root=" + root, "-e", "pkg=" + pkg, "-e", "mirror=file://" + rel.Mirror, "-e", "kernel=" + rel.KernelVersion},
			Env:  []string{"TINYFARM_HOME=" + state}, Dir: work,
		}
	}
	ref := filepath.Join(work, "ref")
	crashtest.MustRun(t, run(ref)) // also fills the download cache
	want := crashtest.Tree(t, ref)
	markers, _ := filepath.Glob(filepath.Join(ref, tcz.InstalledDir, "[^.]*"))
	if len(markers) < 3 {
		t.Fatalf("%s installed %d extensions, want it with its dependencies", pkg, len(markers))
	}
	var root string
	crashtest.RunOp(t, crashtest.Op{
		Name: "tcz.install into a directory",
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			root = filepath.Join(work, fmt.Sprintf("trial%d", trial))
			return run(root)
		},
		Check: func(t *testing.T, r crashtest.Result) {
			got := crashtest.Tree(t, root)
			complete := true
			for _, m := range markers {
				name := filepath.Base(m)
				if _, ok := got[tcz.InstalledDir+"/"+name]; !ok {
					complete = false
					continue
				}
				// Marked: every file of its list is there as a clean
				// install leaves it, and so is the list.
				for _, f := range ownFiles(t, ref, name) {
					if got[f] != want[f] {
						t.Errorf("%v: %s is marked installed but %s is %q, want %q", r, name, f, got[f], want[f])
					}
				}
			}
			out := crashtest.MustRun(t, run(root))
			if changed := !strings.Contains(out, "changed=0"); changed == complete {
				t.Errorf("%v: rerun after a kill that left every marker=%v reported changed=%v:\n%s", r, complete, changed, out)
			}
			if d := crashtest.DiffTrees(want, crashtest.Tree(t, root)); len(d) > 0 {
				t.Errorf("%v: after the rerun the tree differs from a clean install:\n%s", r, strings.Join(d, "\n"))
			}
			if tmp := crashtest.TempFiles(root); len(tmp) > 0 {
				t.Errorf("%v: temporary files left after the rerun: %v", r, tmp)
			}
			if out := crashtest.MustRun(t, run(root)); !strings.Contains(out, "changed=0") {
				t.Errorf("%v: second rerun changed something:\n%s", r, out)
			}
			os.RemoveAll(root)
		},
	})
}

// ownFiles lists what the clean install in ref records as name's files
// (its list in tcz.FilesDir), with the list itself.
func ownFiles(t *testing.T, ref, name string) []string {
	t.Helper()
	lst := tcz.FilesDir + "/" + name + ".list"
	b, err := os.ReadFile(filepath.Join(ref, lst))
	if err != nil {
		t.Fatal(err)
	}
	return append(strings.Fields(string(b)), lst)
}
