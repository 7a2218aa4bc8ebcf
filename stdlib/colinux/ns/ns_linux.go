package ns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guestexe"
)

// Runner starts namespace guests. The zero value uses the running binary
// as the guest monitor (see Main) and the host's cgroup tree.
type Runner struct {
	// Exe is the binary re-executed as monitor, init and exec helper.
	// Default: guestexe.Path() (tinyfarm-guest next to tinyfarm, else the
	// running binary). It must call ns.Main first thing.
	Exe string
	// Pids caps the number of processes in a guest. Default 1024.
	Pids int
	// Logf receives progress lines. Default: discard.
	Logf func(format string, args ...any)
	// UserNS runs the guest in a user namespace: its root is an
	// unprivileged host uid (IDBase), the disk idmapped to it. Scatter
	// guests only.
	UserNS bool
	// Unhardened skips the capability drop, /proc masking and seccomp.
	// Only the benchmark that measures what hardening costs sets it.
	Unhardened bool
}

// Runtime is what the monitor records in runtime.json while a guest runs.
type Runtime struct {
	MonitorPID   int       `json:"monitor_pid"`
	MonitorStart uint64    `json:"monitor_start"`
	InitPID      int       `json:"init_pid"`
	InitStart    uint64    `json:"init_start"` // /proc/<pid>/stat starttime, against PID reuse
	Cgroups      *Cgroups  `json:"cgroups"`
	Veth         string    `json:"veth,omitempty"`
	UserNS       bool      `json:"userns,omitempty"`
	NetRaw       bool      `json:"net_raw,omitempty"` // the guest kept CAP_NET_RAW (and so do its execs)
	IDBase       int       `json:"id_base,omitempty"` // user namespace mode: guest root's host uid
	Started      time.Time `json:"started"`
}

// Exit is what the monitor records in exit.json when the guest ended.
type Exit struct {
	State  driver.State `json:"state"`
	Reason string       `json:"reason"`
	Time   time.Time    `json:"time"`
}

const (
	runtimeFile = "runtime.json"
	exitFile    = "exit.json"
	specFile    = "spec.json"
	stopFile    = "stop-requested"
	monitorLog  = "monitor.log"
)

func (r *Runner) exe() (string, error) {
	if r.Exe != "" {
		return r.Exe, nil
	}
	return guestexe.Path()
}

// Start launches the guest's monitor, detached (the guest outlives this
// process), and returns once the guest's init runs with its network up.
func (r *Runner) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	g := &guest{spec: spec, runner: r}
	if st, err := g.Status(ctx); err == nil && (st.State == driver.Running || st.State == driver.Suspended) {
		return nil, fmt.Errorf("ns %s: start: already running (pid %d)", spec.Name, st.PID)
	}
	if spec.Base != "" && len(spec.Disks) > 0 {
		if err := ensureLayer(spec.Disks[0].Path); err != nil {
			return nil, fmt.Errorf("ns %s: start: %w", spec.Name, err)
		}
	}
	if err := checkSpec(spec); err != nil {
		return nil, fmt.Errorf("ns %s: start: %w", spec.Name, err)
	}
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ns %s: start: %w", spec.Name, err)
	}
	for _, f := range []string{runtimeFile, exitFile, stopFile} {
		os.Remove(filepath.Join(spec.Dir, f))
	}
	// A new console log per start: WaitReady must not find the ready
	// marker of the previous boot. The previous one is kept beside it.
	os.Rename(spec.ConsoleLog(), spec.ConsoleLog()+".prev")
	b, _ := json.MarshalIndent(monitorSpec{Spec: spec, Pids: r.pids(), Unhardened: r.Unhardened, UserNS: r.UserNS || spec.UserNS}, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(spec.Dir, specFile), b, 0o600); err != nil {
		return nil, fmt.Errorf("ns %s: start: %w", spec.Name, err)
	}
	exe, err := r.exe()
	if err != nil {
		return nil, fmt.Errorf("ns %s: start: find own binary: %w", spec.Name, err)
	}
	logf, err := os.OpenFile(filepath.Join(spec.Dir, monitorLog), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ns %s: start: %w", spec.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(exe)
	cmd.Args = []string{"tinyfarm-ns-monitor", spec.Dir}
	cmd.Env = append(os.Environ(), reexecEnv+"=monitor")
	if os.Getenv("TINYFARM_NS_TRACE") != "" {
		cmd.Env = append(cmd.Env, traceEnv+"="+strconv.FormatInt(time.Now().UnixNano(), 10))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own session: Ctrl-C in the terminal that ran tinyfarm does not reach
	// the guest, and the guest survives tinyfarm's exit.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The monitor closes the pipe's write end (its fd 3) once runtime.json
	// is written, or by exiting: no polling for the file.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ns %s: start: %w", spec.Name, err)
	}
	defer readyR.Close()
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.Env = append(cmd.Env, readyEnv+"=3")
	err = cmd.Start()
	readyW.Close()
	if err != nil {
		return nil, fmt.Errorf("ns %s: start monitor: %w", spec.Name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reap the monitor whenever it ends
	ready := make(chan struct{})
	go func() { io.Copy(io.Discard, readyR); close(ready) }()
	select {
	case <-ready:
	case <-ctx.Done():
		cmd.Process.Kill()
		return nil, fmt.Errorf("ns %s: start: %w", spec.Name, ctx.Err())
	}
	if _, err := g.runtime(); err == nil {
		return g, nil
	}
	select {
	case err := <-exited:
		return nil, fmt.Errorf("ns %s: start: monitor exited (%v): %s", spec.Name, err, tail(filepath.Join(spec.Dir, monitorLog), 2000))
	case <-ctx.Done():
		cmd.Process.Kill()
		return nil, fmt.Errorf("ns %s: start: %w", spec.Name, ctx.Err())
	}
}

func (r *Runner) pids() int {
	if r.Pids > 0 {
		return r.Pids
	}
	return 1024
}

func checkSpec(s driver.Spec) error {
	if s.Layout != driver.Scatter && s.Layout != driver.Frugal {
		return fmt.Errorf("layout %q: want scatter or frugal", s.Layout)
	}
	if s.Layout == driver.Scatter && len(s.Disks) == 0 {
		return errors.New("a scatter guest needs a disk holding the Tiny Core root")
	}
	if s.Layout == driver.Frugal && s.Core == "" {
		return errors.New("a frugal guest needs core (the Tiny Core initramfs)")
	}
	if s.Base != "" {
		if s.Layout != driver.Scatter {
			return errors.New("base: a layered root is for scatter guests")
		}
		if _, err := os.Stat(s.Base); err != nil {
			return fmt.Errorf("base: %w", err)
		}
		if len(s.Disks) == 0 || s.Disks[0].ReadOnly {
			return errors.New("base: a layered guest needs a writable disk of its own (its layer)")
		}
	}
	for _, d := range s.Disks {
		if _, err := os.Stat(d.Path); err != nil {
			return fmt.Errorf("disk: %w", err)
		}
	}
	if s.Net.Mode != "" && s.Net.Mode != "bridge" && s.Net.Mode != "none" {
		return driver.Unsupported("ns", "network mode "+s.Net.Mode, "ns guests use the farm bridge")
	}
	return nil
}

// Attach re-adopts a guest from its runtime directory.
func (r *Runner) Attach(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	// A guest that never ran has no directory yet: its status says so.
	return &guest{spec: spec, runner: r}, nil
}

type guest struct {
	spec   driver.Spec
	runner *Runner
}

func (g *guest) path(f string) string { return filepath.Join(g.spec.Dir, f) }

func (g *guest) runtime() (*Runtime, error) {
	b, err := os.ReadFile(g.path(runtimeFile))
	if err != nil {
		return nil, err
	}
	var rt Runtime
	if err := json.Unmarshal(b, &rt); err != nil {
		return nil, fmt.Errorf("ns %s: %s: %w", g.spec.Name, runtimeFile, err)
	}
	return &rt, nil
}

// alive reports whether rt's init is still the process it started as.
func (rt *Runtime) alive() bool {
	st, err := procStart(rt.InitPID)
	return err == nil && st == rt.InitStart
}

// monitorAlive reports whether the guest's monitor still runs (it may be
// tearing down a guest whose init just ended).
func (rt *Runtime) monitorAlive() bool {
	st, err := procStart(rt.MonitorPID)
	return err == nil && st == rt.MonitorStart
}

func (g *guest) Status(ctx context.Context) (driver.Status, error) {
	rt, err := g.runtime()
	if err == nil && rt.alive() {
		s := driver.Status{State: driver.Running, PID: rt.InitPID, Since: rt.Started, Isolation: Isolation}
		if rt.UserNS {
			s.Isolation = fmt.Sprintf(isolationUserNSFmt, rt.IDBase)
		}
		if rt.NetRaw {
			s.Isolation += "; keeps CAP_NET_RAW (net_raw = true)"
		}
		if rt.Cgroups != nil {
			if rt.Cgroups.Frozen() {
				s.State = driver.Suspended
			}
			s.OOMKills = rt.Cgroups.OOMKills()
		}
		return s, nil
	}
	if b, err := os.ReadFile(g.path(exitFile)); err == nil {
		var e Exit
		if err := json.Unmarshal(b, &e); err == nil {
			return driver.Status{State: e.State, Reason: e.Reason, Since: e.Time}, nil
		}
	}
	if rt != nil && rt.monitorAlive() {
		// The init just ended and the monitor is recording how: wait for it.
		deadline := time.Now().Add(5 * time.Second)
		for rt.monitorAlive() && time.Now().Before(deadline) {
			if _, err := os.Stat(g.path(exitFile)); err == nil || rt.alive() {
				return g.Status(ctx)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := os.Stat(g.path(exitFile)); err == nil || rt.alive() {
			return g.Status(ctx)
		}
		if rt.monitorAlive() {
			// Never tear down under a live monitor: it owns the guest.
			return driver.Status{State: driver.Crashed, Reason: fmt.Sprintf("guest init (pid %d) ended; its monitor (pid %d) has not recorded how yet", rt.InitPID, rt.MonitorPID)}, nil
		}
	}
	if rt != nil {
		// Runtime but no init and no exit record: the monitor itself died
		// (kill -9). Clean up what it would have.
		reason := g.cleanup(rt)
		return driver.Status{State: driver.Crashed, Reason: reason}, nil
	}
	return driver.Status{State: driver.Stopped, Reason: "never started"}, nil
}

// cleanup does what a dead monitor would have done and returns the
// reason recorded, with the end of the monitor's log (why it died, when
// it knew).
func (g *guest) cleanup(rt *Runtime) string {
	if rt.alive() {
		syscall.Kill(rt.InitPID, syscall.SIGKILL)
	}
	if rt.Cgroups != nil {
		rt.Cgroups.remove()
	}
	if rt.Veth != "" {
		deleteVeth(rt.Veth)
	}
	reason := "guest monitor died; guest ended"
	if log := strings.TrimSpace(tail(g.path(monitorLog), 400)); log != "" {
		reason += "; monitor log: " + log
	}
	e := Exit{State: driver.Crashed, Reason: reason, Time: time.Now()}
	b, _ := json.Marshal(e)
	fsutil.WriteFileAtomic(g.path(exitFile), b, 0o600)
	os.Remove(g.path(runtimeFile))
	return reason
}

// Stop asks busybox init to power off (SIGUSR2: it runs the shutdown
// actions, then ends the PID namespace), and kills the guest after grace.
func (g *guest) Stop(ctx context.Context, grace time.Duration) error {
	rt, err := g.runtime()
	if err != nil || !rt.alive() {
		if rt != nil {
			g.cleanup(rt)
		}
		return nil
	}
	os.WriteFile(g.path(stopFile), []byte(time.Now().Format(time.RFC3339)), 0o600)
	if rt.Cgroups != nil && rt.Cgroups.Frozen() {
		rt.Cgroups.freeze(false) // a frozen guest cannot shut down
	}
	if grace > 0 {
		var from int64
		if fi, err := os.Stat(g.spec.ConsoleLog()); err == nil {
			from = fi.Size()
		}
		before := procChildren(rt.InitPID)
		syscall.Kill(rt.InitPID, syscall.SIGUSR2)
		if g.waitShutdown(ctx, rt, from, before, grace) {
			return g.waitExitRecord(ctx)
		}
	}
	syscall.Kill(rt.InitPID, syscall.SIGKILL)
	if !g.waitGone(ctx, 10*time.Second) {
		return fmt.Errorf("ns %s: stop: init (pid %d) did not die", g.spec.Name, rt.InitPID)
	}
	return g.waitExitRecord(ctx)
}

// shutdownMarker is what busybox init (Tiny Core's init, and the mini
// release's) prints on the console once the shutdown actions of its
// inittab (rc.shutdown) have returned (busybox init/init.c,
// run_shutdown_and_kill_processes; the string is in Debian's
// busybox-static 1.35). What init does after it is its own: SIGTERM to
// every process left, sleep 1 s, SIGKILL, sleep 1 s, then the poweroff.
var shutdownMarker = []byte("The system is going down NOW!")

// waitShutdown waits up to grace for the guest's init, asked to power
// off, to end, cutting the waits that can only time out: those for
// processes that ignore SIGTERM (an interactive shell does: busybox ash;
// the mini release's console shell is one), which a shutdown kills once
// its wait is over anyway.
//   - The shutdown script's sleep between its SIGTERM and SIGKILL to every
//     process (the mini release's rc.shutdown: `kill -TERM -1; sleep 1;
//     kill -KILL -1`): when the shutdown action (shutdownSleep) sleeps
//     and every other process ignores SIGTERM, the sleep is killed and
//     the script goes on (SIGKILL, sync, unmount).
//   - init's own seconds once the shutdown actions have run
//     (shutdownMarker, on the console since offset from; then it sends
//     SIGTERM, sleeps 1 s, SIGKILL, sleeps 1 s): when every process left
//     but init ignores SIGTERM, or none is (every process of a PID
//     namespace is init's descendant), init is killed.
//
// A process that handles or takes SIGTERM keeps the time the shutdown
// gives it (up to grace). A migration's downtime is mostly this stop.
func (g *guest) waitShutdown(ctx context.Context, rt *Runtime, from int64, before []int, grace time.Duration) bool {
	deadline := time.Now().Add(grace)
	marked := false
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !rt.alive() {
			return true
		}
		if !marked {
			marked = consoleHas(g.spec.ConsoleLog(), from, shutdownMarker)
		}
		if marked {
			if deafToTERM(descendants(rt.InitPID), 0, 0) && rt.alive() {
				syscall.Kill(rt.InitPID, syscall.SIGKILL)
				return g.waitGone(ctx, 10*time.Second)
			}
		} else if action, sleep := shutdownSleep(rt.InitPID, before); sleep > 0 && deafToTERM(descendants(rt.InitPID), action, sleep) {
			syscall.Kill(sleep, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return !rt.alive()
}

// shutdownSleep finds the shutdown action sleeping: a child of init
// that was not one before the signal (orphans it adopted since may be
// too) whose only child is a `sleep` with none. 0, 0: none, or several.
func shutdownSleep(init int, before []int) (action, sleep int) {
	for _, k := range procChildren(init) {
		if slices.Contains(before, k) {
			continue
		}
		if sk := procChildren(k); len(sk) == 1 && len(procChildren(sk[0])) == 0 && procComm(sk[0]) == "sleep" {
			if sleep != 0 {
				return 0, 0
			}
			action, sleep = k, sk[0]
		}
	}
	return action, sleep
}

// descendants are the processes below pid.
func descendants(pid int) []int {
	var out []int
	for next := []int{pid}; len(next) > 0; {
		p := next[0]
		next = next[1:]
		for _, k := range procChildren(p) {
			out = append(out, k)
			next = append(next, k)
		}
	}
	return out
}

// deafToTERM says whether every process of pids but skip1 and skip2
// ignores SIGTERM (SigIgn in /proc/PID/status) or is a zombie: waiting
// after a SIGTERM for any of them to end waits for nothing.
func deafToTERM(pids []int, skip1, skip2 int) bool {
	for _, p := range pids {
		if p == skip1 || p == skip2 {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue // gone
		}
		var state string
		var ign uint64
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "State:"); ok {
				state = strings.TrimSpace(v)
			} else if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
				ign, _ = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			}
		}
		if !strings.HasPrefix(state, "Z") && ign&(1<<(syscall.SIGTERM-1)) == 0 {
			return false
		}
	}
	return true
}

// procChildren are the children of pid's main thread (a guest's init and
// shells are single-threaded busybox).
func procChildren(pid int) []int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// procComm is pid's command name.
func procComm(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(b))
}

// consoleHas says whether the console log at path holds s after offset from.
func consoleHas(path string, from int64, s []byte) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	b, _ := io.ReadAll(io.NewSectionReader(f, from, 1<<20))
	return bytes.Contains(b, s)
}

func (g *guest) waitGone(ctx context.Context, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		rt, err := g.runtime()
		if err != nil || !rt.alive() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// waitExitRecord waits for the monitor to finish its teardown.
func (g *guest) waitExitRecord(ctx context.Context) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, err := os.Stat(g.path(runtimeFile)); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rt, err := g.runtime(); err == nil {
		g.cleanup(rt)
	}
	return nil
}

// WaitReady follows the console log until the guest prints the ready
// marker, the guest dies, or ctx ends.
func (g *guest) WaitReady(ctx context.Context) error {
	t0 := time.Now()
	var off int64
	var carry []byte
	for {
		f, err := os.Open(g.spec.ConsoleLog())
		if err == nil {
			f.Seek(off, io.SeekStart)
			b, _ := io.ReadAll(f)
			f.Close()
			off += int64(len(b))
			buf := append(carry, b...)
			if bytes.Contains(buf, []byte(driver.ReadyMarker)) {
				return nil
			}
			if len(buf) > len(driver.ReadyMarker) {
				carry = append([]byte(nil), buf[len(buf)-len(driver.ReadyMarker):]...)
			} else {
				carry = buf
			}
		}
		if st, err := g.Status(ctx); err == nil && st.State != driver.Running {
			return fmt.Errorf("ns %s: not ready: guest %s (%s); console:\n%s", g.spec.Name, st.State, st.Reason, tail(g.spec.ConsoleLog(), 1500))
		}
		// A guest is ready some 50 ms after Start: look often at first.
		poll := 10 * time.Millisecond
		if time.Since(t0) < 2*time.Second {
			poll = 2 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ns %s: waiting for %q on the console: %w; console:\n%s", g.spec.Name, driver.ReadyMarker, ctx.Err(), tail(g.spec.ConsoleLog(), 1500))
		case <-time.After(poll):
		}
	}
}

func (g *guest) Suspend(ctx context.Context) error {
	rt, err := g.runningRuntime("suspend")
	if err != nil {
		return err
	}
	return rt.Cgroups.freeze(true)
}

func (g *guest) Resume(ctx context.Context) error {
	rt, err := g.runningRuntime("resume")
	if err != nil {
		return err
	}
	return rt.Cgroups.freeze(false)
}

func (g *guest) runningRuntime(op string) (*Runtime, error) {
	rt, err := g.runtime()
	if err != nil || !rt.alive() {
		return nil, fmt.Errorf("ns %s: %s: guest is not running", g.spec.Name, op)
	}
	return rt, nil
}

// Exec runs argv inside the guest: in its cgroups, then entering all its
// namespaces and its root with nsenter.
func (g *guest) Exec(ctx context.Context, argv []string, opts driver.ExecOptions) (driver.ExecResult, error) {
	rt, err := g.runningRuntime("exec")
	if err != nil {
		return driver.ExecResult{}, err
	}
	if rt.Cgroups.Frozen() {
		return driver.ExecResult{}, fmt.Errorf("ns %s: exec: guest is suspended", g.spec.Name)
	}
	exe, err := g.runner.exe()
	if err != nil {
		return driver.ExecResult{}, err
	}
	dir := opts.Dir
	if dir == "" {
		dir = "/"
	}
	args := []string{"tinyfarm-ns-exec", strconv.Itoa(rt.InitPID), dir}
	if rt.UserNS {
		args[0] = "tinyfarm-ns-exec-userns"
	}
	args = append(args, cgroupArgs(rt.Cgroups)...)
	args = append(args, "--")
	args = append(args, argv...)
	cmd := exec.CommandContext(ctx, exe)
	cmd.Args = args
	netRaw := "0"
	if rt.NetRaw {
		netRaw = "1"
	}
	env := []string{reexecEnv + "=exec", netRawEnv + "=" + netRaw, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux"}
	cmd.Env = append(env, opts.Env...)
	cmd.Stdin = opts.Stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if opts.Stdout != nil {
		cmd.Stdout = io.MultiWriter(&stdout, opts.Stdout)
	}
	if opts.Stderr != nil {
		cmd.Stderr = io.MultiWriter(&stderr, opts.Stderr)
	}
	// When ctx ends, kill the command and what it started, not only
	// nsenter (the command would keep running in the guest). A command
	// that exits while a child it left running still holds its output
	// (`sleep 60 &`, a daemon that keeps stderr) ends Exec execWaitDelay
	// later, with what it printed until then.
	cmd.Cancel = func() error { killTree(cmd.Process.Pid); return nil }
	cmd.WaitDelay = execWaitDelay
	err = cmd.Run()
	res := driver.ExecResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ctx.Err() != nil {
		return res, fmt.Errorf("ns %s: exec %s: %w", g.spec.Name, strings.Join(argv, " "), ctx.Err())
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil // it exited 0; its background child's output is cut off
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Code = 128 + int(ws.Signal())
		}
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("ns %s: exec %s: %w", g.spec.Name, strings.Join(argv, " "), err)
	}
	return res, nil
}

func cgroupArgs(cg *Cgroups) []string {
	if cg == nil {
		return nil
	}
	var out []string
	for _, d := range cg.Paths {
		out = append(out, d)
	}
	return out
}

// procStart is field 22 of /proc/<pid>/stat: the start time in clock ticks.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return statStart(pid, b)
}

// statStart is the start time in a /proc/<pid>/stat line, or an error for
// a process that has ended.
func statStart(pid int, b []byte) (uint64, error) {
	// The command name (field 2) may hold spaces and parens: skip past
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat of %d: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("proc stat of %d: short", pid)
	}
	// A zombie leader whose group still has threads (field 20) is a
	// process in the middle of an execve from another thread (the guest's
	// init, a Go program, execs /sbin/init): alive.
	if (f[0] == "Z" || f[0] == "X") && f[17] == "1" {
		return 0, fmt.Errorf("pid %d is a zombie", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no " + filepath.Base(path) + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Interface guards
var (
	_ driver.Runner    = (*Runner)(nil)
	_ driver.Guest     = (*guest)(nil)
	_ driver.Execer    = (*guest)(nil)
	_ driver.Suspender = (*guest)(nil)
)
