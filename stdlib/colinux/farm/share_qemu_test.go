//go:build linux

package farm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// TestShareQemu: two host directories shared into a qemu guest before it
// starts (one read-write, one read-only at a path with a space) are
// mounted by WaitReady over virtio-9p: host files are read in the guest,
// guest files show on the host, the read-only share refuses writes,
// symlinks and device nodes made in the guest do not reach host files
// outside the share (security_model=mapped-xattr), a second WaitReady
// mounts nothing twice, a share added while running is pending without
// failing, after a restart every share is mounted again, and a guest
// kernel without 9p is a clear error.
func TestShareQemu(t *testing.T) {
	guesttest.NeedVM(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: guesttest.OpsBridge, Subnet: guesttest.OpsSubnet})
	rw, ro, extra := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(rw, "in.txt"), "rw from the host\n")
	writeFile(t, filepath.Join(ro, "hello.txt"), "ro from the host\n")
	writeFile(t, filepath.Join(extra, "late.txt"), "late\n")
	const rwPath, roPath = "/mnt/rw", "/mnt/host ro" // a space: quoting, /proc/mounts escapes
	t0 := time.Now()
	g, boot := guesttest.QemuGuestWith(t, fm, state, farm.Definition{Name: "sharevm", MemBytes: 160 << 20},
		guesttest.QemuOptions{BeforeStart: func(g *farm.Guest) {
			for _, o := range []farm.ShareOptions{{HostPath: rw, GuestPath: rwPath}, {HostPath: ro, GuestPath: roPath, ReadOnly: true}} {
				r, err := g.Share(ctx, o)
				if err != nil || !r.Changed || r.Pending || !strings.Contains(r.Detail, "mounted in the guest") {
					t.Fatalf("share %s: %+v %v", o.GuestPath, r, err)
				}
			}
		}})
	t.Logf("boot with two shares to SSH-ready and mounted: %v", boot)
	t.Cleanup(func() {
		if t.Failed() {
			con, _ := g.Console(40)
			t.Logf("console of %s:\n%s", g.Def.Name, con)
		}
	})

	mounts := func(want int) {
		t.Helper()
		got := guesttest.MustExec(t, g, "grep ' 9p ' /proc/mounts || true")
		lines := strings.Split(got, "\n")
		if got == "" {
			lines = nil
		}
		if len(lines) != want {
			t.Fatalf("9p mounts: want %d, got:\n%s", want, got)
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if f[1] == `/mnt/host\040ro` && !slices.Contains(strings.Split(f[3], ","), "ro") {
				t.Errorf("the ro share is mounted read-write: %s", l)
			}
		}
	}
	mounts(2)

	// Host -> guest, both shares; a host file written after the mount, too.
	if got := guesttest.MustExec(t, g, cat9p("/mnt/rw/in.txt '/mnt/host ro/hello.txt'")); got != "rw from the host\nro from the host" {
		t.Errorf("host files in the guest: %q", got)
	}
	writeFile(t, filepath.Join(rw, "later.txt"), "written after the mount\n")
	if got := guesttest.MustExec(t, g, cat9p("/mnt/rw/later.txt")); got != "written after the mount" {
		t.Errorf("a host file written after the mount: %q", got)
	}

	// Guest -> host in the rw share.
	guesttest.MustExec(t, g, "echo from the guest > /mnt/rw/out.txt && mkdir /mnt/rw/sub && echo deep > /mnt/rw/sub/f")
	if b, err := os.ReadFile(filepath.Join(rw, "out.txt")); err != nil || string(b) != "from the guest\n" {
		t.Errorf("guest file on the host: %q %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(rw, "sub", "f")); string(b) != "deep\n" {
		t.Errorf("guest file in a new directory on the host: %q", b)
	}

	// The ro share refuses writes; the host directory is unchanged.
	for _, cmd := range []string{"echo x > '/mnt/host ro/new'", "echo x >> '/mnt/host ro/hello.txt'", "rm '/mnt/host ro/hello.txt'", "mkdir '/mnt/host ro/d'"} {
		r, err := g.Exec(ctx, []string{"/bin/sh", "-c", cmd}, driver.ExecOptions{})
		if err != nil || r.Code == 0 || !strings.Contains(string(r.Stderr), "Read-only") {
			t.Errorf("%s in the ro share: code %d, %q, %v", cmd, r.Code, r.Stderr, err)
		}
	}
	if names := dirNames(t, ro); !slices.Equal(names, []string{"hello.txt"}) {
		t.Errorf("ro share on the host: %v", names)
	}
	if b, _ := os.ReadFile(filepath.Join(ro, "hello.txt")); string(b) != "ro from the host\n" {
		t.Errorf("ro share file on the host: %q", b)
	}

	// Escapes. The guest resolves symlinks and ".." itself, so a link to /
	// made in the share leads to the guest's own /etc/shadow; a symlink to
	// / that the host put into the share does not resolve; ".." at the
	// share's root is the guest's /mnt. None reaches the host's files.
	hostShadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		t.Fatal(err)
	}
	guestShadow := guesttest.MustExec(t, g, "cat /etc/shadow")
	if err := os.Symlink("/", filepath.Join(rw, "hostlink")); err != nil {
		t.Fatal(err)
	}
	guesttest.MustExec(t, g, "ln -s / /mnt/rw/guestlink && ln -s ../../../../../../etc /mnt/rw/uplink")
	for _, p := range []string{"/mnt/rw/guestlink/etc/shadow", "/mnt/rw/uplink/shadow", "/mnt/rw/hostlink/etc/shadow", "/mnt/rw/../../etc/shadow", "/mnt/rw/sub/../../../etc/shadow"} {
		r, err := g.Exec(ctx, []string{"/bin/sh", "-c", cat9p(p)}, driver.ExecOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := bytes.TrimSpace(r.Stdout)
		if len(out) > 0 && bytes.Equal(out, bytes.TrimSpace(hostShadow)) {
			t.Errorf("cat %s in the guest read the host's /etc/shadow", p)
		}
		if r.Code == 0 && string(out) != guestShadow {
			t.Errorf("cat %s in the guest: %q, neither the guest's /etc/shadow nor an error", p, out)
		}
		t.Logf("cat %s: exit %d, %d bytes, the guest's own shadow: %v %s", p, r.Code, len(out), r.Code == 0 && string(out) == guestShadow, bytes.TrimSpace(r.Stderr))
	}
	// mapped-xattr: what the guest makes is a plain root-owned file (or
	// directory) on the host, whatever owner, mode or type the guest sees.
	guesttest.MustExec(t, g, "mknod /mnt/rw/disk b 8 0 && chown 1001:50 /mnt/rw/out.txt && chmod 4755 /mnt/rw/out.txt")
	if got := guesttest.MustExec(t, g, "ls -ln /mnt/rw/out.txt /mnt/rw/disk /mnt/rw/guestlink | cut -c1-10"); got != "brw-r--r--\nlrwxrwxrwx\n-rwsr-xr-x" {
		t.Errorf("in the guest, the device, setuid file and symlink show as:\n%s", got)
	}
	for _, name := range []string{"out.txt", "disk", "guestlink", "sub/f", "sub"} {
		fi, err := os.Lstat(filepath.Join(rw, name))
		if err != nil {
			t.Fatal(err)
		}
		want := os.FileMode(0o600)
		if name == "sub" {
			want = os.ModeDir | 0o700
		}
		if fi.Mode() != want || fileOwner(fi) != 0 {
			t.Errorf("host %s: mode %v, owner %d: want %v, root", name, fi.Mode(), fileOwner(fi), want)
		}
	}

	// WaitReady again mounts nothing twice; a share added while the guest
	// runs is pending (QEMU has no device for it yet) and not an error.
	if r, err := g.Share(ctx, farm.ShareOptions{HostPath: extra, GuestPath: "/mnt/extra", ReadOnly: true}); err != nil || !r.Pending {
		t.Fatalf("share into the running guest: %+v %v", r, err)
	}
	if err := g.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	mounts(2)

	// Restart: every share is mounted again, the late one too.
	t1 := time.Now()
	if _, err := g.Stop(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := g.WaitReady(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart to SSH-ready with three shares mounted: %v", time.Since(t1))
	mounts(3)
	if got := guesttest.MustExec(t, g, cat9p("/mnt/rw/out.txt '/mnt/host ro/hello.txt' /mnt/extra/late.txt")); got != "from the guest\nro from the host\nlate" {
		t.Errorf("after restart: %q", got)
	}
	guesttest.MustExec(t, g, "echo again > /mnt/rw/again.txt")
	if b, _ := os.ReadFile(filepath.Join(rw, "again.txt")); string(b) != "again\n" {
		t.Errorf("after restart, guest file on the host: %q", b)
	}
	if r, _ := g.Exec(ctx, []string{"/bin/sh", "-c", "touch /mnt/extra/x"}, driver.ExecOptions{}); r.Code == 0 {
		t.Error("the late ro share is writable")
	}
	// QEMU cannot save a VM with a mounted share: checkpoint says so, and
	// what to do; the guest keeps running.
	_, err = ops.Checkpoint(ctx, g, filepath.Join(t.TempDir(), "shared.ckpt"))
	if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), "umount the share") {
		t.Errorf("checkpoint with a mounted share: %v", err)
	}
	if !g.Running(ctx) {
		t.Fatal("the guest stopped after a refused checkpoint")
	}
	// A guest kernel without 9p: WaitReady says which guest, which share
	// and what to install. (The modules are in the initramfs only, so
	// modprobe cannot load them again after rmmod.)
	guesttest.MustExec(t, g, "umount /mnt/rw '/mnt/host ro' /mnt/extra && rmmod 9p 9pnet_virtio")
	err = g.WaitReady(ctx, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "guest sharevm: share /mnt/rw") || !strings.Contains(err.Error(), "9pnet_virtio modules") ||
		!strings.Contains(err.Error(), "filesystems-KERNEL.tcz") {
		t.Errorf("wait_ready without 9p in the guest kernel: %v", err)
	}
	t.Logf("total %v", time.Since(t0))
}

// cat9p is a shell command printing files of a 9p share. busybox cat
// sendfile()s a file straight into its standard output; from a 9p file
// into the pipe of the guest's SSH server (dropbear), that now and then
// (about 1 in 100 here, guest kernel 6.1) ends the session's output
// early and the next write dies of SIGPIPE, whichever command makes it.
// A pipe inside the guest in between does not show it.
func cat9p(files string) string { return "set -o pipefail; cat " + files + " | cat" }

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func fileOwner(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
