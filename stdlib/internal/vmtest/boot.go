package vmtest

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
)

// VM is one boot: the QEMU command of minicore.QEMU (PVH vmlinux, TCG,
// microvm, serial console on stdio), plus vCPUs.
type VM struct {
	minicore.QEMU
	CPUs int // -smp; default 1
}

// Result is what a boot printed and reported.
type Result struct {
	Console  string        // everything on the serial console (and QEMU's stderr)
	RC       int           // exit status /init reported; -1 without the marker
	Duration time.Duration // QEMU start to result marker (or end)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Run boots vm and waits until /init printed the result marker, QEMU
// exited or timeout passed; QEMU is killed (by its PID) before Run
// returns. err is non-nil when there is no result (timeout, QEMU failed).
func Run(vm VM, timeout time.Duration) (Result, error) {
	bin := vm.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	args := vm.Args()
	if vm.CPUs > 1 {
		args = append(args, "-smp", strconv.Itoa(vm.CPUs))
	}
	var out syncBuf
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Result{RC: -1}, fmt.Errorf("vmtest: start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	res := Result{RC: -1}
	deadline := time.After(timeout)
	var runErr error
loop:
	for {
		select {
		case err := <-exited:
			if !strings.Contains(out.String(), ResultMarker) {
				runErr = fmt.Errorf("vmtest: qemu exited (%v) without a result", err)
			}
			exited = nil
			break loop
		case <-deadline:
			runErr = fmt.Errorf("vmtest: no result after %v", timeout)
			break loop
		case <-time.After(50 * time.Millisecond):
			c := out.String()
			if i := strings.LastIndex(c, ResultMarker); i >= 0 && strings.Contains(c[i:], "\n") {
				break loop // the whole marker line is in
			}
		}
	}
	res.Duration = time.Since(start)
	if exited != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
	res.Console = out.String()
	if rc, err := ParseResult(res.Console); err == nil {
		res.RC = rc
	} else if runErr == nil {
		runErr = err
	}
	return res, runErr
}
