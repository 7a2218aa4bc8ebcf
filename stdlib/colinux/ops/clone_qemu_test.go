//go:build linux

package ops_test

import (
	"context"
	"errors"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// TestCloneRunningQemu: a running qemu guest is cloned while it counts.
// The clone boots with its own identity (host name, pinned SSH host key,
// host port) and the source's files; the source keeps running in the same
// QEMU process, unchanged, and the two disks are separate afterwards. A
// clone onto an existing name is ErrExists and leaves the source running.
func TestCloneRunningQemu(t *testing.T) {
	guesttest.NeedVM(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := guesttest.OpsFarm(t, state)
	src, cold := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "origin", MemBytes: 160 << 20})
	ready := time.Now()
	t.Logf("source booted to SSH in %v", cold)

	srcHost := guesttest.MustExec(t, src, "hostname")
	guesttest.MustExec(t, src, "echo from-origin > /root/marker.txt && sync")
	guesttest.MustExec(t, src, guesttest.CounterLoop)
	// The source also writes to its disk, committing all the time, while
	// it is cloned: the copy catches its journal mid-way.
	guesttest.MustExec(t, src, "(i=0; while :; do i=$((i+1)); echo $i > /root/d.tmp; mv /root/d.tmp /root/disk-counter; sync; done) </dev/null >/dev/null 2>&1 &")
	time.Sleep(300 * time.Millisecond)
	before, err := src.Status(ctx)
	if err != nil || before.State != driver.Running || before.PID == 0 {
		t.Fatalf("source before the clone: %+v, %v", before, err)
	}
	n0 := guesttest.Counter(t, src)

	res, err := ops.Clone(ctx, src, ops.CloneOptions{Name: "copy", Hostname: "copy"})
	if err != nil {
		t.Fatal(err)
	}
	clone := res.Guest
	t.Cleanup(func() { clone.Destroy(context.Background(), true) })
	t.Logf("clone of a running qemu guest: %v (source paused %v), %s copy, %d KiB allocated for a %d MiB image",
		res.Duration, res.Paused, res.Method, res.DiskBytes>>10, fileSize(t, src.Def.Disk)>>20)
	if res.Method != "reflink" && res.Method != "sparse" {
		t.Errorf("method %q", res.Method)
	}
	if res.Paused <= 0 || res.Paused > res.Duration || res.DiskBytes <= 0 {
		t.Errorf("paused %v of %v, %d bytes", res.Paused, res.Duration, res.DiskBytes)
	}

	// The source ran on in the same QEMU, resumed.
	after, err := src.Status(ctx)
	if err != nil || after.State != driver.Running || after.PID != before.PID {
		t.Fatalf("source after the clone: %+v (pid before %d), %v", after, before.PID, err)
	}
	n1 := guesttest.Counter(t, src)
	time.Sleep(300 * time.Millisecond)
	if n2 := guesttest.Counter(t, src); n1 < n0 || n2 <= n1 {
		t.Errorf("source's counter: %d before the clone, %d and %d after", n0, n1, n2)
	}

	// The clone's definition: a new identity.
	if clone.Def.Name != "copy" || clone.Def.Driver != "qemu" || clone.Def.Disk == src.Def.Disk ||
		clone.Def.HostKey == "" || clone.Def.HostKey == src.Def.HostKey || clone.Def.MAC == src.Def.MAC ||
		clone.Def.Labels["cloned_from"] != "origin" || !strings.Contains(clone.Def.Bootcodes, "host=copy") {
		t.Errorf("clone definition: %+v", clone.Def)
	}
	sh, sp, err := src.SSHAddr()
	if err != nil {
		t.Fatal(err)
	}
	ch, cp, err := clone.SSHAddr()
	if err != nil {
		t.Fatal(err)
	}
	if sh == ch && sp == cp {
		t.Errorf("clone's SSH at %s:%d, the source's too", ch, cp)
	}

	// The copy was taken mid-write: its journal was replayed by the
	// identity edit's mount, and the filesystem is clean.
	if e2fsck, err := exec.LookPath("e2fsck"); err == nil {
		if out, err := exec.Command(e2fsck, "-fn", clone.Def.Disk).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn on the clone's disk: %v\n%s", err, out)
		}
	}

	t1 := time.Now()
	if _, err := clone.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// WaitReady ends with an SSH handshake pinned to the clone's new host
	// key: the key was written into its disk.
	if err := clone.WaitReady(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("clone booted to SSH at %s:%d in %v (source at %s:%d)", ch, cp, time.Since(t1), sh, sp)
	c, err := clone.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The source's host key is not the clone's: pinning it fails.
	wrong := *clone
	wd := *clone.Def
	wd.HostKey = src.Def.HostKey
	wrong.Def = &wd
	if c, err := wrong.SSH(ctx); err == nil {
		c.Close()
		t.Error("the clone answers SSH with the source's host key")
	}

	if got := guesttest.MustExec(t, clone, "hostname; cat /etc/hostname; cat /root/marker.txt"); got != "copy\ncopy\nfrom-origin" {
		t.Errorf("clone: hostname, /etc/hostname, marker = %q", got)
	}
	// The source's disk writer left a whole value, renamed into place.
	if got := guesttest.MustExec(t, clone, "cat /root/disk-counter; ls /root"); !regexp.MustCompile(`^[1-9][0-9]*\n`).MatchString(got) {
		t.Errorf("clone's copy of the source's disk counter and /root: %q", got)
	} else {
		t.Logf("the source's disk counter in the clone: %s", strings.SplitN(got, "\n", 2)[0])
	}
	if hosts := guesttest.MustExec(t, clone, "cat /etc/hosts"); !hostsHas(hosts, "copy") || hostsHas(hosts, srcHost) {
		t.Errorf("clone's /etc/hosts (source was %q):\n%s", srcHost, hosts)
	}

	// The disks are separate: a file written in the clone is not in the
	// source, which still answers with its own name.
	guesttest.MustExec(t, clone, "echo clone-only > /root/clone.txt && sync")
	if got := guesttest.MustExec(t, src, "hostname; cat /etc/hostname; ls /root"); strings.Contains(got, "clone.txt") ||
		!strings.HasPrefix(got, srcHost+"\n"+srcHost+"\n") || !strings.Contains(got, "marker.txt") {
		t.Errorf("source after the clone wrote: %q", got)
	}
	st, err := src.Status(ctx)
	if err != nil || st.State != driver.Running || st.PID != before.PID {
		t.Errorf("source at the end: %+v, %v", st, err)
	}
	if n3 := guesttest.Counter(t, src); n3 <= n1 {
		t.Errorf("source's counter stopped at %d", n3)
	}
	// Its clock stood still only while it was paused: no reboot.
	if up, want := guesttest.MustExec(t, src, "cut -d' ' -f1 /proc/uptime"), time.Since(ready)-res.Paused-time.Second; parseSeconds(t, up) < want.Seconds() {
		t.Errorf("source uptime %s s, want at least %.1f: rebooted?", up, want.Seconds())
	}

	// Clone onto an existing name.
	_, err = ops.Clone(ctx, src, ops.CloneOptions{Name: "copy"})
	if !errors.Is(err, farm.ErrExists) {
		t.Errorf("clone onto an existing name: %v", err)
	}
	if _, err := ops.Clone(ctx, src, ops.CloneOptions{Name: "Bad_Name"}); !errors.Is(err, farm.ErrInvalid) {
		t.Errorf("clone to a bad name: %v", err)
	}
	if st, err := src.Status(ctx); err != nil || st.State != driver.Running || st.PID != before.PID {
		t.Errorf("source after a refused clone: %+v, %v", st, err)
	}
	if !clone.Running(ctx) {
		t.Error("a refused clone stopped the existing clone")
	}
	if d, _ := fm.Get("copy"); d == nil || d.HostKey != clone.Def.HostKey || d.Disk != clone.Def.Disk {
		t.Error("a refused clone changed the existing guest")
	}
	guesttest.MustExec(t, src, "true")
}

// hostsHas reports whether a hosts file names w.
func hostsHas(text, w string) bool {
	for _, l := range strings.Split(text, "\n") {
		f := strings.Fields(l)
		for i := 1; i < len(f); i++ { // f[0] is the address
			if f[i] == w {
				return true
			}
		}
	}
	return false
}

func parseSeconds(t *testing.T, s string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
