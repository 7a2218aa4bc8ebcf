//go:build linux

package ops_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// TestMigrateNsDowntime is bench/migrate.sh's downtime of an offline move
// of a running ns guest (what `cluster drain` costs each of its sites):
// TINYFARM_TRIALS moves (default 5) to a far host (a network namespace
// with its own dropbear and state dir), each of a fresh guest that wrote
// to its disk. Prints the median downtime against the anchor of the same
// guest's start to ready here (what a restart in place costs) and, as
// t.Log, each move and the median of each step (MigrateResult.Steps),
// and how long the guest was defined here and there (from the far
// import's end to the destroy here's: a kill in it leaves the rerun to
// finish the move).
// bench/compare/ns-move.sh runs it in this tree and an older one, side by
// side.
func TestMigrateNsDowntime(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") == "" {
		t.Skip("set TINYFARM_BENCH=1 (bench/migrate.sh)")
	}
	guesttest.NeedRoot(t)
	trials := 5
	if n, err := strconv.Atoi(os.Getenv("TINYFARM_TRIALS")); err == nil && n > 0 {
		trials = n
	}
	ctx := context.Background()
	bin := guesttest.BuildTinyfarm(t)
	remote, farState := guesttest.FarHost(t, bin)
	far := farm.New(farState, farm.Options{Drivers: farm.DefaultDrivers()})
	state := t.TempDir()
	t.Cleanup(func() { ns.DeleteBridge(unifyBridge) })
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: unifyBridge, Subnet: unifySubnet})
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state})
	var downs, totals, starts, boths []time.Duration
	steps := map[string][]time.Duration{}
	var order []string
	for i := range trials {
		name := fmt.Sprintf("mover%d", i)
		disk := filepath.Join(state, name+".img")
		guesttest.Run(t, "cp", "--sparse=always", base.Path, disk)
		if _, err := fm.Define(farm.Definition{Name: name, Driver: "ns", Disk: disk, MemBytes: 64 << 20, HostKey: base.HostKey, User: "root"}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
		g, _ := fm.Guest(ctx, name)
		t.Cleanup(func() {
			g.Destroy(context.Background(), true)
			if fg, err := far.Guest(context.Background(), name); err == nil {
				fg.Destroy(context.Background(), true)
			}
		})
		t0 := time.Now()
		if _, err := g.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := g.WaitReady(ctx, 30*time.Second); err != nil {
			t.Fatal(err)
		}
		starts = append(starts, time.Since(t0))
		// A guest in use: it wrote to its disk since it started.
		guesttest.MustExec(t, g, "dd if=/dev/urandom of=/root/data bs=64k count=16 2>/dev/null; sync")
		res, err := ops.Migrate(ctx, g, remote, ops.MigrateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.State != "running" {
			t.Fatalf("there: %s", res.State)
		}
		downs, totals = append(downs, res.Downtime), append(totals, res.Duration)
		// Steps by JSON: the older trees bench/nsmove.sh builds lack them.
		var r struct {
			Steps []struct {
				Name string
				Took time.Duration `json:"took_ns"`
			}
		}
		b, _ := json.Marshal(res)
		json.Unmarshal(b, &r)
		// Defined here and there: the steps from the far import's end
		// (its own steps, "far ...", are in it) to the destroy here's.
		var both time.Duration
		imported := false
		for _, s := range r.Steps {
			if _, ok := steps[s.Name]; !ok {
				order = append(order, s.Name)
			}
			steps[s.Name] = append(steps[s.Name], s.Took)
			switch {
			case s.Name == "far import":
				imported = true
			case imported && !strings.HasPrefix(s.Name, "far "):
				both += s.Took
				imported = s.Name != "destroy here"
			}
		}
		boths = append(boths, both)
		t.Logf("move %d: down %.0f ms, total %.0f ms, start here %.0f ms, %d of %d chunks sent, here and there %.1f ms", i, ms(res.Downtime), ms(res.Duration), ms(starts[i]), res.ChunksSent, res.Chunks, ms(both))
		if fg, err := far.Guest(ctx, name); err == nil {
			fg.Destroy(ctx, true)
		}
	}
	for _, n := range order {
		t.Logf("step %-40s median %8.1f ms", n, ms(median(steps[n])))
	}
	fmt.Printf("ns guest move downtime (ms)\t%.0f\tits start to ready\t%.0f\t%.2f\n", ms(median(downs)), ms(median(starts)), ms(median(downs))/ms(median(starts)))
	fmt.Printf("ns guest move total (ms)\t%.0f\n", ms(median(totals)))
	fmt.Printf("ns guest move: defined here and there (ms)\t%.1f\n", ms(median(boths)))
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
