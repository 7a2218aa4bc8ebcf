package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Guest is one QEMU guest, started by Runner.Start or re-adopted by
// Runner.Attach. Its methods are safe for concurrent use.
type Guest struct {
	spec driver.Spec
	boot bootInfo

	// Set only in the process that started QEMU: closed once it is reaped.
	done    chan struct{}
	waitErr error

	mu sync.Mutex // serializes state changes (Status reaping, Stop, Checkpoint)
}

// PID is the host PID of the QEMU process (0 if never started here).
func (g *Guest) PID() int { return g.boot.PID }

// Argv is the command line QEMU was started with.
func (g *Guest) Argv() []string { return g.boot.Argv }

// Config renders spec's QEMU command line (see Runner.Config).
func (g *Guest) Config(spec driver.Spec) (string, error) {
	var r Runner
	if len(g.boot.Argv) > 0 {
		r.Binary = g.boot.Argv[0]
	}
	return r.Config(spec)
}

func (g *Guest) path(name string) string { return filepath.Join(g.spec.Dir, name) }

// alive tells whether QEMU still runs.
func (g *Guest) alive() bool {
	if g.done != nil {
		select {
		case <-g.done:
			return false
		default:
		}
	}
	return procAlive(g.boot.PID, g.path(pidFile))
}

// qmp runs one command on a fresh connection (QEMU serves one QMP client
// at a time, and another tinyfarm process may want it next).
func (g *Guest) qmp(ctx context.Context, cmd string, args, result any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, g.path(qmpSock))
	if err != nil {
		return err
	}
	defer q.Close()
	return q.Execute(ctx, cmd, args, result)
}

// runState is QEMU's run state: running, paused, shutdown, inmigrate, ...
func (g *Guest) runState(ctx context.Context) (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	if err := g.qmp(ctx, "query-status", nil, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// Status reports running, suspended (QMP stop, or a saved state not yet
// resumed), stopped (Stop, or the guest powered off) or crashed (QEMU
// died without a Stop, the guest kernel panicked, or QEMU hit an internal
// error). A guest found powered off or crashed while QEMU still runs is
// reaped: QEMU is told to quit and the outcome recorded in exit.json.
func (g *Guest) Status(ctx context.Context) (driver.Status, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.status(ctx)
}

func (g *Guest) status(ctx context.Context) (driver.Status, error) {
	if g.boot.PID == 0 {
		return driver.Status{State: driver.Stopped, Reason: "never started"}, nil
	}
	if !g.alive() {
		return g.gone(), nil
	}
	st := driver.Status{State: driver.Running, PID: g.boot.PID, Since: g.boot.Started,
		Isolation: "full VM (" + argAfter(g.boot.Argv, "-accel") + ", " + machineNote(g.boot.Argv) + ")"}
	rs, err := g.runState(ctx)
	if err != nil {
		if !g.alive() {
			return g.gone(), nil
		}
		if ctx.Err() != nil {
			return driver.Status{}, fmt.Errorf("qemu %s: status: %w", g.spec.Name, ctx.Err())
		}
		st.Reason = "process runs, QMP does not answer: " + err.Error()
		return st, nil
	}
	switch rs {
	case "running":
	case "paused", "suspended", "postmigrate", "prelaunch", "inmigrate", "finish-migrate", "save-vm", "restore-vm", "debug":
		st.State, st.Reason = driver.Suspended, "qemu run state "+rs
	case "shutdown":
		state, reason := driver.Stopped, "guest powered off"
		if line := g.panicLine(); line != "" {
			state, reason = driver.Crashed, "guest kernel panic: "+line
		}
		return g.reap(ctx, state, reason), nil
	default: // internal-error, io-error, guest-panicked, watchdog, colo
		return g.reap(ctx, driver.Crashed, "qemu run state "+rs), nil
	}
	return st, nil
}

// gone is the status of a guest whose QEMU process no longer runs. The
// first caller to notice records it in exit.json.
func (g *Guest) gone() driver.Status {
	var rec exitInfo
	if readJSON(g.path(exitFile), &rec) == nil && rec.PID == g.boot.PID {
		return driver.Status{State: rec.State, Reason: rec.Reason, PID: rec.PID, Since: rec.Time}
	}
	rec = exitInfo{State: driver.Crashed, PID: g.boot.PID, Time: time.Now()}
	how := "is gone"
	if g.done != nil {
		<-g.done
		how = "ended: " + g.waitErr.Error()
	}
	if _, err := os.Stat(g.path(stopFile)); err == nil {
		rec.State, rec.Reason = driver.Stopped, "stopped by tinyfarm"
	} else {
		rec.Reason = fmt.Sprintf("qemu process %d %s without a stop request", g.boot.PID, how)
		if last := lastLine(g.logTail()); last != "(no output)" {
			rec.Reason += "; qemu: " + last
		}
	}
	writeJSON(g.path(exitFile), rec)
	g.release()
	return driver.Status{State: rec.State, Reason: rec.Reason, PID: rec.PID, Since: rec.Time}
}

// reap ends a QEMU whose guest is no longer running and records why.
func (g *Guest) reap(ctx context.Context, state driver.State, reason string) driver.Status {
	g.terminate(ctx)
	rec := exitInfo{State: state, Reason: reason, PID: g.boot.PID, Time: time.Now()}
	writeJSON(g.path(exitFile), rec)
	g.release()
	return driver.Status{State: rec.State, Reason: rec.Reason, PID: rec.PID, Since: rec.Time}
}

// terminate asks QEMU to quit and kills it if it has not after 3s.
func (g *Guest) terminate(ctx context.Context) {
	if !g.alive() {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	g.qmp(qctx, "quit", nil, nil)
	cancel()
	if g.waitGone(ctx, 3*time.Second) {
		return
	}
	killPID(g.boot.PID)
	g.waitGone(context.WithoutCancel(ctx), 5*time.Second)
}

// waitGone polls until QEMU has exited or d passed.
func (g *Guest) waitGone(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for g.alive() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return false
		case <-g.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// release removes the runtime files of a finished run (the console log,
// qemu.log, boot.json and exit.json stay).
func (g *Guest) release() {
	for _, f := range []string{qmpSock, pidFile, initrdCat} {
		os.Remove(g.path(f))
	}
	detachNet(context.Background(), g.spec) // the tap on the farm bridge
}

// Stop shuts the guest down. If it runs (a suspended guest is resumed
// first) and grace > 0, it is asked to power off cleanly: QMP
// system_powerdown (an ACPI power button: it needs ACPI in the machine
// and a guest that acts on the button, which Tiny Core does not by
// default) and, on pc/q35, Ctrl-Alt-Del on the PS/2 keyboard (busybox init
// runs its ctrlaltdel action). The colinux module may also run poweroff
// over SSH first; a guest that already powered off is not waited for.
// After grace, QEMU is told to quit, then killed. Stop releases the QMP
// socket, pid file and concatenated initrd either way, and records the
// stop so Status reports stopped rather than crashed.
func (g *Guest) Stop(ctx context.Context, grace time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.boot.PID == 0 {
		return nil
	}
	if !g.alive() {
		g.gone()
		g.release()
		return nil
	}
	if err := writeAtomic(g.path(stopFile), []byte(time.Now().UTC().Format(time.RFC3339)+"\n")); err != nil {
		return fmt.Errorf("qemu %s: stop: %w", g.spec.Name, err)
	}
	how := "qemu ended without a guest shutdown"
	if grace > 0 {
		how = fmt.Sprintf("no guest shutdown within %v, qemu ended", grace)
		if g.cleanShutdown(ctx, grace) {
			how = "guest shut down cleanly"
		}
	}
	g.terminate(ctx)
	if g.alive() {
		return fmt.Errorf("qemu %s: stop: process %d still runs after SIGKILL", g.spec.Name, g.boot.PID)
	}
	if g.done != nil {
		// Our own child: reap it before returning, so its pid is really
		// gone (not a zombie) when Stop says so.
		select {
		case <-g.done:
		case <-time.After(5 * time.Second):
		}
	}
	// Not our child, or not reaped yet: a stopped guest's disks must be
	// free to start it again at once.
	if err := waitExited(ctx, g.boot.PID); err != nil {
		return fmt.Errorf("qemu %s: stop: %w", g.spec.Name, err)
	}
	rec := exitInfo{State: driver.Stopped, Reason: "stopped by tinyfarm (" + how + ")", PID: g.boot.PID, Time: time.Now()}
	if err := writeJSON(g.path(exitFile), rec); err != nil {
		return fmt.Errorf("qemu %s: stop: %w", g.spec.Name, err)
	}
	g.release()
	return ctx.Err()
}

// cleanShutdown asks the guest to power off and waits up to grace for the
// SHUTDOWN event (or QEMU's exit). It reports whether the guest stopped.
func (g *Guest) cleanShutdown(ctx context.Context, grace time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	q, err := DialQMP(ctx, g.path(qmpSock))
	if err != nil {
		return false
	}
	defer q.Close()
	var st struct {
		Status string `json:"status"`
	}
	if err := q.Execute(ctx, "query-status", nil, &st); err != nil {
		return false
	}
	switch st.Status {
	case "shutdown":
		return true
	case "paused", "suspended", "postmigrate":
		if err := q.Execute(ctx, "cont", nil, nil); err != nil {
			return false
		}
	}
	q.Execute(ctx, "system_powerdown", nil, nil)
	machine := strings.SplitN(argAfter(g.boot.Argv, "-M"), ",", 2)[0]
	if machine == "pc" || machine == "q35" {
		q.Execute(ctx, "send-key", map[string]any{"keys": []map[string]string{
			{"type": "qcode", "data": "ctrl"}, {"type": "qcode", "data": "alt"}, {"type": "qcode", "data": "delete"},
		}}, nil)
	}
	_, err = q.Event(ctx, "SHUTDOWN")
	return err == nil || !g.alive()
}

// WaitReady follows the console log from the start of this boot until a
// line holds driver.ReadyMarker. It fails at once when QEMU exits or the
// guest powers off or panics, with the console tail in the error. A
// restored guest (Runner.Restore) printed its marker before it was saved:
// it is ready once its saved state is loaded.
func (g *Guest) WaitReady(ctx context.Context) error {
	fail := func(err error) error {
		return fmt.Errorf("qemu %s: wait ready: %w\nconsole tail:\n%s", g.spec.Name, err, g.crashTail(2048))
	}
	if g.boot.PID == 0 {
		return fail(errors.New("guest was never started"))
	}
	if g.boot.Incoming != "" {
		return g.waitLoaded(ctx)
	}
	f, err := openConsole(g.spec.ConsoleLog())
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if _, err := f.Seek(g.boot.ConsoleOffset, io.SeekStart); err != nil {
		return fail(err)
	}
	marker := []byte(driver.ReadyMarker)
	var carry []byte
	buf := make([]byte, 64<<10)
	lastQMP := time.Now()
	for {
		for {
			n, err := f.Read(buf)
			if n > 0 {
				chunk := append(carry, buf[:n]...)
				if bytes.Contains(chunk, marker) {
					return nil
				}
				if len(chunk) >= len(marker) {
					carry = append(carry[:0], chunk[len(chunk)-len(marker)+1:]...)
				} else {
					carry = append(carry[:0], chunk...)
				}
			}
			if err != nil || n == 0 {
				break
			}
		}
		if !g.alive() {
			st, _ := g.Status(context.WithoutCancel(ctx))
			return fail(fmt.Errorf("guest %s before it was ready: %s", st.State, st.Reason))
		}
		// A powered-off or panicked guest leaves QEMU running in the
		// "shutdown" state: ask QMP now and then.
		if time.Since(lastQMP) > time.Second {
			lastQMP = time.Now()
			if rs, err := g.runState(ctx); err == nil && rs != "running" && rs != "paused" {
				st, _ := g.Status(context.WithoutCancel(ctx))
				if st.State != driver.Running && st.State != driver.Suspended {
					return fail(fmt.Errorf("guest %s before it was ready: %s", st.State, st.Reason))
				}
			}
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitLoaded waits until a restored guest's state is loaded.
func (g *Guest) waitLoaded(ctx context.Context) error {
	for {
		rs, err := g.runState(ctx)
		if err == nil && rs != "inmigrate" && rs != "prelaunch" {
			if rs == "running" || rs == "paused" {
				return nil
			}
			return fmt.Errorf("qemu %s: wait ready: restore from %s: run state %s", g.spec.Name, g.boot.Incoming, rs)
		}
		if !g.alive() {
			st, _ := g.Status(context.WithoutCancel(ctx))
			return fmt.Errorf("qemu %s: wait ready: restore from %s: guest %s: %s", g.spec.Name, g.boot.Incoming, st.State, st.Reason)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("qemu %s: wait ready: %w", g.spec.Name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// openConsole opens the console log, waiting briefly for QEMU to create it.
func openConsole(path string) (*os.File, error) {
	for i := 0; ; i++ {
		f, err := os.Open(path)
		if err == nil || !errors.Is(err, os.ErrNotExist) || i == 50 {
			return f, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Suspend pauses the VM's CPUs (QMP stop, a few milliseconds).
func (g *Guest) Suspend(ctx context.Context) error {
	if err := g.liveQMP(ctx, "stop"); err != nil {
		return fmt.Errorf("qemu %s: suspend: %w", g.spec.Name, err)
	}
	return nil
}

// Resume continues a suspended VM (QMP cont).
func (g *Guest) Resume(ctx context.Context) error {
	if err := g.liveQMP(ctx, "cont"); err != nil {
		return fmt.Errorf("qemu %s: resume: %w", g.spec.Name, err)
	}
	return nil
}

func (g *Guest) liveQMP(ctx context.Context, cmd string) error {
	if !g.alive() {
		return errors.New("guest is not running")
	}
	return g.qmp(ctx, cmd, nil, nil)
}

// Checkpoint saves the VM's state (memory and devices, not disks) to file
// through QMP migrate to "exec:cat > FILE" (written to FILE.tmp, renamed
// when complete). A running guest pauses during the save and continues
// afterwards; Runner.Restore boots from the file.
func (g *Guest) Checkpoint(ctx context.Context, file string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	fail := func(err error) error { return fmt.Errorf("qemu %s: checkpoint %s: %w", g.spec.Name, file, err) }
	if !g.alive() {
		return fail(errors.New("guest is not running"))
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return fail(err)
	}
	tmp := abs + ".tmp"
	q, err := DialQMP(ctx, g.path(qmpSock))
	if err != nil {
		return fail(err)
	}
	defer q.Close()
	var st struct {
		Status string `json:"status"`
	}
	if err := q.Execute(ctx, "query-status", nil, &st); err != nil {
		return fail(err)
	}
	// The default bandwidth limit (32 MiB/s) only slows a save to a file.
	if err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"max-bandwidth": int64(1) << 40}, nil); err != nil {
		return fail(err)
	}
	if err := q.Execute(ctx, "migrate", map[string]any{"uri": "exec:cat > " + shellQuote(tmp)}, nil); err != nil {
		return fail(migrateBlocked(err))
	}
	for {
		var mi struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := q.Execute(ctx, "query-migrate", nil, &mi); err != nil {
			return fail(err)
		}
		switch mi.Status {
		case "completed":
			if err := os.Rename(tmp, abs); err != nil {
				return fail(err)
			}
			if st.Status == "running" {
				if err := q.Execute(ctx, "cont", nil, nil); err != nil {
					return fail(fmt.Errorf("saved, but resuming: %w", err))
				}
			}
			return nil
		case "failed", "cancelled":
			os.Remove(tmp)
			return fail(fmt.Errorf("migration %s: %s", mi.Status, mi.ErrorDesc))
		}
		select {
		case <-ctx.Done():
			q.Execute(context.WithoutCancel(ctx), "migrate_cancel", nil, nil)
			os.Remove(tmp)
			return fail(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// consoleTail is the end of this boot's console output.
func (g *Guest) consoleTail(n int64) string {
	f, err := os.Open(g.spec.ConsoleLog())
	if err != nil {
		return "(no console log: " + err.Error() + ")"
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := g.boot.ConsoleOffset
	if fi.Size()-off > n {
		off = fi.Size() - n
	}
	if off > fi.Size() {
		off = 0
	}
	b := make([]byte, fi.Size()-off)
	n2, _ := f.ReadAt(b, off)
	return tail(b[:n2], int(n))
}

// crashTail is what a user needs from the console of a failed boot, in
// at most about n bytes. After a kernel panic the last lines are the
// panic's stack dump, which says nothing about why: the lines that led to
// the panic (an init's last words) come first, then the banner, then the
// very end of the log.
func (g *Guest) crashTail(n int64) string {
	s := g.consoleTail(64 << 10)
	i := strings.Index(s, "Kernel panic")
	if i < 0 {
		return tail([]byte(s), int(n))
	}
	end := i + strings.IndexByte(s[i:]+"\n", '\n')
	before := tail([]byte(s[:end]), int(n*3/4))
	after := strings.TrimSpace(s[end:])
	if after == "" {
		return before
	}
	return before + "\n[...]\n" + tail([]byte(after), int(n/4))
}

// panicLine is the "Kernel panic" line of this boot's console, if any.
func (g *Guest) panicLine() string {
	for _, l := range strings.Split(g.consoleTail(16<<10), "\n") {
		if i := strings.Index(l, "Kernel panic"); i >= 0 {
			return strings.TrimSpace(l[i:])
		}
	}
	return ""
}

// logTail is the end of what QEMU printed in this run (qemu.log after
// the header line Start wrote).
func (g *Guest) logTail() string {
	b, _ := os.ReadFile(g.path(logFile))
	if i := bytes.LastIndex(b, []byte("=== tinyfarm ")); i >= 0 {
		b = b[i:]
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			b = b[j+1:]
		} else {
			b = nil
		}
	}
	if s := tail(b, 1024); s != "" {
		return s
	}
	return "(no output)"
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// machineNote names the machine QEMU runs and, for pc with a bzImage, why
// it is not microvm (a Tiny Core release's own vmlinuz64 boots that way).
func machineNote(argv []string) string {
	m, _, _ := strings.Cut(argAfter(argv, "-M"), ",")
	if k := argAfter(argv, "-kernel"); m == "pc" && k != "" {
		if elf, err := KernelIsELF(k); err == nil && !elf {
			return "pc: the kernel is a bzImage without the PVH entry microvm needs"
		}
	}
	return m
}

func argAfter(argv []string, flag string) string {
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == flag {
			return argv[i+1]
		}
	}
	return ""
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// Interface guards.
var (
	_ driver.Runner       = (*Runner)(nil)
	_ driver.Configurer   = (*Runner)(nil)
	_ driver.Guest        = (*Guest)(nil)
	_ driver.Suspender    = (*Guest)(nil)
	_ driver.Checkpointer = (*Guest)(nil)
	_ driver.Configurer   = (*Guest)(nil)
)

// waitExited waits (up to 10 s) until pid, once a QEMU, has finished
// exiting and closed its descriptors (see procExiting).
func waitExited(ctx context.Context, pid int) error {
	for deadline := time.Now().Add(10 * time.Second); procExiting(pid) && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
