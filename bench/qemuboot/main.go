// Command qemuboot measures the qemu driver against plain QEMU started by
// hand with the same kernel and initrd, and prints TSV rows for
// bench/run.sh: metric, tinyfarm value, anchor, anchor value, ratio.
//
// It boots the mini Tiny Core release (testdata/minicore/out, or
// $TINYFARM_MINICORE) as a frugal guest whose /opt/bootlocal.sh prints
// the ready marker; "ready" is the marker's arrival on the serial console.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/qemu"
)

func main() {
	runs := flag.Int("n", 3, "boots per variant")
	flag.Parse()
	if err := run(*runs); err != nil {
		fmt.Fprintln(os.Stderr, "qemuboot:", err)
		os.Exit(1)
	}
}

func run(n int) error {
	out := os.Getenv("TINYFARM_MINICORE")
	if out == "" {
		out = "testdata/minicore/out"
	}
	vmlinux := filepath.Join(out, "kernel/vmlinux")
	vmlinuz := filepath.Join(out, "kernel/vmlinuz")
	// The release's core as the official mirror ships it: rootfs64.gz
	// followed by modules64.gz (the modules initramfs whose /init loads
	// the virtio drivers).
	core := filepath.Join(out, "mirror/15.x/x86_64/release/distribution_files/corepure64.gz")
	for _, f := range []string{vmlinux, vmlinuz, core} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("mini Tiny Core release not built (make minicore): %w", err)
		}
	}
	work, err := os.MkdirTemp("", "tinyfarm-bench-qemu.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	overlay := filepath.Join(work, "ready.gz")
	if err := os.WriteFile(overlay, readyOverlay(), 0o644); err != nil {
		return err
	}
	all := filepath.Join(work, "all.gz") // for the hand-run anchors
	if err := cat(all, core, overlay); err != nil {
		return err
	}

	var tf, plain, stock, restore []time.Duration
	ckpt := filepath.Join(work, "ckpt.state")
	for i := 0; i < n; i++ {
		d, err := driverBoot(work, i, vmlinux, []string{core, overlay}, ckpt, &restore)
		if err != nil {
			return err
		}
		tf = append(tf, d)
		d, err = handBoot(work, vmlinux, all, "microvm,pit=on,pic=on,rtc=on", true)
		if err != nil {
			return err
		}
		plain = append(plain, d)
		d, err = handBoot(work, vmlinuz, all, "pc", false)
		if err != nil {
			return err
		}
		stock = append(stock, d)
	}
	row := func(metric string, v time.Duration, anchor string, a time.Duration) {
		fmt.Printf("%s\t%.2f\t%s\t%.2f\t%.2f\n", metric, v.Seconds(), anchor, a.Seconds(), v.Seconds()/a.Seconds())
	}
	m := fmt.Sprintf(" (s, median of %d)", n)
	row("qemu driver boot→ready"+m, median(tf), "plain qemu by hand, same PVH vmlinux/initrd/microvm/NIC", median(plain))
	row("qemu driver boot→ready"+m, median(tf), "plain qemu by hand, bzImage on pc (no PVH)", median(stock))
	row("qemu driver restore→running"+m, median(restore), "qemu driver cold boot→ready", median(tf))
	return nil
}

// driverBoot starts a guest through the driver and times Start→WaitReady;
// it also checkpoints it and times Restore→running.
func driverBoot(work string, i int, kernel string, initrds []string, ckpt string, restore *[]time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := driver.Spec{
		Name: "bench", Dir: filepath.Join(work, "run"+strconv.Itoa(i)), MemBytes: 128 << 20, CPUs: 1,
		Kernel: kernel, Initrds: initrds, Bootcodes: "host=bench nozswap nortc", Layout: driver.Frugal,
	}
	var r qemu.Runner
	t0 := time.Now()
	g, err := r.Start(ctx, spec)
	if err != nil {
		return 0, err
	}
	defer g.Stop(context.Background(), 0)
	if err := g.WaitReady(ctx); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	if err := g.(driver.Checkpointer).Checkpoint(ctx, ckpt); err != nil {
		return 0, err
	}
	if err := g.Stop(ctx, 0); err != nil {
		return 0, err
	}
	t1 := time.Now()
	rg, err := r.Restore(ctx, spec, ckpt)
	if err != nil {
		return 0, err
	}
	defer rg.Stop(context.Background(), 0)
	if err := rg.WaitReady(ctx); err != nil {
		return 0, err
	}
	*restore = append(*restore, time.Since(t1))
	return d, nil
}

// handBoot runs qemu-system-x86_64 as a user would and times the marker.
func handBoot(work, kernel, initrd, machine string, tsc bool) (time.Duration, error) {
	log := filepath.Join(work, "hand.log")
	os.Remove(log)
	// The same guest hardware as the driver's: a user-mode NIC (the guest
	// runs udhcpc on it during boot).
	nic := "virtio-net-pci"
	line := "console=ttyS0 quiet panic=-1 host=bench nozswap nortc"
	if tsc {
		nic = "virtio-net-device"
		line += " tsc_early_khz=" + strconv.Itoa(qemu.HostTSCKHz())
	}
	cmd := exec.Command("qemu-system-x86_64", "-accel", "tcg", "-M", machine, "-m", "128",
		"-nodefaults", "-no-user-config", "-display", "none", "-kernel", kernel, "-initrd", initrd,
		"-append", line, "-serial", "file:"+log, "-netdev", "user,id=n0", "-device", nic+",netdev=n0")
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for time.Since(t0) < 2*time.Minute {
		if b, _ := os.ReadFile(log); bytes.Contains(b, []byte(driver.ReadyMarker)) {
			return time.Since(t0), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return 0, fmt.Errorf("plain qemu (%s): no ready marker in 2 minutes", machine)
}

// readyOverlay is a gzip newc archive holding /opt/bootlocal.sh that
// prints the ready marker.
func readyOverlay() []byte {
	var raw bytes.Buffer
	add := func(ino int, name string, mode uint32, data string) {
		fmt.Fprintf(&raw, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		raw.WriteString(name + "\x00")
		for raw.Len()%4 != 0 {
			raw.WriteByte(0)
		}
		raw.WriteString(data)
		for raw.Len()%4 != 0 {
			raw.WriteByte(0)
		}
	}
	add(1, "opt/bootlocal.sh", 0o100775, "#!/bin/sh\necho '"+driver.ReadyMarker+"' >/dev/console\n")
	add(0, "TRAILER!!!", 0, "")
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	return gz.Bytes()
}

func cat(dst string, srcs ...string) error {
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
