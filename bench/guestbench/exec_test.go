package guestbench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// TestWarmCommand times one command on an ns guest of the mini release:
// over tinyfarm's cached SSH connection to the guest's own dropbear (what
// every driver without a native exec uses), and through g:exec (the ns
// driver's exec). Medians of 11 batches of 100 "true" after a warm-up.
func TestWarmCommand(t *testing.T) {
	gate(t)
	state := t.TempDir()
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state, Size: "64M"})
	farm := newFarm(t, state, &ns.Runner{})
	g, _ := startReady(t, farm, "warm", guesttest.CopyDisk(t, base.Path), base.HostKey)
	ctx := context.Background()
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	c, err := g.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	batches := func(run func() error) time.Duration {
		for i := 0; i < 20; i++ {
			if err := run(); err != nil {
				t.Fatal(err)
			}
		}
		var ds []time.Duration
		for b := 0; b < 11; b++ {
			t0 := time.Now()
			for i := 0; i < 100; i++ {
				if err := run(); err != nil {
					t.Fatal(err)
				}
			}
			ds = append(ds, time.Since(t0)/100)
		}
		return median(ds)
	}
	sshRun := batches(func() error { _, err := c.Run(ctx, "true", ssh.RunOptions{}); return err })
	exec := batches(func() error { _, err := g.Exec(ctx, []string{"true"}, driver.ExecOptions{}); return err })
	us := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d.Microseconds())/1000) }
	row("ns guest: command on a warm SSH connection (ms, goal <=2)", us(sshRun), "g:exec through the ns driver", us(exec), fmt.Sprintf("%.2fx", float64(sshRun)/float64(exec)))
}
