//go:build linux

package qemu

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/procwait"
)

// Real boots of the mini Tiny Core release under TCG. Each boot costs a
// few seconds of both shared cores, so the whole lifecycle runs on one
// boot plus one restore, and one more boot for the panic path.

func requireQEMU(t *testing.T) *minicore.Release {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	return minicore.Require(t)
}

// cpioEntry is one file of a test initramfs overlay.
type cpioEntry struct {
	name string
	mode uint32 // including the type bits
	data string
}

// gzipCpio writes a gzip-compressed newc archive: an initrd that the
// kernel unpacks over the earlier ones.
func gzipCpio(t *testing.T, path string, entries []cpioEntry) string {
	t.Helper()
	var raw bytes.Buffer
	pad := func() {
		for raw.Len()%4 != 0 {
			raw.WriteByte(0)
		}
	}
	add := func(ino int, e cpioEntry) {
		fmt.Fprintf(&raw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, 0, 0, len(e.name)+1, 0)
		raw.WriteString(e.name + "\x00")
		pad()
		raw.WriteString(e.data)
		pad()
	}
	for i, e := range entries {
		add(i+1, e)
	}
	add(0, cpioEntry{name: "TRAILER!!!"})
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	if err := os.WriteFile(path, gz.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// readyOverlay makes /opt/bootlocal.sh print driver.ReadyMarker: the
// minicore boot scripts do not print it (yet), and they are not ours.
func readyOverlay(t *testing.T, dir string) string {
	return gzipCpio(t, filepath.Join(dir, "ready.gz"), []cpioEntry{{
		name: "opt/bootlocal.sh", mode: 0o100775,
		data: "#!/bin/sh\necho '" + driver.ReadyMarker + "' >/dev/console\n",
	}})
}

func testSpec(t *testing.T, r *minicore.Release, name string, extra ...string) driver.Spec {
	dir := t.TempDir()
	return driver.Spec{
		Name:      name,
		Dir:       filepath.Join(dir, "run"),
		MemBytes:  128 << 20,
		CPUs:      1,
		Kernel:    r.Vmlinux,
		Initrds:   append([]string{r.Core}, extra...), // corepure64.gz: rootfs + modules initramfs
		Bootcodes: "host=" + name + " nozswap nortc",
		Layout:    driver.Frugal,
		Net:       driver.Net{Mode: "user"},
	}
}

// startVM starts spec with r; QEMU is killed at cleanup if the test
// leaves it running.
func startVM(t *testing.T, r *Runner, spec driver.Spec) *Guest {
	t.Helper()
	dg, err := r.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	g := dg.(*Guest)
	killAtCleanup(t, g.PID)
	return g
}

// killAtCleanup ends the QEMU process by PID if a test left it running.
func killAtCleanup(t *testing.T, pid func() int) {
	t.Cleanup(func() {
		if p := pid(); p > 0 && syscall.Kill(p, 0) == nil {
			syscall.Kill(p, syscall.SIGKILL)
		}
	})
}

// ended reports whether process pid is gone (or a zombie: the goroutine
// of Start that reaps QEMU may not have run yet) within d.
func ended(pid int, d time.Duration) bool { return procwait.Ended(pid, d) }

func mustStatus(t *testing.T, g driver.Guest, want driver.State) driver.Status {
	t.Helper()
	st, err := g.Status(context.Background())
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if st.State != want {
		t.Fatalf("status = %s (%s), want %s", st.State, st.Reason, want)
	}
	return st
}

func TestVMLifecycle(t *testing.T) {
	rel := requireQEMU(t)
	tmp := t.TempDir()
	spec := testSpec(t, rel, "vm1", readyOverlay(t, tmp))
	// A runtime dir deeper than a Unix socket address holds (108 bytes):
	// QMP, used throughout, still works.
	spec.Dir = filepath.Join(spec.Dir, strings.Repeat("a-deep-state-directory/", 5))
	if len(filepath.Join(spec.Dir, qmpSock)) <= 108 {
		t.Fatalf("runtime dir %s is not deep enough", spec.Dir)
	}
	var r Runner
	ctx := context.Background()

	t0 := time.Now()
	g := startVM(t, &r, spec)
	started := time.Since(t0)
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := g.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("start returned after %v, ready after %v", started.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))

	st := mustStatus(t, g, driver.Running)
	if st.PID != g.PID() || st.PID <= 0 {
		t.Errorf("status pid = %d, guest pid = %d", st.PID, g.PID())
	}
	// The guest's own boot output is on the console log.
	con, _ := os.ReadFile(spec.ConsoleLog())
	if !bytes.Contains(con, []byte("tc-config: boot complete")) {
		t.Errorf("console log lacks tc-config output:\n%s", con)
	}

	t.Run("attach", func(t *testing.T) {
		var r2 Runner // a fresh runner, as in a second tinyfarm process
		a, err := r2.Attach(ctx, spec)
		if err != nil {
			t.Fatal(err)
		}
		st := mustStatus(t, a, driver.Running)
		if st.PID != g.PID() {
			t.Errorf("attached pid %d, started pid %d", st.PID, g.PID())
		}
		if err := a.WaitReady(ctx); err != nil { // the marker of this boot is already there
			t.Errorf("attached WaitReady: %v", err)
		}
	})

	t.Run("suspend", func(t *testing.T) {
		t1 := time.Now()
		if err := g.Suspend(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("suspend took %v", time.Since(t1).Round(time.Microsecond))
		if rs, err := g.runState(ctx); err != nil || rs != "paused" {
			t.Errorf("QMP run state = %q, %v; want paused", rs, err)
		}
		mustStatus(t, g, driver.Suspended)
		if err := g.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		mustStatus(t, g, driver.Running)
	})

	conf, err := g.Config(spec)
	if err != nil || !strings.Contains(conf, "-M microvm,pit=on,pic=on,rtc=on") || !strings.Contains(conf, "tsc_early_khz=") {
		t.Errorf("Config = %q, %v", conf, err)
	}

	ckpt := filepath.Join(tmp, "vm1.state")
	t.Run("checkpoint", func(t *testing.T) {
		t1 := time.Now()
		if err := g.Checkpoint(ctx, ckpt); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(ckpt)
		if err != nil || fi.Size() < 1<<20 {
			t.Fatalf("state file: %v, %v", fi, err)
		}
		t.Logf("checkpoint: %d MB in %v", fi.Size()>>20, time.Since(t1).Round(time.Millisecond))
		mustStatus(t, g, driver.Running) // it continues after the save
	})

	t.Run("stop", func(t *testing.T) {
		pid := g.PID()
		t1 := time.Now()
		if err := g.Stop(ctx, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Logf("stop took %v", time.Since(t1).Round(time.Millisecond))
		st := mustStatus(t, g, driver.Stopped)
		t.Logf("stopped: %s", st.Reason)
		if !ended(pid, 5*time.Second) {
			t.Errorf("qemu pid %d still exists 5s after Stop", pid)
		}
		for _, f := range []string{qmpSock, pidFile, initrdCat} {
			if _, err := os.Stat(filepath.Join(spec.Dir, f)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left behind after Stop (err %v)", f, err)
			}
		}
		// A fresh runner agrees.
		var r2 Runner
		a, _ := r2.Attach(ctx, spec)
		mustStatus(t, a, driver.Stopped)
		// Stopping again is a no-op.
		if err := g.Stop(ctx, time.Second); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})

	t.Run("restore_then_crash", func(t *testing.T) {
		t1 := time.Now()
		rg, err := r.RestoreGuest(ctx, spec, ckpt)
		if err != nil {
			t.Fatal(err)
		}
		killAtCleanup(t, rg.PID)
		if err := rg.WaitReady(wctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("restored and running after %v", time.Since(t1).Round(time.Millisecond))
		mustStatus(t, rg, driver.Running)
		// The restored guest keeps its boot history: the console log was
		// appended to, not truncated.
		con, _ := os.ReadFile(spec.ConsoleLog())
		if !bytes.Contains(con, []byte(driver.ReadyMarker)) {
			t.Errorf("console log lost the first boot's output")
		}

		// Someone else kills QEMU: that is a crash, with a reason.
		var r2 Runner
		a, _ := r2.Attach(ctx, spec)
		if err := syscall.Kill(rg.PID(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		var st driver.Status
		for time.Now().Before(deadline) {
			if st, err = a.Status(ctx); err == nil && st.State != driver.Running {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if st.State != driver.Crashed || !strings.Contains(st.Reason, "without a stop request") {
			t.Fatalf("after SIGKILL: status %s (%s), want crashed without a stop request", st.State, st.Reason)
		}
		t.Logf("crashed: %s", st.Reason)
		// The starting runner's guest sees the same.
		st2 := mustStatus(t, rg, driver.Crashed)
		if st2.Reason != st.Reason {
			t.Logf("reasons differ: %q vs %q", st2.Reason, st.Reason)
		}
		if err := rg.Stop(ctx, time.Second); err != nil {
			t.Errorf("Stop after crash: %v", err)
		}
		mustStatus(t, rg, driver.Crashed) // the crash is kept, not overwritten
		if _, err := os.Stat(filepath.Join(spec.Dir, qmpSock)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("qmp.sock left after a crash and Stop")
		}
	})
}

// A guest whose init dies panics; with panic=-1 it reboots, which QEMU
// turns into a shutdown. WaitReady must fail fast with the panic as the
// reason and the console tail, not wait for its timeout.
func TestVMPanicBeforeReady(t *testing.T) {
	rel := requireQEMU(t)
	tmp := t.TempDir()
	badInit := gzipCpio(t, filepath.Join(tmp, "badinit.gz"), []cpioEntry{{
		name: "init", mode: 0o100755, data: "#!/bin/busybox sh\necho 'test: init exits'\nexit 3\n",
	}})
	spec := testSpec(t, rel, "vm2", badInit)
	ctx := context.Background()
	g := startVM(t, new(Runner), spec)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := g.WaitReady(wctx)
	if err == nil {
		t.Fatal("WaitReady succeeded for a guest whose init exits")
	}
	if wctx.Err() != nil {
		t.Fatalf("WaitReady waited for its timeout instead of failing fast: %v", err)
	}
	if !strings.Contains(err.Error(), "Kernel panic") || !strings.Contains(err.Error(), "test: init exits") {
		t.Errorf("error lacks the panic reason or console tail: %v", err)
	}
	t.Logf("WaitReady: %v", err)
	st := mustStatus(t, g, driver.Crashed)
	if !ended(st.PID, 5*time.Second) {
		t.Errorf("qemu %d still runs 5s after the guest panicked and Status reported it", st.PID)
	}
}

// QEMU that cannot start (a kernel it cannot load) fails Start with
// QEMU's own message, and leaves nothing running.
func TestStartFails(t *testing.T) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir := t.TempDir()
	kernel := filepath.Join(dir, "notakernel")
	os.WriteFile(kernel, []byte("this is not a kernel"), 0o644)
	spec := driver.Spec{Name: "bad", Dir: filepath.Join(dir, "run"), Kernel: kernel}
	var r Runner
	_, err := r.Start(context.Background(), spec)
	if err == nil {
		t.Fatal("Start succeeded with a bogus kernel")
	}
	if !strings.HasPrefix(err.Error(), "qemu bad: start: qemu exited") {
		t.Errorf("err = %v", err)
	}
	t.Logf("%v", err)
	a, _ := r.Attach(context.Background(), spec)
	if st, _ := a.Status(context.Background()); st.State == driver.Running {
		t.Errorf("status after failed start = %v", st)
	}
}

// A guest that powers itself off is stopped, not crashed: QEMU stays in
// the "shutdown" run state until Status reaps it.
func TestVMGuestPoweroff(t *testing.T) {
	rel := requireQEMU(t)
	tmp := t.TempDir()
	overlay := gzipCpio(t, filepath.Join(tmp, "poweroff.gz"), []cpioEntry{{
		name: "opt/bootlocal.sh", mode: 0o100775,
		data: "#!/bin/sh\necho '" + driver.ReadyMarker + "' >/dev/console\nsleep 1\npoweroff\n",
	}})
	spec := testSpec(t, rel, "vm3", overlay)
	ctx := context.Background()
	g := startVM(t, new(Runner), spec)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := g.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	var st driver.Status
	var err error
	for wctx.Err() == nil {
		if st, err = g.Status(ctx); err != nil || st.State != driver.Running {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || st.State != driver.Stopped || st.Reason != "guest powered off" {
		t.Fatalf("after guest poweroff: status %s (%s), %v; want stopped, guest powered off", st.State, st.Reason, err)
	}
	if !ended(g.PID(), 5*time.Second) {
		t.Errorf("qemu %d still runs 5s after Status reported the powered-off guest", g.PID())
	}
	var r2 Runner
	a, _ := r2.Attach(ctx, spec)
	if st2 := mustStatus(t, a, driver.Stopped); st2.Reason != "guest powered off" {
		t.Errorf("attached status reason = %q", st2.Reason)
	}
}
