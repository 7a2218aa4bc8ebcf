//go:build linux

package ops_test

import (
	"bytes"
	"os"
	"os/exec"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

// migratePlaybook defines the stopped guest cold (with vars.define) or
// moves it to the far host unless it is gone from here already: what a
// user reruns after a failed move.
const migratePlaybook = `
local colinux = require("colinux")
colinux.network{ bridge = "tfcrash5", subnet = "10.77.235.0/24" }
if vars.define then
  colinux.guest{ name = "cold", disk = vars.disk, mem = "64M" }
  return
end
local g = colinux.get("cold")
if g then
  g:migrate{ to = { address = vars.address, key = vars.key, host_key = vars.host_key, state_dir = vars.far, binary = vars.bin } }
end
`

// TestCrashMigrateOffline kills `tinyfarm run` at random moments of an
// offline g:migrate of a stopped ns guest to another tinyfarm host (a
// network namespace with its own dropbear and state dir). After every
// kill the guest is here with its definition untouched and a whole disk,
// or there; what is registered there has a whole disk; the rerun
// completes the move.
func TestCrashMigrateOffline(t *testing.T) {
	h := newCrashMove(t, guesttest.Options{SSH: true})
	var def []byte
	crashtest.RunOp(t, crashtest.Op{
		Name:   "offline g:migrate",
		Trials: 3,
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			h.reset(t)
			def, _ = os.ReadFile(h.defPath)
			return h.cmd(h.migrate)
		},
		Check: func(t *testing.T, r crashtest.Result) {
			if _, fd := h.checkKilled(t, r, def); fd != nil {
				if out := fsck(fd.Disk); out != "" {
					t.Errorf("%v: registered there with a disk that is not whole: %s", r, out)
				}
			}
			fd := h.rerunMoves(t, r)
			// The disk edited offline (the far farm's key) is mounted
			// while it is edited: nothing of it may stay mounted.
			for _, d := range []string{h.disk, fd.Disk} {
				if out, _ := exec.Command("losetup", "-j", d).Output(); len(bytes.TrimSpace(out)) > 0 {
					t.Errorf("%v: loop device left on %s: %s", r, d, out)
				}
			}
		},
	})
}
