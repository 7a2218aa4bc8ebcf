package farm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/lockfile"
)

// pauseRecord is guests/NAME/paused.json, kept while a tinyfarm holds the
// running guest paused for a consistent copy (Guest.Consistent). A
// tinyfarm killed meanwhile leaves it, and the guest suspended with its
// file system frozen (neither undoes itself when the process dies): the
// next tinyfarm that takes the guest's pause lock finds it and undoes
// the pause (healPause).
type pauseRecord struct {
	PID       int  `json:"pid"`                  // the tinyfarm that paused it
	Suspended bool `json:"suspended"`            // it suspended the guest
	FrozenPID int  `json:"frozen_pid,omitempty"` // it froze the root fs of the guest whose init this is (driver.FSFreezer)
}

func (g *Guest) pausePath() string { return filepath.Join(g.farm.GuestDir(g.Def.Name), "paused.json") }

func (g *Guest) pauseLock() string { return filepath.Join(g.farm.GuestDir(g.Def.Name), "pause.lock") }

// healPause undoes the pause a killed tinyfarm left on the guest (see
// pauseRecord). The caller holds the pause lock, so the record's writer
// is gone.
func (g *Guest) healPause(ctx context.Context, h driver.Guest) error {
	b, err := os.ReadFile(g.pausePath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	var r pauseRecord
	if err := json.Unmarshal(b, &r); err != nil {
		os.Remove(g.pausePath()) // unreadable: nothing to undo from it
		return nil
	}
	if r.FrozenPID > 0 {
		if st, err := h.Status(ctx); err == nil && st.PID == r.FrozenPID {
			fz, ok := h.(driver.FSFreezer)
			if !ok {
				return fmt.Errorf("guest %s: undo the pause of killed tinyfarm %d: its driver cannot thaw a file system", g.Def.Name, r.PID)
			}
			if err := fz.ThawFS(ctx); err != nil {
				return fmt.Errorf("guest %s: undo the pause of killed tinyfarm %d: %w", g.Def.Name, r.PID, err)
			}
		}
	}
	if r.Suspended {
		if s, ok := h.(driver.Suspender); ok {
			if st, err := h.Status(ctx); err == nil && st.State == driver.Suspended {
				if err := s.Resume(ctx); err != nil {
					return fmt.Errorf("guest %s: undo the pause of killed tinyfarm %d: %w", g.Def.Name, r.PID, err)
				}
			}
		}
	}
	if err := os.Remove(g.pausePath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	return nil
}

// recordPause writes the pause record before the guest is paused.
func (g *Guest) recordPause(r pauseRecord) error {
	r.PID = os.Getpid()
	return fsutil.WriteJSONAtomic(g.pausePath(), r, 0o600)
}

// healPauseLocked is healPause under the guest's pause lock.
func (g *Guest) healPauseLocked(ctx context.Context, h driver.Guest) error {
	unlock, err := lockfile.Lock(g.pauseLock())
	if err != nil {
		return err
	}
	defer unlock()
	return g.healPause(ctx, h)
}

// Consistent runs fn with the guest's disks in a consistent state: a
// stopped guest as is; a running one suspended (and, when its disk is
// mounted by the host kernel, driver.FSFreezer: ns, its file system
// flushed and frozen) and resumed afterwards. It reports how
// long the guest was paused; a failed resume is an error (the guest is
// left paused). Callers take turns (a lock per guest), or one would
// resume the guest while another still copies.
//
// qemu needs no flush: QMP stop drains and flushes every drive before it
// returns, and raw disks with cache=writeback leave each guest write in
// the host page cache, which a reader (or FICLONE) on this host sees.
func (g *Guest) Consistent(ctx context.Context, fn func() error) (paused time.Duration, err error) {
	if _, err := g.farm.Runner(g.Def); err != nil {
		return 0, fn() // no driver for it here: this farm never runs it
	}
	h, err := g.Handle(ctx)
	if err != nil {
		return 0, err
	}
	st, err := h.Status(ctx)
	if err != nil {
		return 0, err
	}
	if st.State != driver.Running && st.State != driver.Suspended {
		return 0, fn()
	}
	unlock, err := lockfile.Lock(g.pauseLock())
	if err != nil {
		return 0, err
	}
	defer unlock()
	// A tinyfarm killed while it held the guest paused left it so.
	if err := g.healPause(ctx, h); err != nil {
		return 0, err
	}
	if st, err = h.Status(ctx); err != nil { // as it is now that we hold the lock
		return 0, err
	}
	s, ok := h.(driver.Suspender)
	if !ok {
		return 0, driver.Unsupported(g.Def.Driver, "a consistent copy of a running guest", g.farm.Why(ctx, g.Def.Driver, "suspend", "it cannot be suspended; stop it first"))
	}
	rec := pauseRecord{Suspended: st.State == driver.Running}
	if _, ok := h.(driver.FSFreezer); ok && st.PID > 0 {
		rec.FrozenPID = st.PID
	}
	if err := g.recordPause(rec); err != nil {
		return 0, err
	}
	// Runs last: the record goes once the guest runs again.
	defer func() {
		if err == nil {
			os.Remove(g.pausePath())
		}
	}()
	t0 := time.Now()
	if st.State == driver.Running {
		if err := s.Suspend(ctx); err != nil {
			return 0, err
		}
		defer func() {
			if rerr := s.Resume(context.WithoutCancel(ctx)); rerr != nil {
				err = errors.Join(err, fmt.Errorf("the guest stays paused: %w", rerr))
			}
			paused = time.Since(t0) // until it runs again
		}()
	}
	if fz, ok := h.(driver.FSFreezer); ok {
		thaw, err := fz.FreezeFS(ctx)
		if err != nil {
			return 0, err
		}
		defer thaw()
	}
	err = fn()
	return time.Since(t0), err
}
