//go:build linux

package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
)

// TestMigrateLiveSourceKilled: a tinyfarm moving a bridged VM live is
// killed (SIGKILL) once the far side has started the incoming QEMU and
// before the stream is fed; then again, with the far tinyfarm receiving
// the move killed too while the source cannot clean up. Nothing of the
// move is left there either time: the far QEMU (by its pid) and every
// process naming the far state dir (the far farm's DHCP server, which
// lives as long as a tap is on its bridge), the definition, and the disk
// copy the move made. The VM runs on here.
func TestMigrateLiveSourceKilled(t *testing.T) {
	guesttest.NeedVM(t)
	ctx := context.Background()
	const farBridge = "tftest8f"
	bin := guesttest.BuildTinyfarm(t)
	remote, farState := guesttest.FarHost(t, bin)
	os.MkdirAll(farState, 0o700)
	if err := os.WriteFile(filepath.Join(farState, "network.json"), []byte(`{"bridge":"`+farBridge+`","subnet":"`+guesttest.OpsSubnet+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	// The killed tinyfarm's farm reads its network from the state dir.
	if err := os.WriteFile(filepath.Join(state, "network.json"), []byte(`{"bridge":"`+guesttest.OpsBridge+`","subnet":"`+guesttest.OpsSubnet+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	far := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	t.Cleanup(func() {
		// Only what this test's far side might have left (the checks
		// below say whether it did).
		if g, err := far.Guest(context.Background(), "brkill"); err == nil {
			guesttest.InNetns(guesttest.MigNS, func() error { return g.Destroy(context.Background(), false) })
		}
		guesttest.KillDHCP(farState, farBridge)
		guesttest.KillDHCP(state, guesttest.OpsBridge)
	})
	fm := guesttest.OpsFarm(t, state)
	g, _ := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "brkill", Net: "bridge", MemBytes: 160 << 20})

	playbook := filepath.Join(t.TempDir(), "move.lua")
	to := fmt.Sprintf("{ name = %q, address = %q, key = %q, host_key = %q, state_dir = %q, binary = %q }",
		remote.Name, remote.Address, remote.Key, remote.HostKey, remote.StateDir, remote.Binary)
	if err := os.WriteFile(playbook, []byte(`local colinux = require("colinux")
colinux.get("brkill"):migrate({ to = `+to+`, live = true, timeout = "120s" })`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The source killed: the far tinyfarm sees its stream end.
	abandonMove(t, bin, state, playbook, far, farState, farBridge, false)
	// The far tinyfarm killed too, while the source (stopped, then
	// killed) cannot clean up: its guard process does.
	abandonMove(t, bin, state, playbook, far, farState, farBridge, true)
	if !g.Running(ctx) {
		t.Error("the VM does not run here any more")
	}
	guesttest.MustExec(t, g, "true")
}

// abandonMove runs playbook (a live move of brkill to the far farm) in a
// tinyfarm of its own, kills it (SIGKILL) once the far QEMU waits for the
// stream, and with killFar first stops it (SIGSTOP: it cannot clean up)
// and kills the far tinyfarm receiving the move. Then nothing of the move
// may be left there within a minute.
func abandonMove(t *testing.T, bin, state, playbook string, far *farm.Farm, farState, farBridge string, killFar bool) {
	t.Helper()
	disksBefore := dirNames(filepath.Join(farState, "disks"))
	src := exec.Command(bin, "run", playbook)
	src.Env = append(os.Environ(), "TINYFARM_HOME="+state)
	var out bytes.Buffer
	src.Stdout, src.Stderr = &out, &out
	if err := src.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { src.Wait(); close(exited) }()
	defer func() { src.Process.Kill(); <-exited }()

	// The far QEMU, waiting with -incoming: its pid from its boot record.
	boot := filepath.Join(far.GuestDir("brkill"), "run", "boot.json")
	var farPID int
	for deadline := time.Now().Add(3 * time.Minute); farPID == 0; {
		var b struct {
			PID int `json:"pid"`
		}
		if data, err := os.ReadFile(boot); err == nil && json.Unmarshal(data, &b) == nil {
			farPID = b.PID
		}
		select {
		case <-exited:
			t.Fatalf("the moving tinyfarm ended before the far QEMU started: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no far QEMU after 3 minutes: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if killFar {
		src.Process.Signal(syscall.SIGSTOP)
		var killed []string
		for _, p := range procsNaming(bin + "\x00migrate\x00incoming") {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			syscall.Kill(pid, syscall.SIGKILL) // the far tinyfarm this move started
			killed = append(killed, p)
		}
		if killed == nil {
			t.Fatal("no far tinyfarm migrate incoming to kill")
		}
		t.Logf("killed the far %v", killed)
	}
	src.Process.Kill()
	<-exited
	t.Logf("killed the moving tinyfarm (pid %d) with the far QEMU (pid %d) waiting", src.Process.Pid, farPID)

	// Everything goes within a minute (the far side notices the SSH
	// session's end, or its guard the far tinyfarm's; nothing waits for
	// a timeout).
	var left []string
	for deadline := time.Now().Add(time.Minute); ; {
		left = nil
		if syscall.Kill(farPID, 0) == nil {
			left = append(left, fmt.Sprintf("far QEMU pid %d", farPID))
		}
		for _, p := range procsNaming(farState + "/") {
			left = append(left, "process "+p)
		}
		if _, err := far.Get("brkill"); !errors.Is(err, farm.ErrNotFound) {
			left = append(left, fmt.Sprintf("definition (%v)", err))
		}
		if d := dirNames(filepath.Join(farState, "disks")); !slices.Equal(d, disksBefore) {
			left = append(left, fmt.Sprintf("disks %v (before: %v)", d, disksBefore))
		}
		if farmnet.DHCPRunning(filepath.Join(farState, "guests"), farBridge) {
			left = append(left, "the far farm's DHCP server")
		}
		if left == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if left != nil {
		t.Errorf("left on the far side a minute after the move was abandoned (far tinyfarm killed: %v): %s", killFar, strings.Join(left, "; "))
	}
}

// dirNames lists dir's entries (nil when it does not exist).
func dirNames(dir string) []string {
	es, _ := os.ReadDir(dir)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// procsNaming lists the processes whose command line contains s, as
// "PID ARGV".
func procsNaming(s string) []string {
	es, _ := os.ReadDir("/proc")
	var ps []string
	for _, e := range es {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(s)) {
			continue
		}
		ps = append(ps, e.Name()+" "+strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " "))
	}
	return ps
}
