package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/disklock"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/hostinfo"
)

// More runtime files inside Spec.Dir.
const (
	bootFile = "boot.json"      // bootInfo of the current run
	exitFile = "exit.json"      // exitInfo once QEMU is gone
	stopFile = "stop-requested" // Stop was called: an exit is not a crash
	logFile  = "qemu.log"       // QEMU's own stdout/stderr (timestamped)
)

// DefaultConsoleMax is the console log size above which Start rotates it
// to console.log.1.
const DefaultConsoleMax = 1 << 20

// Runner starts QEMU guests. The zero value is ready to use.
type Runner struct {
	// Binary is the QEMU executable. Default "qemu-system-x86_64" from PATH.
	Binary string
	// ConsoleMax is the size in bytes above which Start rotates the console
	// log (console.log → console.log.1, one old generation kept). Default
	// DefaultConsoleMax; below that the log is appended to, so a restart
	// keeps the previous boot's output.
	ConsoleMax int64
	// StartTimeout bounds how long Start waits for QEMU's QMP socket to
	// answer (device setup and kernel loading). Default 30s.
	StartTimeout time.Duration
	// Exe is the binary re-executed as the farm's DHCP server for guests
	// on the bridge (Net.Mode "bridge"); it must call farmnet.Main first
	// thing. Default guestexe.Path() (tinyfarm-guest next to tinyfarm).
	Exe string
}

// bootInfo is written by Start and read by Attach.
type bootInfo struct {
	PID           int       `json:"pid"`
	ConsoleOffset int64     `json:"console_offset"` // console log size before this boot
	Started       time.Time `json:"started"`
	Incoming      string    `json:"incoming,omitempty"` // restored from this state file
	Argv          []string  `json:"argv"`
}

// exitInfo records how the last run ended.
type exitInfo struct {
	State  driver.State `json:"state"`
	Reason string       `json:"reason"`
	PID    int          `json:"pid"`
	Time   time.Time    `json:"time"`
}

// KernelIsELF reports whether the kernel image starts with the ELF magic
// (a decompressed vmlinux, bootable through its PVH entry point) rather
// than being a bzImage.
func KernelIsELF(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	return string(magic[:]) == "\x7fELF", nil
}

// absSpec makes the spec's host paths absolute (QEMU runs in Spec.Dir,
// and Attach matches the pid file path on QEMU's command line).
func absSpec(spec driver.Spec) (driver.Spec, error) {
	var err error
	abs := func(p *string) {
		if *p != "" && err == nil {
			*p, err = filepath.Abs(*p)
		}
	}
	abs(&spec.Dir)
	abs(&spec.Kernel)
	spec.Initrds = append([]string(nil), spec.Initrds...)
	for i := range spec.Initrds {
		abs(&spec.Initrds[i])
	}
	spec.Disks = append([]driver.Disk(nil), spec.Disks...)
	for i := range spec.Disks {
		abs(&spec.Disks[i].Path)
	}
	spec.Shares = append([]driver.Share(nil), spec.Shares...)
	for i := range spec.Shares {
		abs(&spec.Shares[i].HostPath)
	}
	return spec, err
}

// Argv renders the command line Start would run: it makes the spec's paths
// absolute, reads the kernel's first bytes to choose the machine, then
// calls the pure Args.
func (r *Runner) Argv(spec driver.Spec, incoming string) ([]string, error) {
	return r.argv(spec, incoming, "")
}

func (r *Runner) argv(spec driver.Spec, incoming, uri string) ([]string, error) {
	spec, err := absSpec(spec)
	if err != nil {
		return nil, err
	}
	if spec.Kernel == "" {
		return Args(spec, Options{Binary: r.Binary})
	}
	elf, err := KernelIsELF(spec.Kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	return Args(spec, Options{Binary: r.Binary, KernelELF: elf, TSCKHz: HostTSCKHz(), Incoming: incoming, IncomingURI: uri})
}

// HostTSCKHz returns the host CPU clock in kHz from /proc/cpuinfo ("cpu
// MHz"), or 0 if unknown. Under TCG and KVM the guest TSC runs at the
// host's rate.
func HostTSCKHz() int { return hostinfo.TSCKHz() }

// Config renders the QEMU command line for spec as one shell-quoted line.
func (r *Runner) Config(spec driver.Spec) (string, error) {
	argv, err := r.Argv(spec, "")
	if err != nil {
		return "", fmt.Errorf("qemu %s: config: %w", spec.Name, err)
	}
	return CommandLine(argv) + "\n", nil
}

// Start boots the guest and returns once QEMU answers on its QMP socket.
func (r *Runner) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	g, err := r.start(ctx, spec, "", "")
	if err != nil {
		return nil, err
	}
	return g, nil
}

// RestoreGuest starts the guest from a state file written by Checkpoint, with
// the same spec (devices must match). The guest resumes in the run state
// it was saved in; WaitReady returns once the state is loaded.
func (r *Runner) RestoreGuest(ctx context.Context, spec driver.Spec, file string) (*Guest, error) {
	if _, err := os.Stat(file); err != nil {
		return nil, fmt.Errorf("qemu %s: restore: %w", spec.Name, err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("qemu %s: restore: %w", spec.Name, err)
	}
	return r.start(ctx, spec, abs, "")
}

// StartIncomingGuest starts the guest waiting for a live migration stream on
// uri (QEMU's -incoming, e.g. "unix:/path/sock"), with the spec the
// source runs (devices must match). QEMU is told to run the guest as soon
// as the stream is loaded; WaitReady returns then.
func (r *Runner) StartIncomingGuest(ctx context.Context, spec driver.Spec, uri string) (*Guest, error) {
	if uri == "" {
		return nil, fmt.Errorf("qemu %s: incoming: empty uri", spec.Name)
	}
	return r.start(ctx, spec, "", uri)
}

func (r *Runner) start(ctx context.Context, spec driver.Spec, incoming, uri string) (*Guest, error) {
	fail := func(err error) (*Guest, error) { return nil, fmt.Errorf("qemu %s: start: %w", spec.Name, err) }
	if !supported {
		return fail(driver.Unsupported("qemu", "start", "the qemu runner needs Linux"))
	}
	spec, err := absSpec(spec)
	if err != nil {
		return fail(err)
	}
	argv, err := r.argv(spec, incoming, uri)
	if err != nil {
		return fail(err)
	}
	if uri != "" {
		incoming = uri // for WaitReady: ready once the stream is loaded
	}
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return fail(err)
	}
	old := &Guest{spec: spec}
	old.boot, _ = readBoot(spec.Dir)
	if old.alive() {
		return fail(fmt.Errorf("already running (pid %d)", old.boot.PID))
	}
	// The last QEMU may still be exiting (a guest that powered itself
	// off): wait until it has let go of the disks' locks.
	if err := waitExited(ctx, old.boot.PID); err != nil {
		return fail(err)
	}
	if len(spec.Initrds) > 1 {
		if err := concat(filepath.Join(spec.Dir, initrdCat), spec.Initrds); err != nil {
			return fail(fmt.Errorf("initrd: %w", err))
		}
	}
	for _, f := range []string{qmpSock, pidFile, exitFile, stopFile} {
		os.Remove(filepath.Join(spec.Dir, f))
	}
	offset, err := r.rotateConsole(spec.ConsoleLog())
	if err != nil {
		return fail(err)
	}
	logf, err := os.OpenFile(filepath.Join(spec.Dir, logFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== tinyfarm %s: %s\n", time.Now().UTC().Format(time.RFC3339), CommandLine(argv))

	if err := r.attachNet(ctx, spec); err != nil {
		return fail(err)
	}
	if spec.Net.Mode == "bridge" {
		failed := fail
		fail = func(err error) (*Guest, error) {
			detachNet(ctx, spec)
			return failed(err)
		}
	}
	// QEMU inherits the disks' locks and holds them while it runs (and
	// only QEMU: the VM never sees host descriptors). QEMU's own image
	// locking keeps two QEMUs apart; this keeps an ns guest out too.
	locks, err := disklock.Lock(spec.Name, spec.Disks)
	if err != nil {
		return fail(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = spec.Dir
	cmd.ExtraFiles = locks
	detach(cmd)
	err = cmd.Start()
	disklock.Close(locks) // QEMU has its own descriptors of them now
	if err != nil {
		return fail(err)
	}
	g := &Guest{spec: spec, done: make(chan struct{})}
	g.boot = bootInfo{PID: cmd.Process.Pid, ConsoleOffset: offset, Started: time.Now(), Incoming: incoming, Argv: argv}
	go func() {
		err := cmd.Wait()
		g.waitErr = err
		if err == nil {
			g.waitErr = errors.New("exit status 0")
		}
		close(g.done)
	}()
	if err := writeJSON(filepath.Join(spec.Dir, bootFile), g.boot); err != nil {
		killPID(g.boot.PID)
		return fail(err)
	}

	// QEMU answers QMP commands once its main loop runs, that is after the
	// devices were created and the kernel and initrd were loaded.
	timeout := r.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if !g.alive() {
			<-g.done
			os.Remove(filepath.Join(spec.Dir, qmpSock))
			return fail(fmt.Errorf("qemu exited (%v): %s", g.waitErr, g.logTail()))
		}
		if _, err := g.runState(wctx); err == nil {
			break
		} else if wctx.Err() != nil {
			killPID(g.boot.PID)
			<-g.done
			return fail(fmt.Errorf("no QMP answer: %w; qemu log: %s", err, g.logTail()))
		}
		select {
		case <-g.done:
		case <-wctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	if incoming != "" {
		// A saved running guest resumes by itself once loaded; cont makes
		// sure of it (it only sets autostart while the state is loading).
		if err := g.qmp(ctx, "cont", nil, nil); err != nil {
			var qe *QMPError
			if !errors.As(err, &qe) {
				return nil, fmt.Errorf("qemu %s: restore: %w", spec.Name, err)
			}
		}
	}
	return g, nil
}

// Attach re-adopts a guest started earlier, possibly by another process,
// from boot.json and the pid file in spec.Dir. A guest that was never
// started here, or that is gone, is returned with a stopped or crashed
// status.
func (r *Runner) Attach(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	g, err := r.AttachGuest(ctx, spec)
	if err != nil {
		return nil, err
	}
	return g, nil
}

// AttachGuest is Attach with the concrete type.
func (r *Runner) AttachGuest(ctx context.Context, spec driver.Spec) (*Guest, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qemu %s: attach: %w", spec.Name, err)
	}
	spec, err := absSpec(spec)
	if err != nil {
		return nil, fmt.Errorf("qemu %s: attach: %w", spec.Name, err)
	}
	b, err := readBoot(spec.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("qemu %s: attach: %w", spec.Name, err)
	}
	return &Guest{spec: spec, boot: b}, nil
}

// rotateConsole moves a console log larger than ConsoleMax aside and
// returns the size of the log QEMU will append to.
func (r *Runner) rotateConsole(path string) (int64, error) {
	max := r.ConsoleMax
	if max <= 0 {
		max = DefaultConsoleMax
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if fi.Size() <= max {
		return fi.Size(), nil
	}
	return 0, os.Rename(path, path+".1")
}

func readBoot(dir string) (bootInfo, error) {
	var b bootInfo
	data, err := os.ReadFile(filepath.Join(dir, bootFile))
	if err != nil {
		return b, err
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, fmt.Errorf("%s: %w", bootFile, err)
	}
	return b, nil
}

// writeJSON writes v atomically (temp file, fsync, rename).
func writeJSON(path string, v any) error {
	return fsutil.WriteJSONAtomic(path, v, 0o600)
}

func writeAtomic(path string, data []byte) error {
	return fsutil.WriteFileAtomic(path, data, 0o600)
}

// concat writes the files one after the other into dst, atomically.
func concat(dst string, srcs []string) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	for _, s := range srcs {
		in, err := os.Open(s)
		if err != nil {
			f.Close()
			return err
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

// tail returns the last n bytes of b from a line start, trimmed.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}
