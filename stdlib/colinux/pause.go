package colinux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/lockfile"
)

// pauseRecord is guests/NAME/paused.json, kept while a tinyfarm holds the
// running guest paused for a consistent copy (Guest.consistent). A
// tinyfarm killed meanwhile leaves it, and the guest suspended with its
// file system frozen (neither undoes itself when the process dies): the
// next tinyfarm that takes the guest's pause lock finds it and undoes
// the pause (healPause).
type pauseRecord struct {
	PID       int  `json:"pid"`                  // the tinyfarm that paused it
	Suspended bool `json:"suspended"`            // it suspended the guest
	FrozenPID int  `json:"frozen_pid,omitempty"` // it froze the root fs of the guest whose init this is (driver.FSFreezer)
}

func (g *Guest) pausePath() string { return filepath.Join(g.farm.guestDir(g.Def.Name), "paused.json") }

func (g *Guest) pauseLock() string { return filepath.Join(g.farm.guestDir(g.Def.Name), "pause.lock") }

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
