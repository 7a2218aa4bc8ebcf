//go:build windows

package colinuxd

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
	"sync"
	"syscall"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

const (
	stillActive     = 259        // GetExitCodeProcess: the process runs
	detachedProcess = 0x00000008 // CreateProcess: no console
)

type bootInfo struct {
	PID           int       `json:"pid"`
	Created       int64     `json:"created"` // process creation time (FILETIME), against PID reuse
	ConsoleOffset int64     `json:"console_offset"`
	Started       time.Time `json:"started"`
	Argv          []string  `json:"argv"`
}

type exitInfo struct {
	State  driver.State `json:"state"`
	Reason string       `json:"reason"`
	PID    int          `json:"pid"`
	Time   time.Time    `json:"time"`
}

// Guest is a running colinux-daemon.
type Guest struct {
	spec driver.Spec
	boot bootInfo
	done chan struct{} // closed when the daemon started here exits
	mu   sync.Mutex
}

// Start renders the configuration into Spec.Dir and starts
// colinux-daemon detached from tinyfarm's console. The kernel must be the
// coLinux ELF vmlinux (a bzImage does not boot).
func (r *Runner) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	fail := func(err error) (driver.Guest, error) { return nil, fmt.Errorf("colinux %s: start: %w", spec.Name, err) }
	if err := isELF(spec.Kernel); err != nil {
		return fail(err)
	}
	text, err := r.Config(spec)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return fail(err)
	}
	if old, _ := readBoot(spec.Dir); alive(old) {
		return fail(fmt.Errorf("already running (pid %d)", old.PID))
	}
	if len(spec.Initrds) > 1 {
		if err := concat(filepath.Join(spec.Dir, "initrd.img"), spec.Initrds); err != nil {
			return fail(err)
		}
	}
	if err := writeAtomic(filepath.Join(spec.Dir, ConfFile), []byte(text)); err != nil {
		return fail(err)
	}
	for _, f := range []string{PIDFile, exitFile, stopFile} {
		os.Remove(filepath.Join(spec.Dir, f))
	}
	logf, err := os.OpenFile(spec.ConsoleLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fail(err)
	}
	defer logf.Close()
	fi, err := logf.Stat()
	if err != nil {
		return fail(err)
	}
	argv := Args(spec, r.Daemon)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP | detachedProcess, HideWindow: true}
	if err := cmd.Start(); err != nil {
		return fail(err)
	}
	g := &Guest{spec: spec, done: make(chan struct{})}
	g.boot = bootInfo{PID: cmd.Process.Pid, ConsoleOffset: fi.Size(), Started: time.Now(), Argv: argv}
	g.boot.Created, _ = created(g.boot.PID)
	go func() { cmd.Wait(); close(g.done) }()
	if err := writeJSON(filepath.Join(spec.Dir, bootFile), g.boot); err != nil {
		cmd.Process.Kill()
		return fail(err)
	}
	// The daemon exits at once on a bad configuration or a missing driver.
	select {
	case <-g.done:
		return fail(fmt.Errorf("colinux-daemon exited: %s", tailFile(spec.ConsoleLog(), fi.Size())))
	case <-time.After(500 * time.Millisecond):
	case <-ctx.Done():
	}
	return g, nil
}

// Attach re-adopts a daemon started earlier from boot.json in Spec.Dir.
func (r *Runner) Attach(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	b, err := readBoot(spec.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("colinux %s: attach: %w", spec.Name, err)
	}
	return &Guest{spec: spec, boot: b}, nil
}

func (g *Guest) path(f string) string { return filepath.Join(g.spec.Dir, f) }

// Status is running while the daemon runs; afterwards stopped (after
// Stop) or crashed (it ended on its own: the guest halted, or the daemon
// died; coLinux does not tell these apart).
func (g *Guest) Status(ctx context.Context) (driver.Status, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.boot.PID == 0 {
		return driver.Status{State: driver.Stopped, Reason: "never started"}, nil
	}
	if alive(g.boot) {
		return driver.Status{State: driver.Running, PID: g.boot.PID, Since: g.boot.Started, Isolation: "coLinux (cooperative kernel)"}, nil
	}
	return g.gone(), nil
}

func (g *Guest) gone() driver.Status {
	var rec exitInfo
	if data, err := os.ReadFile(g.path(exitFile)); err == nil && json.Unmarshal(data, &rec) == nil && rec.PID == g.boot.PID {
		return driver.Status{State: rec.State, Reason: rec.Reason, PID: rec.PID, Since: rec.Time}
	}
	rec = exitInfo{State: driver.Crashed, PID: g.boot.PID, Time: time.Now(),
		Reason: fmt.Sprintf("colinux-daemon %d ended without a stop request", g.boot.PID)}
	if _, err := os.Stat(g.path(stopFile)); err == nil {
		rec.State, rec.Reason = driver.Stopped, "stopped by tinyfarm"
	}
	writeJSON(g.path(exitFile), rec)
	os.Remove(g.path(PIDFile))
	return driver.Status{State: rec.State, Reason: rec.Reason, PID: rec.PID, Since: rec.Time}
}

// Stop waits up to grace for the daemon to end by itself (the colinux
// module runs poweroff over SSH first: coLinux has no remote shutdown
// request for a daemon without a console or service), then terminates it,
// which is an unclean stop for the guest.
func (g *Guest) Stop(ctx context.Context, grace time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.boot.PID == 0 {
		return nil
	}
	if !alive(g.boot) {
		g.gone()
		return nil
	}
	if err := writeAtomic(g.path(stopFile), []byte(time.Now().UTC().Format(time.RFC3339)+"\n")); err != nil {
		return fmt.Errorf("colinux %s: stop: %w", g.spec.Name, err)
	}
	how := "guest shut down"
	if !waitGone(ctx, g.boot, grace) {
		how = "daemon terminated"
		if err := terminate(g.boot.PID); err != nil {
			return fmt.Errorf("colinux %s: stop: %w", g.spec.Name, err)
		}
		waitGone(context.WithoutCancel(ctx), g.boot, 5*time.Second)
	}
	rec := exitInfo{State: driver.Stopped, Reason: "stopped by tinyfarm (" + how + ")", PID: g.boot.PID, Time: time.Now()}
	os.Remove(g.path(PIDFile))
	if err := writeJSON(g.path(exitFile), rec); err != nil {
		return fmt.Errorf("colinux %s: stop: %w", g.spec.Name, err)
	}
	return nil
}

// WaitReady follows the daemon's output for driver.ReadyMarker. coLinux
// prints the guest's kernel messages there (unless -k); whether a
// guest's /dev/console lines reach it is unverified, so a guest should
// also write the marker to /dev/kmsg.
func (g *Guest) WaitReady(ctx context.Context) error {
	f, err := os.Open(g.spec.ConsoleLog())
	if err != nil {
		return fmt.Errorf("colinux %s: wait ready: %w", g.spec.Name, err)
	}
	defer f.Close()
	if _, err := f.Seek(g.boot.ConsoleOffset, io.SeekStart); err != nil {
		return fmt.Errorf("colinux %s: wait ready: %w", g.spec.Name, err)
	}
	var seen []byte
	buf := make([]byte, 32<<10)
	for {
		n, _ := f.Read(buf)
		if n > 0 {
			seen = append(seen, buf[:n]...)
			if bytes.Contains(seen, []byte(driver.ReadyMarker)) {
				return nil
			}
			if len(seen) > 1<<16 {
				seen = seen[len(seen)-len(driver.ReadyMarker):]
			}
			continue
		}
		if !alive(g.boot) {
			st, _ := g.Status(ctx)
			return fmt.Errorf("colinux %s: wait ready: guest %s before it was ready: %s\nconsole tail:\n%s",
				g.spec.Name, st.State, st.Reason, tailFile(g.spec.ConsoleLog(), g.boot.ConsoleOffset))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("colinux %s: wait ready: %w", g.spec.Name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Config renders spec's coLinux configuration.
func (g *Guest) Config(spec driver.Spec) (string, error) { return (&Runner{}).Config(spec) }

func isELF(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	var m [4]byte
	if _, err := io.ReadFull(f, m[:]); err != nil || string(m[:]) != "\x7fELF" {
		return fmt.Errorf("kernel %s: not an ELF vmlinux (coLinux cannot boot a bzImage)", path)
	}
	return nil
}

func openProcess(pid int, access uint32) (syscall.Handle, error) {
	return syscall.OpenProcess(access, false, uint32(pid))
}

// created is the process creation time, to tell a reused PID apart.
func created(pid int) (int64, error) {
	h, err := openProcess(pid, syscall.PROCESS_QUERY_INFORMATION)
	if err != nil {
		return 0, err
	}
	defer syscall.CloseHandle(h)
	var c, e, k, u syscall.Filetime
	if err := syscall.GetProcessTimes(h, &c, &e, &k, &u); err != nil {
		return 0, err
	}
	return c.Nanoseconds(), nil
}

func alive(b bootInfo) bool {
	if b.PID <= 0 {
		return false
	}
	h, err := openProcess(b.PID, syscall.PROCESS_QUERY_INFORMATION)
	if err != nil {
		return false
	}
	defer syscall.CloseHandle(h)
	var code uint32
	if err := syscall.GetExitCodeProcess(h, &code); err != nil || code != stillActive {
		return false
	}
	if b.Created != 0 {
		if c, err := created(b.PID); err == nil && c != b.Created {
			return false // the PID now belongs to another process
		}
	}
	return true
}

func terminate(pid int) error {
	h, err := openProcess(pid, syscall.PROCESS_TERMINATE)
	if err != nil {
		return err
	}
	defer syscall.CloseHandle(h)
	return syscall.TerminateProcess(h, 1)
}

func waitGone(ctx context.Context, b bootInfo, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for alive(b) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

func readBoot(dir string) (bootInfo, error) {
	var b bootInfo
	data, err := os.ReadFile(filepath.Join(dir, bootFile))
	if err != nil {
		return b, err
	}
	return b, json.Unmarshal(data, &b)
}

func writeJSON(path string, v any) error {
	return fsutil.WriteJSONAtomic(path, v, 0o600)
}

func writeAtomic(path string, data []byte) error {
	return fsutil.WriteFileAtomic(path, data, 0o600)
}

func concat(dst string, srcs []string) error {
	var buf bytes.Buffer
	for _, s := range srcs {
		b, err := os.ReadFile(s)
		if err != nil {
			return fmt.Errorf("initrd: %w", err)
		}
		buf.Write(b)
	}
	return writeAtomic(dst, buf.Bytes())
}

func tailFile(path string, from int64) string {
	b, _ := os.ReadFile(path)
	if from > 0 && from <= int64(len(b)) {
		b = b[from:]
	}
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	return string(bytes.TrimSpace(b))
}

// Interface guards.
var (
	_ driver.Guest      = (*Guest)(nil)
	_ driver.Configurer = (*Guest)(nil)
)

// OwnKernel: a coLinux guest runs its own kernel; its clean shutdown is
// its own poweroff.
func (g *Guest) OwnKernel() {}
