//go:build linux

package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

// startPlaybook starts the guest cold defined by migratePlaybook.
const startPlaybook = `
local colinux = require("colinux")
colinux.network{ bridge = "tfcrash5", subnet = "10.77.235.0/24" }
local g = colinux.get("cold")
g:start()
g:wait_ready{ timeout = 30 }
`

// TestCrashMigrateRunning kills `tinyfarm run` at random moments of an
// offline g:migrate of a RUNNING ns guest (pass 1 while it runs, the far
// receiver and import opened before the stop, the stop, pass 2, the
// import). After every kill the guest is here with its definition
// untouched (and, stopped, a whole disk), or there; nothing the far side
// was waiting with (receiver, import) defined anything; the rerun
// completes the move.
func TestCrashMigrateRunning(t *testing.T) {
	guesttest.NeedRoot(t)
	if testing.Short() {
		t.Skip("runs migrations")
	}
	ctx := context.Background()
	bin := crashtest.Bin(t)
	// The playbook makes the farm bridge; the farm is gone with the test.
	t.Cleanup(func() { farmnet.DeleteBridge("tfcrash5") })
	remote, farState := guesttest.FarHost(t, bin)
	far := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	work, state := t.TempDir(), t.TempDir()
	here := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers()})
	pb, start := filepath.Join(work, "migrate.lua"), filepath.Join(work, "start.lua")
	os.WriteFile(pb, []byte(migratePlaybook), 0o644)
	os.WriteFile(start, []byte(startPlaybook), 0o644)
	base := guesttest.BuildDisk(t, guesttest.Options{StateDir: state})
	disk := filepath.Join(work, "cold.img")
	cmd := func(playbook string, args ...string) crashtest.Cmd {
		args = append([]string{"run", playbook, "-e", "disk=" + disk, "-e", "address=" + remote.Address, "-e", "key=" + remote.Key,
			"-e", "host_key=" + remote.HostKey, "-e", "far=" + farState, "-e", "bin=" + bin}, args...)
		return crashtest.Cmd{Args: args, Env: []string{"TINYFARM_HOME=" + state}, Dir: work}
	}
	t.Cleanup(func() {
		for _, f := range []*farm.Farm{here, far} {
			if g, err := f.Guest(context.Background(), "cold"); err == nil {
				g.Destroy(context.Background(), false)
			}
		}
	})
	defPath := filepath.Join(state, "guests", "cold", "guest.json")
	var def []byte
	running := func(f *farm.Farm) bool {
		g, err := f.Guest(ctx, "cold")
		return err == nil && g.Running(ctx)
	}
	fsck := func(p string) string {
		out, err := exec.Command("e2fsck", "-fn", p).CombinedOutput()
		if err != nil {
			return string(out)
		}
		return ""
	}
	crashtest.RunOp(t, crashtest.Op{
		Name:   "offline g:migrate of a running guest",
		Trials: 3,
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			if g, err := far.Guest(ctx, "cold"); err == nil {
				if err := g.Destroy(ctx, true); err != nil {
					t.Fatal(err)
				}
			}
			os.RemoveAll(filepath.Join(farState, "disks"))
			if out, err := exec.Command("cp", "--sparse=always", base.Path, disk).CombinedOutput(); err != nil {
				t.Fatalf("copy disk: %v\n%s", err, out)
			}
			if _, err := os.Stat(defPath); err != nil {
				crashtest.MustRun(t, cmd(pb, "-e", "define=1"))
			}
			crashtest.MustRun(t, cmd(start))
			def, _ = os.ReadFile(defPath)
			return cmd(pb)
		},
		Check: func(t *testing.T, r crashtest.Result) {
			hereDef, herr := os.ReadFile(defPath)
			_, ferr := far.Get("cold")
			switch {
			case herr == nil:
				if !bytes.Equal(hereDef, def) {
					t.Errorf("%v: the definition here changed:\n%s", r, hereDef)
				}
				if !running(here) {
					if out := fsck(disk); out != "" {
						t.Errorf("%v: the stopped guest's disk here is not whole: %s", r, out)
					}
				}
				// Both only in the window between the import there and
				// the destroy here (the image's sha256 is taken in it), and
				// then with the record a rerun finishes the move from.
				var rec struct{ To string }
				b, _ := os.ReadFile(filepath.Join(filepath.Dir(defPath), "migrating.json"))
				if ferr == nil && (json.Unmarshal(b, &rec) != nil || rec.To == "") {
					t.Errorf("%v: defined here and there, with no record of the import", r)
				}
			case ferr != nil:
				t.Errorf("%v: the guest is neither here (%v) nor there (%v)", r, herr, ferr)
			}
			if out, err := crashtest.Run(t, cmd(pb)); err != nil {
				t.Errorf("%v: rerun: %v\n%s", r, err, out)
			}
			if _, err := os.Stat(defPath); err == nil {
				t.Errorf("%v: still defined here after the rerun", r)
			}
			fd, err := far.Get("cold")
			if err != nil {
				t.Fatalf("%v: not there after the rerun: %v", r, err)
			}
			if !running(far) {
				// Moved stopped by the rerun (a kill after the stop here).
				if out := fsck(fd.Disk); out != "" {
					t.Errorf("%v: the disk there: %s", r, out)
				}
			}
			if m, _ := filepath.Glob(filepath.Join(farState, "disks", "*")); len(m) != 1 {
				t.Errorf("%v: there, disks: %v", r, m)
			}
			if tmp := crashtest.TempFiles(farState); len(tmp) > 0 {
				t.Errorf("%v: temporary files left there: %v", r, strings.Join(tmp, " "))
			}
			if g, err := far.Guest(ctx, "cold"); err == nil {
				g.Stop(ctx, 0) // the next trial destroys it
			}
		},
	})
}
