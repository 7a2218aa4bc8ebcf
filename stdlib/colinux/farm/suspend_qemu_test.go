//go:build linux

package farm_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// TestQemuSuspendExec: a suspended VM refuses exec at once (it used to
// hang for as long as the VM stayed stopped); suspend and resume report
// whether they changed anything; a command past its timeout is abandoned
// with a timeout error and the guest still answers.
func TestQemuSuspendExec(t *testing.T) {
	guesttest.NeedVM(t)
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: guesttest.OpsBridge, Subnet: guesttest.OpsSubnet})
	g, _ := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "sleepy", MemBytes: 128 << 20})
	for i, want := range []bool{true, false} {
		if changed, err := g.Suspend(ctx); err != nil || changed != want {
			t.Errorf("suspend %d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
	t0 := time.Now()
	_, err := g.Exec(ectx, []string{"true"}, driver.ExecOptions{})
	cancel()
	if !errors.Is(err, farm.ErrSuspended) || time.Since(t0) > 5*time.Second {
		t.Errorf("exec on a suspended VM: %v after %v, want refused at once", err, time.Since(t0))
	}
	for i, want := range []bool{true, false} {
		if changed, err := g.Resume(ctx); err != nil || changed != want {
			t.Errorf("resume %d: changed %v, %v; want %v", i+1, changed, err, want)
		}
	}
	_, err = g.Exec(ctx, []string{"sleep", "30"}, driver.ExecOptions{Timeout: 2 * time.Second})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("exec past its timeout: %v, want a timeout", err)
	}
	if got := guesttest.MustExec(t, g, "echo up"); got != "up" {
		t.Errorf("after a timed-out exec: %q", got)
	}
	// Destroy ends the VM without the slow clean shutdown, after a sync:
	// what the guest wrote just before is on the disk it keeps.
	guesttest.MustExec(t, g, "echo kept > /root/last-words")
	disk := g.Def.Disk
	t0 = time.Now()
	if err := g.Destroy(ctx, false); err != nil {
		t.Fatal(err)
	}
	t.Logf("destroy of a running VM: %v", time.Since(t0))
	// Mounted read-write, as the guest's next boot would: the journal of
	// a file system that was not unmounted is replayed.
	var got []byte
	err = image.Edit(ctx, disk, func(tg target.Target) (err error) {
		got, err = target.ReadFile(ctx, tg, "/root/last-words")
		return err
	})
	if err != nil || string(got) != "kept\n" {
		t.Errorf("a file written just before destroy, on the kept disk: %q, %v", got, err)
	}
}
