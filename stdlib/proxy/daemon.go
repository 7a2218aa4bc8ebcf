package proxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DaemonConfig describes the long-lived embedded proxy of a state
// directory: `tinyfarm proxy serve` started detached, so the farm keeps
// its front door after the playbook that set it up has ended.
type DaemonConfig struct {
	// Dir is the registry directory (<state>/proxy); the daemon's pid,
	// address and log live there. Required.
	Dir string
	// Listen is the address to serve on. Default ":80".
	Listen string
	// Command starts the proxy; Listen is appended as --listen. Default:
	// this executable with "proxy serve".
	Command []string
	// Env is added to the daemon's environment (TINYFARM_HOME must point
	// at the state directory the registry belongs to).
	Env []string
	// Limits are passed on as flags; a running daemon with other limits
	// is replaced.
	Limits Limits
}

// want is what serve.addr.want records: the address and the limits a
// daemon was started with, so a change of either restarts it.
func (c *DaemonConfig) want() string {
	return strings.Join(append([]string{c.Listen}, c.Limits.Args()...), " ")
}

// DaemonStatus is what EnsureDaemon found or did.
type DaemonStatus struct {
	Started bool   // false: one was already serving on Listen
	PID     int    // the daemon's process
	Addr    string // the address it listens on
	Log     string // its log file
	// Moved is set when a daemon serving this registry ran with another
	// address or other limits and was stopped for this one: what it ran
	// with ("127.0.0.1:8080", then its limit flags).
	Moved string
}

func (c *DaemonConfig) files() (pid, addr, log string) {
	return filepath.Join(c.Dir, "serve.pid"), filepath.Join(c.Dir, "serve.addr"), filepath.Join(c.Dir, "serve.log")
}

// DaemonPidEnv names the environment variable through which EnsureDaemon
// tells the daemon where to record its pid (RecordDaemonPid).
const DaemonPidEnv = "TINYFARM_PROXY_DAEMON_PIDFILE"

// RecordDaemonPid writes this process's pid where EnsureDaemon asked
// ($TINYFARM_PROXY_DAEMON_PIDFILE; nothing when unset), first thing in
// `proxy serve`: the daemon names itself even when the tinyfarm that
// started it is killed before it could.
func RecordDaemonPid() error {
	p := os.Getenv(DaemonPidEnv)
	if p == "" {
		return nil
	}
	os.Unsetenv(DaemonPidEnv)
	return writeFileAtomic(p, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

// RunningDaemon returns the daemon of dir if one runs (pid alive and
// still a proxy serve process).
func RunningDaemon(dir string) (pid int, addr string, ok bool) {
	c := DaemonConfig{Dir: dir}
	pf, af, _ := c.files()
	b, err := os.ReadFile(pf)
	if err != nil {
		return 0, "", false
	}
	pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, "", false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "proxy\x00serve") {
		return 0, "", false
	}
	a, _ := os.ReadFile(af)
	return pid, strings.TrimSpace(string(a)), true
}

// EnsureDaemon starts the detached proxy unless one already serves this
// registry on the same address; routes reach a running one by its file
// watch, so nothing needs restarting when they change. A state directory
// has one daemon: one running on a different address or with other limits
// is stopped and the new one started (the daemon moves; st.Moved says from
// where).
func EnsureDaemon(ctx context.Context, c DaemonConfig) (DaemonStatus, error) {
	if c.Listen == "" {
		c.Listen = ":80"
	}
	pf, af, lf := c.files()
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return DaemonStatus{}, fmt.Errorf("proxy daemon: %w", err)
	}
	// Every daemon holds serve.lock from its fork on (the lock is taken
	// here and handed to it): held while no pid names a daemon means one
	// is starting, launched by a tinyfarm killed before it could record
	// it. It names itself (RecordDaemonPid) in a moment.
	lockPath := filepath.Join(c.Dir, "serve.lock")
	lk, held, err := tryLockFile(lockPath)
	if err != nil {
		return DaemonStatus{}, fmt.Errorf("proxy daemon: %w", err)
	}
	for deadline := time.Now().Add(10 * time.Second); held; {
		if _, _, ok := RunningDaemon(c.Dir); ok {
			break
		}
		if time.Now().After(deadline) {
			return DaemonStatus{}, fmt.Errorf("proxy daemon: %s is held by a process that is not a running daemon; end it, then rerun", lockPath)
		}
		time.Sleep(20 * time.Millisecond)
		if lk, held, err = tryLockFile(lockPath); err != nil {
			return DaemonStatus{}, fmt.Errorf("proxy daemon: %w", err)
		}
	}
	if lk != nil {
		defer lk.Close()
	}
	moved := ""
	if pid, addr, ok := RunningDaemon(c.Dir); ok {
		if want, _ := os.ReadFile(af + ".want"); strings.TrimSpace(string(want)) == c.want() {
			st := DaemonStatus{PID: pid, Addr: addr, Log: lf}
			if addr == "" {
				// Started by a tinyfarm killed before it saw the daemon
				// listen: its log says where it does.
				var err error
				if st.Addr, err = waitListening(ctx, lf, c.Listen, nil); err != nil {
					return st, err
				}
				if err := writeFileAtomic(af, []byte(st.Addr+"\n"), 0o644); err != nil {
					return st, err
				}
			}
			return st, nil
		}
		if lk != nil {
			lk.Close() // the lock is the daemon's, not ours
		}
		want, _ := os.ReadFile(af + ".want")
		moved = strings.TrimSpace(string(want))
		if moved == "" {
			moved = addr
		}
		if err := StopDaemon(ctx, c.Dir); err != nil {
			return DaemonStatus{}, err
		}
		if lk, _, err = tryLockFile(lockPath); err != nil { // free once it ended
			return DaemonStatus{}, fmt.Errorf("proxy daemon: %w", err)
		}
		if lk != nil {
			defer lk.Close()
		}
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return DaemonStatus{}, fmt.Errorf("proxy daemon: %w", err)
	}
	argv := c.Command
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return DaemonStatus{}, fmt.Errorf("proxy daemon: %w", err)
		}
		argv = []string{exe, "proxy", "serve"}
	}
	argv = append(append([]string(nil), argv...), "--listen", c.Listen, "--access-log", filepath.Join(c.Dir, "access.log"))
	argv = append(argv, c.Limits.Args()...)
	log, err := os.OpenFile(lf, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return DaemonStatus{}, fmt.Errorf("proxy daemon: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), c.Env...), DaemonPidEnv+"="+pf)
	if lk != nil {
		cmd.ExtraFiles = []*os.File{lk} // the daemon holds serve.lock for life
	}
	// What it is started for goes first, so a run that finds it started
	// by a killed tinyfarm keeps it.
	os.Remove(af)
	if err := writeFileAtomic(af+".want", []byte(c.want()+"\n"), 0o644); err != nil {
		return DaemonStatus{}, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return DaemonStatus{}, fmt.Errorf("proxy daemon: start %s: %w", argv[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	st := DaemonStatus{Started: true, PID: cmd.Process.Pid, Log: lf, Moved: moved}
	// The pid is recorded before the daemon listens: a tinyfarm killed
	// while it waits leaves a daemon that the next run finds (instead of
	// starting a second one that cannot bind).
	if err := writeFileAtomic(pf, []byte(strconv.Itoa(st.PID)+"\n"), 0o644); err != nil {
		cmd.Process.Kill()
		return st, err
	}
	addr, err := waitListening(ctx, lf, c.Listen, exited)
	if err != nil {
		cmd.Process.Kill()
		return st, err
	}
	st.Addr = addr
	if err := writeFileAtomic(af, []byte(st.Addr+"\n"), 0o644); err != nil {
		return st, err
	}
	return st, recordDaemon(c) // its address for tinyfarm boot
}

// waitListening reads the daemon's log lf until it says where it listens
// (at most 10 s), or until exited (nil: not watched) says it ended.
func waitListening(ctx context.Context, lf, listen string, exited <-chan error) (string, error) {
	deadline := time.After(10 * time.Second)
	for {
		b, _ := os.ReadFile(lf)
		if i := strings.Index(string(b), "listening on "); i >= 0 {
			rest := string(b[i+len("listening on "):])
			return strings.TrimRight(strings.Fields(rest)[0], ","), nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(lf)
			return "", fmt.Errorf("proxy daemon on %s exited (%v): %s", listen, err, strings.TrimSpace(string(b)))
		case <-deadline:
			return "", fmt.Errorf("proxy daemon on %s: not listening after 10s (log %s)", listen, lf)
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StopDaemon ends the detached proxy of dir (SIGTERM: graceful), if any.
func StopDaemon(ctx context.Context, dir string) error {
	pid, _, ok := RunningDaemon(dir)
	if !ok {
		return nil
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	if err := terminate(p); err != nil {
		return fmt.Errorf("proxy daemon %d: %w", pid, err)
	}
	for i := 0; i < 300; i++ {
		if _, _, ok := RunningDaemon(dir); !ok {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	c := DaemonConfig{Dir: dir}
	pf, af, _ := c.files()
	for _, f := range []string{pf, af, af + ".want"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}
