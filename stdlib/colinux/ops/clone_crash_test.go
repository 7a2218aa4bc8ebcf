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
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

const (
	cloneBridge = "tfcrash2"
	cloneSubnet = "10.77.231.0/24"
)

// clonePlaybook clones the running guest src as copy unless copy exists:
// what a user reruns after a failed clone.
const clonePlaybook = `
local colinux = require("colinux")
colinux.network{ bridge = "` + cloneBridge + `", subnet = "` + cloneSubnet + `" }
if vars.disk then
  local g = colinux.guest{ name = "src", disk = vars.disk, mem = "64M" }
  g:start()
end
if not colinux.get("copy") then colinux.get("src"):clone{ name = "copy" } end
`

// TestCrashCloneRunning kills `tinyfarm run` at random moments of a
// g:clone of a running ns guest (default configuration: user namespace,
// bridge). After every kill the source's definition is untouched; once
// the rerun has run, the source runs (not paused, its file system
// writable), the clone is registered with a whole disk of its own
// (e2fsck clean, its own hostname), and nothing else is left beside the
// disks.
func TestCrashCloneRunning(t *testing.T) {
	guesttest.NeedRoot(t)
	if testing.Short() {
		t.Skip("boots guests")
	}
	ctx := context.Background()
	work, state := t.TempDir(), t.TempDir()
	pb := filepath.Join(work, "clone.lua")
	if err := os.WriteFile(pb, []byte(clonePlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	disks := filepath.Join(work, "disks")
	os.MkdirAll(disks, 0o755)
	base := guesttest.BuildDisk(t, guesttest.Options{})
	srcDisk := filepath.Join(disks, "src.img")
	if err := os.Rename(base.Path, srcDisk); err != nil {
		t.Fatal(err)
	}
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: cloneBridge, Subnet: cloneSubnet})
	t.Cleanup(func() {
		for _, n := range []string{"copy", "src"} {
			if g, err := fm.Guest(context.Background(), n); err == nil {
				g.Destroy(context.Background(), false)
			}
		}
		guesttest.KillDHCP(state, cloneBridge)
		ns.DeleteBridge(cloneBridge)
	})
	cmd := func(args ...string) crashtest.Cmd {
		return crashtest.Cmd{Args: append([]string{"run", pb}, args...), Env: []string{"TINYFARM_HOME=" + state}, Dir: work}
	}
	crashtest.MustRun(t, cmd("-e", "disk="+srcDisk))
	srcDef, err := os.ReadFile(filepath.Join(state, "guests", "src", "guest.json"))
	if err != nil {
		t.Fatal(err)
	}
	srcOK := func(t *testing.T, r crashtest.Result) {
		t.Helper()
		g, err := fm.Guest(ctx, "src")
		if err != nil {
			t.Fatalf("%v: source: %v", r, err)
		}
		if st, _ := g.Status(ctx); st.State != driver.Running {
			t.Errorf("%v: source is %s (%s), want running", r, st.State, st.Reason)
			return
		}
		res, err := g.Exec(ctx, []string{"/bin/sh", "-c", "echo x > /root/probe && sync"}, driver.ExecOptions{Timeout: 5 * time.Second})
		if err != nil || res.Code != 0 {
			t.Errorf("%v: the source cannot write its file system: %v %s", r, err, res.Stderr)
		}
	}
	crashtest.RunOp(t, crashtest.Op{
		Name: "g:clone of a running ns guest",
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			if g, err := fm.Guest(ctx, "copy"); err == nil {
				if err := g.Destroy(ctx, true); err != nil {
					t.Fatal(err)
				}
			}
			return cmd()
		},
		Check: func(t *testing.T, r crashtest.Result) {
			if b, _ := os.ReadFile(filepath.Join(state, "guests", "src", "guest.json")); !bytes.Equal(b, srcDef) {
				t.Errorf("%v: the source's definition changed:\n%s", r, b)
			}
			if d, err := fm.Get("copy"); err == nil {
				if out, err := exec.Command("e2fsck", "-fn", d.Disk).CombinedOutput(); err != nil {
					t.Errorf("%v: a registered clone's disk is not whole: %v\n%s", r, err, out)
				}
			}
			out, err := crashtest.Run(t, cmd())
			if err != nil {
				t.Errorf("%v: rerun: %v\n%s", r, err, out)
			}
			srcOK(t, r)
			d, err := fm.Get("copy")
			if err != nil {
				t.Fatalf("%v: no clone after the rerun: %v", r, err)
			}
			if out, err := exec.Command("e2fsck", "-fn", d.Disk).CombinedOutput(); err != nil {
				t.Errorf("%v: the clone's disk: %v\n%s", r, err, out)
			}
			if h, _ := exec.Command("debugfs", "-R", "cat /etc/hostname", d.Disk).Output(); strings.TrimSpace(string(h)) != "copy" {
				t.Errorf("%v: the clone's hostname is %q", r, h)
			}
			ents, _ := os.ReadDir(disks)
			var names []string
			for _, e := range ents {
				names = append(names, e.Name())
			}
			if strings.Join(names, " ") != "copy.img src.img" {
				t.Errorf("%v: beside the disks: %v", r, names)
			}
		},
	})
}
