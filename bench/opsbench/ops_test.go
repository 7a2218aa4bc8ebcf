//go:build linux

// Package opsbench measures the OS-level virtualization operations:
// cloning a guest disk against cp, and a qemu checkpoint and restore
// against a cold boot. Run by bench/ops.sh (TINYFARM_BENCH=1); it prints
// TSV rows for bench/run.sh.
package opsbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

func TestMain(m *testing.M) {
	ns.Main()
	os.Exit(m.Run())
}

func gate(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") != "1" {
		t.Skip("benchmark: run bench/ops.sh (TINYFARM_BENCH=1)")
	}
	guesttest.NeedRoot(t)
}

func row(metric, value, anchor, anchorValue string, ratio float64) {
	fmt.Printf("%s\t%s\t%s\t%s\t%.2f\n", metric, value, anchor, anchorValue, ratio)
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1000) }

func allocated(p string) int64 {
	var st syscall.Stat_t
	if syscall.Stat(p, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

// TestCloneVsCp: g:clone of a stopped guest (copy + new identity written
// into the copy) against a plain cp of the same image.
func TestCloneVsCp(t *testing.T) {
	gate(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: map[string]driver.Runner{}, Subnet: "10.77.249.0/24"})
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	if _, err := fm.Define(farm.Definition{Name: "src", Driver: "ns", Disk: disk.Path, MemBytes: 64 << 20, HostKey: disk.HostKey}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	src, _ := fm.Guest(ctx, "src")
	var clone, cp []time.Duration
	var cloneBytes, cpBytes int64
	var method string
	for i := 0; i < 5; i++ {
		res, err := ops.Clone(ctx, src, ops.CloneOptions{Name: fmt.Sprintf("c%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		clone = append(clone, res.Duration)
		cloneBytes, method = res.DiskBytes, res.Method
		dst := filepath.Join(t.TempDir(), "cp.img")
		t0 := time.Now()
		if out, err := exec.Command("cp", disk.Path, dst).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
		exec.Command("sync", "-f", dst).Run() // tinyfarm's copy fsyncs too
		cp = append(cp, time.Since(t0))
		cpBytes = allocated(dst)
	}
	c, p := median(clone), median(cp)
	row("clone stopped guest, 96M disk ("+method+" copy + new identity) ms", ms(c), "cp disk.img (+sync)", ms(p), float64(c)/float64(p))
	row("clone extra disk used MiB", fmt.Sprintf("%.1f", float64(cloneBytes)/(1<<20)), "cp disk.img", fmt.Sprintf("%.1f", float64(cpBytes)/(1<<20)), float64(cloneBytes)/float64(cpBytes))
}

// TestQemuCheckpointRestore: checkpoint and restore-to-SSH of a qemu
// guest against its cold boot to SSH.
func TestQemuCheckpointRestore(t *testing.T) {
	gate(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	guesttest.Release(t) // skips when the mini release is not built
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Subnet: "10.77.249.0/24"})
	g, cold := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "vm", MemBytes: 160 << 20})
	file := filepath.Join(t.TempDir(), "vm.ckpt")
	cp, err := ops.Checkpoint(ctx, g, file)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	r, err := ops.Restore(ctx, fm, file, ops.RestoreOptions{Name: "vm2"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Destroy(context.Background(), false) })
	c, err := r.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	restore := time.Since(t1)
	row("qemu checkpoint (VM state + disk copy) ms", ms(cp.Duration), "qemu cold boot to SSH", ms(cold), float64(cp.Duration)/float64(cold))
	row("qemu restore to SSH ms", ms(restore), "qemu cold boot to SSH", ms(cold), float64(restore)/float64(cold))
	row("qemu checkpoint size MiB", fmt.Sprintf("%.1f", float64(cp.Bytes)/(1<<20)), "guest memory MiB", "160", float64(cp.Bytes)/float64(160<<20))
}

// TestDestroy: g:destroy of a running guest against the clean shutdown
// destroy used to do first (Stop with a grace: busybox init's poweroff
// and Tiny Core's rc.shutdown sleep ~3 s in all). ns: 3 guests each way;
// qemu: one each way.
func TestDestroy(t *testing.T) {
	gate(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: "tfbench1", Subnet: "10.77.249.0/24"})
	t.Cleanup(func() { ns.DeleteBridge("tfbench1") })
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	boot := func(name string) *farm.Guest {
		// One disk per guest: two guests on one ext file system corrupt it
		// (and Define refuses it).
		own := filepath.Join(t.TempDir(), name+".img")
		if out, err := exec.Command("cp", "--sparse=always", disk.Path, own).CombinedOutput(); err != nil {
			t.Fatalf("copy disk: %v: %s", err, out)
		}
		if _, err := fm.Define(farm.Definition{Name: name, Driver: "ns", Disk: own, MemBytes: 64 << 20, UserNS: ns.UserNSAvailable()}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
		g, _ := fm.Guest(ctx, name)
		t.Cleanup(func() { g.Destroy(context.Background(), false) })
		if _, err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := g.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		return g
	}
	measure := func(g *farm.Guest, clean bool) time.Duration {
		t0 := time.Now()
		if clean {
			if _, err := g.Stop(ctx, 10*time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if err := g.Destroy(ctx, false); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	var fast, clean []time.Duration
	for i := 0; i < 3; i++ {
		fast = append(fast, measure(boot(fmt.Sprintf("d%d", i)), false))
		clean = append(clean, measure(boot(fmt.Sprintf("c%d", i)), true))
	}
	f, c := median(fast), median(clean)
	row("destroy running ns guest ms", ms(f), "clean stop + destroy", ms(c), float64(f)/float64(c))
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return
	}
	var q [2]time.Duration
	for i, cl := range []bool{false, true} {
		g, _ := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: fmt.Sprintf("vm%d", i), MemBytes: 128 << 20})
		q[i] = measure(g, cl)
	}
	row("destroy running qemu guest ms", ms(q[0]), "clean stop + destroy", ms(q[1]), float64(q[0])/float64(q[1]))
}
