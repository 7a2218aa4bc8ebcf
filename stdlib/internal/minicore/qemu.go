package minicore

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/hostinfo"
)

// QEMU describes one test boot of the release kernel: PVH vmlinux, TCG,
// serial console on stdio, no network. It is a test helper, not the qemu
// driver.
type QEMU struct {
	Binary  string   // default "qemu-system-x86_64"
	Kernel  string   // -kernel, usually Release.Vmlinux
	Initrd  string   // -initrd, e.g. Release.FrugalInitrd or Release.ModulesInitrd
	Append  string   // boot codes appended to the base kernel line
	Disks   []string // raw images, attached in order as /dev/vda, /dev/vdb, ...
	MemMB   int      // default 256
	Accel   string   // default "tcg" (KVM does not work on our machines)
	Machine string   // default "microvm,pit=on,pic=on,rtc=on"
	// TSCKHz is passed as tsc_early_khz. microvm has no HPET/PM timer, so
	// on a loaded host the kernel's TSC calibration against the PIT fails
	// and boot hangs; a given frequency skips calibration. 0 means
	// HostTSCKHz(); negative leaves it out.
	TSCKHz int
}

// Args renders the qemu-system-x86_64 argument vector (without the binary).
func (q QEMU) Args() []string {
	mem := q.MemMB
	if mem == 0 {
		mem = 256
	}
	accel := q.Accel
	if accel == "" {
		accel = "tcg"
	}
	machine := q.Machine
	if machine == "" {
		machine = "microvm,pit=on,pic=on,rtc=on"
	}
	line := "console=ttyS0 quiet panic=-1"
	khz := q.TSCKHz
	if khz == 0 {
		khz = HostTSCKHz()
	}
	if khz > 0 {
		line += " tsc_early_khz=" + strconv.Itoa(khz)
	}
	if a := strings.TrimSpace(q.Append); a != "" {
		line += " " + a
	}
	args := []string{
		"-accel", accel, "-M", machine, "-m", strconv.Itoa(mem),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", q.Kernel,
	}
	if q.Initrd != "" {
		args = append(args, "-initrd", q.Initrd)
	}
	args = append(args, "-append", line)
	dev := "virtio-blk-pci"
	if strings.HasPrefix(machine, "microvm") {
		dev = "virtio-blk-device"
	}
	for i, d := range q.Disks {
		id := "d" + strconv.Itoa(i)
		args = append(args, "-drive", "id="+id+",file="+d+",format=raw,if=none", "-device", dev+",drive="+id)
	}
	return args
}

// HostTSCKHz returns the host CPU clock in kHz from /proc/cpuinfo, or 0.
func HostTSCKHz() int { return hostinfo.TSCKHz() }

// Console is a running QEMU whose serial console is captured.
type Console struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	buf  bytes.Buffer
	done chan struct{} // closed when the console stream ends
}

// StartQEMU starts q and stops it (SIGKILL by PID, then wait) when the test
// ends. It fails the test if QEMU cannot start.
func StartQEMU(t testing.TB, q QEMU) *Console {
	t.Helper()
	bin := q.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	cmd := exec.Command(bin, q.Args()...)
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	c := &Console{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	go func() {
		_ = cmd.Wait()
		pw.Close()
	}()
	go func() {
		defer close(c.done)
		r := bufio.NewReader(pr)
		for {
			b, err := r.ReadBytes('\n')
			c.mu.Lock()
			c.buf.Write(b)
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-c.done
	})
	return c
}

// PID is the QEMU process id.
func (c *Console) PID() int { return c.cmd.Process.Pid }

// Output returns everything the console printed so far.
func (c *Console) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// WaitFor waits until a console line contains marker and returns that line
// (without the newline). It fails when QEMU exits or the timeout passes.
func (c *Console) WaitFor(marker string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-c.done:
			if line, ok := findLine(c.Output(), marker, true); ok {
				return line, nil
			}
			return "", fmt.Errorf("wait for %q: qemu exited", marker)
		default:
		}
		if line, ok := findLine(c.Output(), marker, false); ok {
			return line, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("wait for %q: timeout after %v", marker, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findLine returns the first complete line of out containing marker (or an
// unterminated last line when eof).
func findLine(out, marker string, eof bool) (string, bool) {
	i := strings.Index(out, marker)
	if i < 0 {
		return "", false
	}
	start := strings.LastIndexByte(out[:i], '\n') + 1
	j := strings.IndexByte(out[i:], '\n')
	if j < 0 {
		if !eof {
			return "", false
		}
		return strings.TrimRight(out[start:], "\r"), true
	}
	return strings.TrimRight(out[start:i+j], "\r"), true
}
