package cmdtarget_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/target/cmdtarget"
	"github.com/tinyfarm/tinyfarm/stdlib/target/targettest"
)

// busybox runs commands with the busybox shell and applets, the userland
// of a Tiny Core guest, so the target is tested against the tools it will
// meet there.
type busybox struct{ bin string }

func (b busybox) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, []byte, int, error) {
	c := exec.CommandContext(ctx, b.bin, "sh", "-c", cmd)
	c.Env = []string{"PATH=/nonexistent"} // applets only: busybox sh runs its own
	c.Stdin = stdin
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.Bytes(), errb.Bytes(), ee.ExitCode(), nil
	}
	return out.Bytes(), errb.Bytes(), 0, err
}

func TestConformanceWithBusybox(t *testing.T) {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (busybox-static, scripts/deps.sh)")
	}
	if os.Geteuid() != 0 {
		t.Skip("owners and setuid need root")
	}
	// busybox sh finds applets for bare command names only with
	// FEATURE_SH_STANDALONE; Debian's busybox-static has it.
	if out, err := exec.Command(bb, "sh", "-c", "PATH=/nonexistent stat -c %u /").CombinedOutput(); err != nil {
		t.Skipf("busybox without standalone applets: %s", out)
	}
	_ = syscall.Getuid
	targettest.Run(t, func(t *testing.T) target.Target {
		return cmdtarget.New(busybox{bb}, t.TempDir(), "test")
	})
}
