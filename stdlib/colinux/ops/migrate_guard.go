package ops

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// guardDone is what the incoming side writes to its guard once Incoming
// returned (it cleaned up after itself, or the guest runs here).
const guardDone = "done"

// StartIncomingGuard starts argv (a tinyfarm running GuardIncoming for
// the incoming guest) in a session of its own, reading a pipe whose write
// end only this process holds, and returns done, which tells the guard
// that Incoming returned. Why a process: the incoming QEMU is detached (it
// must outlive this tinyfarm once it runs here), so an incoming tinyfarm
// that dies in the middle (killed with its SSH session when the source
// was killed, or by a signal) would leave it waiting, unfed, holding its
// tap and so the farm's DHCP server, forever. The pipe's end tells the
// guard, which then discards what the move left.
func StartIncomingGuard(argv []string, env []string) (done func(), err error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("incoming guard: %w", err)
	}
	defer r.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdin = r // its stdout and stderr: /dev/null, not the SSH session (which they would hold open)
	cmd.Dir = "/"
	detachProc(cmd)
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("incoming guard: start %s: %w", argv[0], err)
	}
	go cmd.Wait() // reaped if it ends while we run; it outlives us otherwise
	return func() {
		io.WriteString(w, guardDone)
		w.Close()
	}, nil
}

// GuardIncoming is the guard of an incoming guest (StartIncomingGuard):
// it reads r to its end; unless the incoming side said it was done, that
// side died in the middle of the move, and the guard discards the guest
// name (its QEMU, its definition) and the disk copy the move made, as the
// source would on a failure it lives through.
func GuardIncoming(ctx context.Context, f *farm.Farm, name string, r io.Reader) error {
	b, _ := io.ReadAll(io.LimitReader(r, 64))
	if strings.TrimSpace(string(b)) == guardDone {
		return nil
	}
	return DiscardIncoming(ctx, f, name, true)
}
