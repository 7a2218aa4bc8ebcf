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
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

// crashMove is the harness of the migration crash tests: a far tinyfarm
// host (a network namespace with its own dropbear and state dir), a state
// dir here, and the guest "cold" of migratePlaybook on a copy of a built
// disk, moved there by `tinyfarm run`.
type crashMove struct {
	remote          ops.Remote
	bin             string // the tinyfarm binary, here and there
	here, far       *farm.Farm
	state, farState string
	work            string // the playbooks and the guest's disk
	migrate         string // migratePlaybook's path
	base, disk      string // the built disk; the guest's copy of it
	defPath         string // the guest's definition here
}

// newCrashMove makes the harness, the disk built with opts (its StateDir
// set here). Everything goes in t.Cleanup, the guest destroyed here and
// there.
func newCrashMove(t *testing.T, opts guesttest.Options) *crashMove {
	t.Helper()
	guesttest.NeedRoot(t)
	if testing.Short() {
		t.Skip("runs migrations")
	}
	h := &crashMove{bin: crashtest.Bin(t)}
	// The playbook makes the farm bridge; the farm is gone with the test.
	t.Cleanup(func() { farmnet.DeleteBridge("tfcrash5") })
	h.remote, h.farState = guesttest.FarHost(t, h.bin)
	h.far = farm.New(h.farState, farm.Options{Drivers: farm.DefaultDrivers()})
	h.work, h.state = t.TempDir(), t.TempDir()
	h.here = farm.New(h.state, farm.Options{Drivers: farm.DefaultDrivers()})
	h.migrate = h.playbook(t, "migrate.lua", migratePlaybook)
	opts.StateDir = h.state
	h.base = guesttest.BuildDisk(t, opts).Path
	h.disk = filepath.Join(h.work, "cold.img")
	h.defPath = filepath.Join(h.state, "guests", "cold", "guest.json")
	t.Cleanup(func() {
		for _, f := range []*farm.Farm{h.here, h.far} {
			if g, err := f.Guest(context.Background(), "cold"); err == nil {
				g.Destroy(context.Background(), false)
			}
		}
	})
	return h
}

// playbook writes a playbook to the work dir and returns its path.
func (h *crashMove) playbook(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(h.work, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// cmd is `tinyfarm run playbook args...` here, given the far host.
func (h *crashMove) cmd(playbook string, args ...string) crashtest.Cmd {
	args = append([]string{"run", playbook, "-e", "disk=" + h.disk, "-e", "address=" + h.remote.Address, "-e", "key=" + h.remote.Key,
		"-e", "host_key=" + h.remote.HostKey, "-e", "far=" + h.farState, "-e", "bin=" + h.bin}, args...)
	return crashtest.Cmd{Args: args, Env: []string{"TINYFARM_HOME=" + h.state}, Dir: h.work}
}

// reset starts a trial: the guest gone from there, its disk a fresh copy
// of the built one, defined here (again, when a trial moved it).
func (h *crashMove) reset(t *testing.T) {
	t.Helper()
	if g, err := h.far.Guest(context.Background(), "cold"); err == nil {
		if err := g.Destroy(context.Background(), true); err != nil {
			t.Fatal(err)
		}
	}
	os.RemoveAll(filepath.Join(h.farState, "disks"))
	if out, err := exec.Command("cp", "--sparse=always", h.base, h.disk).CombinedOutput(); err != nil {
		t.Fatalf("copy disk: %v\n%s", err, out)
	}
	if _, err := os.Stat(h.defPath); err != nil {
		crashtest.MustRun(t, h.cmd(h.migrate, "-e", "define=1"))
	}
}

// running tells whether the guest runs in f.
func (h *crashMove) running(f *farm.Farm) bool {
	g, err := f.Guest(context.Background(), "cold")
	return err == nil && g.Running(context.Background())
}

// checkKilled checks what a kill left: the guest here with its
// definition as it was before the trial (def) and, stopped, a whole disk,
// or there. It says whether the guest is here and returns its definition
// there (nil when it is not there).
func (h *crashMove) checkKilled(t *testing.T, r crashtest.Result, def []byte) (here bool, there *farm.Definition) {
	t.Helper()
	hereDef, herr := os.ReadFile(h.defPath)
	there, ferr := h.far.Get("cold")
	switch {
	case herr == nil:
		if !bytes.Equal(hereDef, def) {
			t.Errorf("%v: the definition here changed:\n%s", r, hereDef)
		}
		if !h.running(h.here) {
			if out := fsck(h.disk); out != "" {
				t.Errorf("%v: the stopped guest's disk here is not whole: %s", r, out)
			}
		}
	case ferr != nil:
		t.Errorf("%v: the guest is neither here (%v) nor there (%v)", r, herr, ferr)
	}
	if ferr != nil {
		there = nil
	}
	return herr == nil, there
}

// rerunMoves checks that rerunning the migration after r completes the
// move: the guest gone from here, there with one disk (whole, when it is
// not running there), no temporary files left there. It returns the
// guest's definition there.
func (h *crashMove) rerunMoves(t *testing.T, r crashtest.Result) *farm.Definition {
	t.Helper()
	if out, err := crashtest.Run(t, h.cmd(h.migrate)); err != nil {
		t.Errorf("%v: rerun: %v\n%s", r, err, out)
	}
	if _, err := os.Stat(h.defPath); err == nil {
		t.Errorf("%v: still defined here after the rerun", r)
	}
	fd, err := h.far.Get("cold")
	if err != nil {
		t.Fatalf("%v: not there after the rerun: %v", r, err)
	}
	if !h.running(h.far) {
		if out := fsck(fd.Disk); out != "" {
			t.Errorf("%v: the disk there: %s", r, out)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(h.farState, "disks", "*")); len(m) != 1 {
		t.Errorf("%v: there, disks: %v", r, m)
	}
	if tmp := crashtest.TempFiles(h.farState); len(tmp) > 0 {
		t.Errorf("%v: temporary files left there: %v", r, strings.Join(tmp, " "))
	}
	return fd
}

// fsck is what `e2fsck -fn` says about the ext filesystem image p when it
// is not whole, else "".
func fsck(p string) string {
	out, err := exec.Command("e2fsck", "-fn", p).CombinedOutput()
	if err != nil {
		return string(out)
	}
	return ""
}
