//go:build linux

package ops_test

import (
	"bytes"
	"context"
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

// migratePlaybook defines the stopped guest cold (with vars.define) or
// moves it to the far host unless it is gone from here already: what a
// user reruns after a failed move.
const migratePlaybook = `
local colinux = require("colinux")
colinux.network{ bridge = "tfcrash5", subnet = "10.77.235.0/24" }
if vars.define then
  colinux.guest{ name = "cold", disk = vars.disk, mem = "64M" }
  return
end
local g = colinux.get("cold")
if g then
  g:migrate{ to = { address = vars.address, key = vars.key, host_key = vars.host_key, state_dir = vars.far, binary = vars.bin } }
end
`

// TestCrashMigrateOffline kills `tinyfarm run` at random moments of an
// offline g:migrate of a stopped ns guest to another tinyfarm host (a
// network namespace with its own dropbear and state dir). After every
// kill the guest is here with its definition untouched and a whole disk,
// or there; what is registered there has a whole disk; the rerun
// completes the move.
func TestCrashMigrateOffline(t *testing.T) {
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
	pb := filepath.Join(work, "migrate.lua")
	if err := os.WriteFile(pb, []byte(migratePlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	disk := filepath.Join(work, "cold.img")
	cmd := func(args ...string) crashtest.Cmd {
		args = append([]string{"run", pb, "-e", "disk=" + disk, "-e", "address=" + remote.Address, "-e", "key=" + remote.Key,
			"-e", "host_key=" + remote.HostKey, "-e", "far=" + farState, "-e", "bin=" + bin}, args...)
		return crashtest.Cmd{Args: args, Env: []string{"TINYFARM_HOME=" + state}, Dir: work}
	}
	defPath := filepath.Join(state, "guests", "cold", "guest.json")
	var def []byte
	fsck := func(p string) error {
		out, err := exec.Command("e2fsck", "-fn", p).CombinedOutput()
		if err != nil {
			return &exec.ExitError{Stderr: out}
		}
		return nil
	}
	crashtest.RunOp(t, crashtest.Op{
		Name:   "offline g:migrate",
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
				crashtest.MustRun(t, cmd("-e", "define=1"))
			}
			def, _ = os.ReadFile(defPath)
			return cmd()
		},
		Check: func(t *testing.T, r crashtest.Result) {
			here, herr := os.ReadFile(defPath)
			fd, ferr := far.Get("cold")
			switch {
			case herr == nil:
				if !bytes.Equal(here, def) {
					t.Errorf("%v: the definition here changed:\n%s", r, here)
				}
				if err := fsck(disk); err != nil {
					t.Errorf("%v: the disk here is not whole: %s", r, err.(*exec.ExitError).Stderr)
				}
			case ferr != nil:
				t.Errorf("%v: the guest is neither here (%v) nor there (%v)", r, herr, ferr)
			}
			if ferr == nil {
				if err := fsck(fd.Disk); err != nil {
					t.Errorf("%v: registered there with a disk that is not whole: %s", r, err.(*exec.ExitError).Stderr)
				}
			}
			if out, err := crashtest.Run(t, cmd()); err != nil {
				t.Errorf("%v: rerun: %v\n%s", r, err, out)
			}
			if _, err := os.Stat(defPath); err == nil {
				t.Errorf("%v: still defined here after the rerun", r)
			}
			fd, err := far.Get("cold")
			if err != nil {
				t.Fatalf("%v: not there after the rerun: %v", r, err)
			}
			if err := fsck(fd.Disk); err != nil {
				t.Errorf("%v: the disk there: %s", r, err.(*exec.ExitError).Stderr)
			}
			if m, _ := filepath.Glob(filepath.Join(farState, "disks", "*")); len(m) != 1 {
				t.Errorf("%v: there, disks: %v", r, m)
			}
			// The disk edited offline (the far farm's key) is mounted
			// while it is edited: nothing of it may stay mounted.
			for _, d := range []string{disk, fd.Disk} {
				if out, _ := exec.Command("losetup", "-j", d).Output(); len(bytes.TrimSpace(out)) > 0 {
					t.Errorf("%v: loop device left on %s: %s", r, d, out)
				}
			}
			if tmp := crashtest.TempFiles(farState); len(tmp) > 0 {
				t.Errorf("%v: temporary files left there: %v", r, strings.Join(tmp, " "))
			}
		},
	})
}
