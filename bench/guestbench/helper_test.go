//go:build linux

package guestbench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// TestHelperBinary measures what the small tinyfarm-guest binary saves
// each guest against running the whole tinyfarm (etcd, gRPC, Lua) for
// it: heap allocated at package init, one g:exec (alternating batches of
// 20 "true" from each binary on the same guest, medians of 11), and
// the idle monitor's anonymous memory and threads. Both binaries come
// from make build, as users get them.
func TestHelperBinary(t *testing.T) {
	gate(t)
	dir := t.TempDir()
	build := exec.Command("make", "-s", "-C", "../..", "build", "BINDIR="+dir)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	big, small := filepath.Join(dir, "tinyfarm"), filepath.Join(dir, "tinyfarm-guest")

	initHeap := func(bin string) int64 {
		cmd := exec.Command(bin, "version")
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		out, _ := cmd.CombinedOutput()
		var sum int64
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			// init PKG @0.58 ms, 0.14 ms clock, 164936 bytes, 44 allocs
			if len(f) > 8 && f[0] == "init" && f[8] == "bytes," {
				n, _ := strconv.ParseInt(f[7], 10, 64)
				sum += n
			}
		}
		return sum
	}
	hb, hs := initHeap(big), initHeap(small)
	row("helper binary: heap allocated at package init (KiB)", fmt.Sprint(hs>>10), "the whole tinyfarm", fmt.Sprint(hb>>10), fmt.Sprintf("%.2fx", float64(hs)/float64(hb)))

	state := t.TempDir()
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state, Size: "64M"})
	farm := newFarm(t, state, &ns.Runner{Exe: small})
	g, _ := startReady(t, farm, "helper", guesttest.CopyDisk(t, base.Path), base.HostKey)
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	ctx := context.Background()
	h, err := (&ns.Runner{Exe: small}).Attach(ctx, driver.Spec{Name: "helper", Dir: filepath.Join(state, "guests", "helper", "run")})
	if err != nil {
		t.Fatal(err)
	}
	hbig, err := (&ns.Runner{Exe: big}).Attach(ctx, driver.Spec{Name: "helper", Dir: filepath.Join(state, "guests", "helper", "run")})
	if err != nil {
		t.Fatal(err)
	}
	batch := func(gd driver.Guest) time.Duration {
		t0 := time.Now()
		for i := 0; i < 20; i++ {
			if _, err := gd.(driver.Execer).Exec(ctx, []string{"true"}, driver.ExecOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return time.Since(t0) / 20
	}
	batch(h)
	batch(hbig)
	var ds, db []time.Duration
	for i := 0; i < 11; i++ {
		ds = append(ds, batch(h))
		db = append(db, batch(hbig))
	}
	es, eb := median(ds), median(db)
	row("helper binary: one g:exec on an ns guest (ms)", fmt.Sprintf("%.2f", float64(es.Microseconds())/1000), "from the whole tinyfarm", fmt.Sprintf("%.2f", float64(eb.Microseconds())/1000), fmt.Sprintf("%.2fx", float64(es)/float64(eb)))

	b, err := os.ReadFile(filepath.Join(state, "guests", "helper", "run", "runtime.json"))
	if err != nil {
		t.Fatal(err)
	}
	var mpid int
	if i := strings.Index(string(b), `"monitor_pid":`); i >= 0 {
		fmt.Sscanf(string(b[i+len(`"monitor_pid":`):]), "%d", &mpid)
	}
	anon, threads := procMem(mpid)
	row("helper binary: idle ns monitor, anonymous memory (KiB) and threads", fmt.Sprint(anon), "threads", fmt.Sprint(threads), "-")
}

// procMem is a process's anonymous memory (KiB) and thread count.
func procMem(pid int) (anon, threads int) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Anonymous:" {
			anon, _ = strconv.Atoi(f[1])
		}
	}
	b, _ = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "Threads:" {
			threads, _ = strconv.Atoi(f[1])
		}
	}
	return anon, threads
}
