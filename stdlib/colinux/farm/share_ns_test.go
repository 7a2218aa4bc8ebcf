//go:build linux

package farm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// TestShareNS: host directories shared into a namespace guest show their
// files; a read-only share refuses writes; shares are in the definition
// and survive a restart; a namespace guest cannot be checkpointed here
// (no working CRIU) and says why.
//
// It runs in each isolation mode the README offers: the default user
// namespace (the shares idmapped like the disk, so a host file owned by 0
// is the guest root's and one owned by 1001 is tc's) and userns = false.
// (Frugal ns guests, the other mode without a user namespace, are refused
// when defined: see TestDefineValidatesAndKeepsIdentity.)
func TestShareNS(t *testing.T) {
	guesttest.NeedRoot(t)
	for _, mode := range []struct {
		name   string
		userns bool
	}{{"userns", true}, {"root", false}} {
		t.Run(mode.name, func(t *testing.T) {
			if mode.userns && !ns.UserNSAvailable() {
				t.Skip("no user namespaces with idmapped mounts here")
			}
			disk := guesttest.BuildDisk(t, guesttest.Options{})
			testShareNS(t, farm.Definition{Name: "sharer", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20, UserNS: mode.userns})
		})
	}
}

func testShareNS(t *testing.T, def farm.Definition) {
	ctx := context.Background()
	state := t.TempDir()
	fm := guesttest.OpsFarm(t, state)
	if _, err := fm.Define(def, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, "sharer")
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	rw, ro := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(ro, "hello.txt"), []byte("from the host\n"), 0o644)
	os.WriteFile(filepath.Join(ro, "tc.txt"), []byte("tc's\n"), 0o644)
	os.Chown(filepath.Join(ro, "tc.txt"), 1001, 50)
	os.Chmod(rw, 0o777)
	r1, err := g.Share(ctx, farm.ShareOptions{HostPath: ro, GuestPath: "/mnt/ro", ReadOnly: true})
	if err != nil || !r1.Changed || r1.Pending {
		t.Fatalf("share ro: %+v %v", r1, err)
	}
	if _, err := g.Share(ctx, farm.ShareOptions{HostPath: rw, GuestPath: "/mnt/rw"}); err != nil {
		t.Fatal(err)
	}
	if again, err := g.Share(ctx, farm.ShareOptions{HostPath: ro, GuestPath: "/mnt/ro", ReadOnly: true}); err != nil || again.Changed {
		t.Errorf("the same share again: %+v %v, want unchanged", again, err)
	}
	if _, err := g.Share(ctx, farm.ShareOptions{HostPath: "relative", GuestPath: "/x"}); !errors.Is(err, farm.ErrInvalid) {
		t.Errorf("relative host path: %v", err)
	}
	for boot := 1; boot <= 2; boot++ {
		if _, err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := g.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := guesttest.MustExec(t, g, "cat /mnt/ro/hello.txt"); got != "from the host" {
			t.Errorf("boot %d: ro share shows %q", boot, got)
		}
		r, err := g.Exec(ctx, []string{"/bin/sh", "-c", "echo x > /mnt/ro/new"}, driver.ExecOptions{})
		if err != nil || r.Code == 0 || !strings.Contains(string(r.Stderr), "Read-only") {
			t.Errorf("boot %d: write into the ro share: code %d, %s, %v", boot, r.Code, r.Stderr, err)
		}
		if _, err := os.Stat(filepath.Join(ro, "new")); err == nil {
			t.Errorf("boot %d: the ro share was written", boot)
		}
		// Owners as the guest sees them: numeric, so no passwd lookups.
		if got := guesttest.MustExec(t, g, "ls -ln /mnt/ro/hello.txt /mnt/ro/tc.txt | awk '{print $3}' | tr '\\n' ' '"); got != "0 1001" {
			t.Errorf("boot %d: owners of host files (0 and 1001) in the guest: %q", boot, got)
		}
		guesttest.MustExec(t, g, "echo boot"+strconv.Itoa(boot)+" > /mnt/rw/out")
		if fi, err := os.Stat(filepath.Join(rw, "out")); err != nil {
			t.Error(err)
		} else if fileOwner(fi) != 0 {
			t.Errorf("boot %d: a file the guest root wrote into the share: host owner %d, want 0", boot, fileOwner(fi))
		}
		if b, _ := os.ReadFile(filepath.Join(rw, "out")); string(b) != "boot"+strconv.Itoa(boot)+"\n" {
			t.Errorf("boot %d: rw share: host sees %q", boot, b)
		}
		if boot == 1 {
			// A share added to a running guest is recorded, pending.
			extra := t.TempDir()
			r, err := g.Share(ctx, farm.ShareOptions{HostPath: extra, GuestPath: "/mnt/extra"})
			if err != nil || !r.Changed || !r.Pending || !strings.Contains(r.Detail, "next start") {
				t.Errorf("share into a running guest: %+v %v", r, err)
			}
			os.WriteFile(filepath.Join(extra, "late"), []byte("late\n"), 0o644)
			// A stateful checkpoint of an ns guest needs CRIU.
			file := filepath.Join(t.TempDir(), "ns.ckpt")
			_, err = ops.Checkpoint(ctx, g, file)
			if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), "CRIU") {
				t.Errorf("ns checkpoint: %v, want unsupported naming CRIU", err)
			} else {
				t.Logf("ns checkpoint: %v", err)
			}
			if _, err := os.Stat(file); err == nil {
				t.Error("unsupported checkpoint wrote a file")
			}
			if _, err := g.Stop(ctx, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := guesttest.MustExec(t, g, "cat /mnt/extra/late"); got != "late" {
		t.Errorf("share added while running, after restart: %q", got)
	}
	d, _ := fm.Get("sharer")
	if len(d.Shares) != 3 {
		t.Errorf("definition shares: %+v", d.Shares)
	}
	if _, err := g.Unshare(ctx, "/mnt/extra", farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	if d, _ := fm.Get("sharer"); len(d.Shares) != 2 {
		t.Errorf("after unshare: %+v", d.Shares)
	}
	// A share whose host directory went away: start fails at once, says
	// nothing started, and names the host path (not a descriptor).
	if _, err := g.Stop(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(t.TempDir(), "gone")
	os.Mkdir(gone, 0o755)
	if _, err := g.Share(ctx, farm.ShareOptions{HostPath: gone, GuestPath: "/mnt/gone"}); err != nil {
		t.Fatal(err)
	}
	os.Remove(gone)
	changed, err := g.Start(ctx)
	if err == nil || changed || !strings.Contains(err.Error(), gone) || strings.Contains(err.Error(), "/proc/self/fd") {
		t.Errorf("start with a vanished share: changed %v, %v; want an error naming %s", changed, err, gone)
	} else {
		t.Logf("start with a vanished share: %v", err)
	}
	if g.Running(ctx) {
		t.Error("the guest runs without its share")
	}
}
