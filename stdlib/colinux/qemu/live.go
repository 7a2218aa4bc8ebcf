package qemu

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// LiveStats says what a live migration (MigrateLive) did, as QEMU and
// the caller saw it (BackendDowntime is QEMU's own downtime figure).
type LiveStats = driver.LiveStats

// Command runs one QMP command on a fresh connection (see QMP.Execute).
func (g *Guest) Command(ctx context.Context, command string, args, result any) error {
	if !g.alive() {
		return fmt.Errorf("qemu %s: %s: guest is not running", g.spec.Name, command)
	}
	if err := g.qmp(ctx, command, args, result); err != nil {
		return fmt.Errorf("qemu %s: %w", g.spec.Name, err)
	}
	return nil
}

// MigrateLive sends the running VM's memory and device state to uri (a
// QMP migrate URI, e.g. "unix:/path/sock" where the receiver listens or a
// relay forwards it). Memory is copied while the guest runs; QEMU then
// stops the VM for the switchover, and with the pause-before-switchover
// capability waits there: switchover runs (the VM stopped, its block I/O
// drained, so the disk is stable: the caller copies what changed), then
// the device state goes and the migration completes. The source stays
// paused ("postmigrate"): the caller quits it once the far side runs, or
// resumes it (Resume) if the far side fails.
//
// On any failure before completion the migration is cancelled and a VM
// that was running is resumed here.
func (g *Guest) MigrateLive(ctx context.Context, uri string, switchover func(context.Context) error) (LiveStats, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var st LiveStats
	fail := func(err error) (LiveStats, error) {
		return st, fmt.Errorf("qemu %s: migrate to %s: %w", g.spec.Name, uri, err)
	}
	if !g.alive() {
		return fail(errors.New("guest is not running"))
	}
	q, err := DialQMP(ctx, g.path(qmpSock))
	if err != nil {
		return fail(err)
	}
	defer q.Close()
	var rs struct {
		Status string `json:"status"`
	}
	if err := q.Execute(ctx, "query-status", nil, &rs); err != nil {
		return fail(err)
	}
	if rs.Status != "running" {
		return fail(fmt.Errorf("qemu run state %s: a live migration moves a running VM", rs.Status))
	}
	if err := q.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": []map[string]any{
		{"capability": "pause-before-switchover", "state": true},
	}}, nil); err != nil {
		return fail(err)
	}
	// No bandwidth cap (QEMU's default is 32 MiB/s); a 300 ms downtime
	// target for the memory that is still dirty at the end.
	if err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40, "downtime-limit": 300}, nil); err != nil {
		return fail(err)
	}
	if err := q.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return fail(migrateBlocked(err))
	}
	bg := context.WithoutCancel(ctx)
	abort := func(err error) (LiveStats, error) {
		q.Execute(bg, "migrate_cancel", nil, nil)
		// QEMU resumes a VM that ran once the cancel is through; make
		// sure of it.
		for i := 0; i < 100; i++ {
			var mi struct {
				Status string `json:"status"`
			}
			if q.Execute(bg, "query-migrate", nil, &mi) != nil || (mi.Status != "cancelling" && mi.Status != "pre-switchover" && mi.Status != "device") {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		q.Execute(bg, "cont", nil, nil)
		return fail(err)
	}
	switched := false
	for {
		var mi struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
			TotalTime int64  `json:"total-time"`
			Downtime  int64  `json:"downtime"`
			RAM       struct {
				Transferred int64 `json:"transferred"`
			} `json:"ram"`
		}
		if err := q.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return abort(err)
		}
		switch mi.Status {
		case "pre-switchover":
			if switched {
				break
			}
			switched = true
			st.Paused = time.Now()
			if switchover != nil {
				if err := switchover(ctx); err != nil {
					return abort(fmt.Errorf("switchover: %w", err))
				}
			}
			if err := q.Execute(ctx, "migrate-continue", map[string]any{"state": "pre-switchover"}, nil); err != nil {
				return abort(err)
			}
			continue
		case "completed":
			st.Completed = time.Now()
			st.BackendDowntime = time.Duration(mi.Downtime) * time.Millisecond
			st.Total = time.Duration(mi.TotalTime) * time.Millisecond
			st.RAMBytes = mi.RAM.Transferred
			if !switched {
				return fail(errors.New("completed without the switchover pause"))
			}
			return st, nil
		case "failed", "cancelled":
			q.Execute(bg, "cont", nil, nil)
			return fail(fmt.Errorf("migration %s: %s", mi.Status, mi.ErrorDesc))
		}
		select {
		case <-ctx.Done():
			return abort(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// migrateBlocked explains QEMU's refusal to save or move a VM while the
// guest has a host share (9p) mounted, and marks it unsupported.
func migrateBlocked(err error) error {
	if !strings.Contains(err.Error(), "VirtFS") {
		return err
	}
	return fmt.Errorf("%w: QEMU cannot save or move a VM while a host share is mounted in it "+
		"(umount the share in the guest, or g:unshare it and restart the guest, first): %w", driver.ErrUnsupported, err)
}
