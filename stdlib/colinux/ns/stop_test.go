//go:build linux

package ns_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// TestStopKeepsTERMHandlersTime: Stop cuts the shutdown's waits that can
// only time out (waitShutdown: the processes left ignore SIGTERM), never
// one a process uses. A guest process that handles SIGTERM by writing a
// file 300 ms later, and a write not synced before the stop, are both on
// the disk when the guest starts again; the guest is stopped (not
// crashed) by tinyfarm.
func TestStopKeepsTERMHandlersTime(t *testing.T) {
	needRoot(t)
	// The handler's shell runs a sleep in a loop: kill -TERM -1 ends the
	// sleep, then the trap runs.
	// It says when its trap is set: bootlocal.sh may still be starting it
	// when the guest is ready, and a SIGTERM before the trap ends it.
	disk := scatterDisk(t, `(trap 'sleep 0.3; echo handled > /root/termed; sync; exit 0' TERM; touch /root/trapped; while :; do sleep 1; done) >/dev/null 2>&1 &`)
	s := spec(t, "nsstop", disk, 57)
	g := start(t, s)
	ex := g.(driver.Execer)
	ctx := context.Background()
	wait := "for i in $(seq 200); do [ -e /root/trapped ] && break; sleep 0.05; done; [ -e /root/trapped ]"
	if res, err := ex.Exec(ctx, []string{"sh", "-c", wait + " && rm -f /root/termed && echo kept > /root/unsynced"}, driver.ExecOptions{}); err != nil || res.Code != 0 {
		t.Fatalf("exec: %v %+v", err, res)
	}
	if err := g.Stop(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := g.Status(ctx)
	if err != nil || st.State != driver.Stopped || !strings.Contains(st.Reason, "stopped by tinyfarm") {
		t.Fatalf("after stop: %+v, %v", st, err)
	}
	g2 := start(t, s)
	res, err := g2.(driver.Execer).Exec(ctx, []string{"sh", "-c", "cat /root/termed /root/unsynced"}, driver.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(res.Stdout); got != "handled\nkept\n" {
		t.Errorf("files written at and before the stop: %q (stderr %q): the stop cut a SIGTERM handler short or lost a write", got, res.Stderr)
	}
}
