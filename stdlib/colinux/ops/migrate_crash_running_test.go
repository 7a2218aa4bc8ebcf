//go:build linux

package ops_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

// startPlaybook starts the guest cold defined by migratePlaybook.
const startPlaybook = `
local colinux = require("colinux")
colinux.network{ bridge = "tfcrash5", subnet = "10.77.235.0/24" }
local g = colinux.get("cold")
g:start()
g:wait_ready{ timeout = 30 }
`

// TestCrashMigrateRunning kills `tinyfarm run` at random moments of an
// offline g:migrate of a RUNNING ns guest (pass 1 while it runs, the far
// receiver and import opened before the stop, the stop, pass 2, the
// import). After every kill the guest is here with its definition
// untouched (and, stopped, a whole disk), or there; nothing the far side
// was waiting with (receiver, import) defined anything; the rerun
// completes the move.
func TestCrashMigrateRunning(t *testing.T) {
	h := newCrashMove(t, guesttest.Options{})
	start := h.playbook(t, "start.lua", startPlaybook)
	var def []byte
	crashtest.RunOp(t, crashtest.Op{
		Name:   "offline g:migrate of a running guest",
		Trials: 3,
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			h.reset(t)
			crashtest.MustRun(t, h.cmd(start))
			def, _ = os.ReadFile(h.defPath)
			return h.cmd(h.migrate)
		},
		Check: func(t *testing.T, r crashtest.Result) {
			// Both only in the window between the import there and the
			// destroy here, and then with the record a rerun finishes the
			// move from.
			if here, there := h.checkKilled(t, r, def); here && there != nil {
				var rec struct{ To string }
				b, _ := os.ReadFile(filepath.Join(filepath.Dir(h.defPath), "migrating.json"))
				if json.Unmarshal(b, &rec) != nil || rec.To == "" {
					t.Errorf("%v: defined here and there, with no record of the import", r)
				}
			}
			// Moved stopped by the rerun (a kill after the stop here):
			// rerunMoves checks its disk there.
			h.rerunMoves(t, r)
			if g, err := h.far.Guest(context.Background(), "cold"); err == nil {
				g.Stop(context.Background(), 0) // the next trial destroys it
			}
		},
	})
}
