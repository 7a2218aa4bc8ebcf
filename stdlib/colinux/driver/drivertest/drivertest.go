// Package drivertest is the conformance suite of the guest driver
// contract (package driver): what every backend promises, checked on a
// real guest of that backend. A driver's tests call Run with a Factory;
// the suite asks the driver for its optional abilities as the colinux
// module does (by type assertion) and checks each one it declares.
package drivertest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Factory is what Run needs of a driver.
type Factory struct {
	// New returns a new Runner, as a new tinyfarm process would make one:
	// it knows nothing the runtime directories do not hold.
	New func() driver.Runner
	// Spec is a bootable guest named name with its runtime directory in
	// dir (a fresh one per guest).
	Spec func(t *testing.T, name, dir string) driver.Spec
	// Crash ends the guest from outside, as a crash would (default:
	// KillPID, SIGKILL to its status PID).
	Crash func(t *testing.T, g driver.Guest)
	// Ready bounds WaitReady (default 60 s; TCG boots are slow).
	Ready time.Duration
	// Skip names abilities the driver declares that cannot be checked
	// here, each with the reason ("live migration": "...").
	Skip map[string]string
}

// KillPID is the default Factory.Crash: SIGKILL to the guest's status PID
// (ns: its init; qemu: the QEMU process).
func KillPID(t *testing.T, g driver.Guest) {
	t.Helper()
	st, err := g.Status(context.Background())
	if err != nil || st.PID <= 0 {
		t.Fatalf("crash: status %+v, %v: no pid to kill", st, err)
	}
	p, err := os.FindProcess(st.PID)
	if err == nil {
		err = p.Kill()
	}
	if err != nil {
		t.Fatalf("crash: kill %d: %v", st.PID, err)
	}
}

// Run checks the driver: a guest that never ran, the lifecycle (start,
// ready, re-attach from a new Runner and from another process, stop, stop
// again), a crash and its reason (seen by another process too), and each optional ability the driver declares: the Runner's
// facts (SpecChecker, Defaulter, HostChecker, Explainer, Sharer,
// InitrdBooter, Configurer) and the Guest's abilities (Execer,
// Suspender, FSFreezer, Checkpointer with Restorer, LiveSource with
// LiveTarget and Announcer). ShareMounter needs a shell in the guest
// over SSH and is checked by the colinux module's tests.
func Run(t *testing.T, f Factory) {
	if file := os.Getenv(childEnv); file != "" {
		child(t, f, file)
		return
	}
	if f.Crash == nil {
		f.Crash = KillPID
	}
	if f.Ready <= 0 {
		f.Ready = 60 * time.Second
	}
	s := &suite{f: f, test: strings.SplitN(t.Name(), "/", 2)[0]}
	t.Run("runner", s.runner)
	t.Run("never_started", s.neverStarted)
	t.Run("lifecycle", s.lifecycle)
	t.Run("live_migration", s.live)
}

type suite struct {
	f    Factory
	test string // the top-level test that called Run, for child processes
}

// childEnv names the spec file a child process (this test binary, run
// again) attaches to: it writes the guest's status next to it (.out) and
// does nothing else.
const childEnv = "TINYFARM_DRIVERTEST_ATTACH"

func child(t *testing.T, f Factory, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var spec driver.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	g, err := f.New().Attach(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	st, err := g.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(st)
	if err := os.WriteFile(file+".out", out, 0o600); err != nil {
		t.Fatal(err)
	}
}

// statusFromProcess is the guest's status as another process sees it:
// this test binary, run again for this test only, attaches to spec.
func (s *suite) statusFromProcess(t *testing.T, spec driver.Spec) driver.Status {
	t.Helper()
	file := filepath.Join(t.TempDir(), "spec.json")
	b, _ := json.Marshal(spec)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+regexp.QuoteMeta(s.test)+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+file)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("attach from another process: %v\n%s", err, out)
	}
	b, err := os.ReadFile(file + ".out")
	if err != nil {
		t.Fatalf("attach from another process: %v", err)
	}
	var st driver.Status
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (s *suite) spec(t *testing.T, name string) driver.Spec {
	return s.f.Spec(t, name, filepath.Join(t.TempDir(), "run"))
}

func (s *suite) skip(t *testing.T, ability string) {
	t.Helper()
	if why, ok := s.f.Skip[ability]; ok {
		t.Skipf("%s: %s", ability, why)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// status fetches g's status, failing the test on an error.
func status(t *testing.T, g driver.Guest) driver.Status {
	t.Helper()
	st, err := g.Status(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

func want(t *testing.T, g driver.Guest, state driver.State) driver.Status {
	t.Helper()
	st := status(t, g)
	if st.State != state {
		t.Fatalf("status %s (%s), want %s", st.State, st.Reason, state)
	}
	return st
}

func running(st driver.Status) bool {
	return st.State == driver.Running || st.State == driver.Suspended
}

// start starts spec with a new Runner and waits until it is ready; the
// guest is stopped at cleanup.
func (s *suite) start(t *testing.T, spec driver.Spec) driver.Guest {
	t.Helper()
	g, err := s.f.New().Start(ctxT(t, s.f.Ready), spec)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { g.Stop(context.Background(), 0) })
	if err := g.WaitReady(ctxT(t, s.f.Ready)); err != nil {
		t.Fatalf("wait ready: %v", err)
	}
	return g
}

// attach re-adopts spec's guest with a new Runner.
func (s *suite) attach(t *testing.T, spec driver.Spec) driver.Guest {
	t.Helper()
	g, err := s.f.New().Attach(ctxT(t, 30*time.Second), spec)
	if err != nil {
		t.Fatalf("attach from a new runner: %v", err)
	}
	return g
}

// runner checks the facts a Runner declares.
func (s *suite) runner(t *testing.T) {
	r := s.f.New()
	spec := s.spec(t, "dtfacts")
	if sc, ok := r.(driver.SpecChecker); ok {
		if err := sc.CheckSpec(spec); err != nil {
			t.Errorf("CheckSpec refuses the factory's own spec: %v", err)
		}
	}
	if d, ok := r.(driver.Defaulter); ok {
		for _, l := range []driver.Layout{"", driver.Scatter, driver.Frugal} {
			switch n := d.Defaults(l).Net; n {
			case "", "bridge", "user", "none":
			default:
				t.Errorf("Defaults(%q).Net = %q: want bridge, user or none", l, n)
			}
		}
	}
	if hc, ok := r.(driver.HostChecker); ok {
		if err := hc.CheckHost(); err != nil && !errors.Is(err, driver.ErrUnsupported) {
			t.Errorf("CheckHost: %v: want nil or an error wrapping ErrUnsupported", err)
		}
	}
	if e, ok := r.(driver.Explainer); ok {
		for _, a := range []string{"checkpoint", "live migration", "suspend"} {
			if why := e.WhyUnsupported(context.Background(), a); strings.Contains(why, "\n") {
				t.Errorf("WhyUnsupported(%q) spans lines: %q", a, why)
			}
		}
	}
	if sh, ok := r.(driver.Sharer); ok && sh.ShareMethod() == "" {
		t.Error("Sharer: ShareMethod is empty")
	}
	if ib, ok := r.(driver.InitrdBooter); ok {
		_ = ib.ReleaseKernel() // a fact; nothing to hold it against
	}
	if c, ok := r.(driver.Configurer); ok {
		if conf, err := c.Config(spec); err != nil || strings.TrimSpace(conf) == "" {
			t.Errorf("Config: %q, %v: want the rendered configuration", conf, err)
		}
	}
}

// neverStarted: a guest whose directory was never used is stopped, and
// stopping it is a no-op.
func (s *suite) neverStarted(t *testing.T) {
	spec := s.spec(t, "dtnever")
	g := s.attach(t, spec)
	if st := status(t, g); running(st) || st.State == "" {
		t.Errorf("never started: status %s (%s), want stopped or crashed", st.State, st.Reason)
	}
	if err := g.Stop(ctxT(t, 30*time.Second), time.Second); err != nil {
		t.Errorf("stop of a never started guest: %v", err)
	}
}

// lifecycle: start, ready, re-attach, each guest ability, stop (twice);
// then a crash, of a restored guest where the driver restores.
func (s *suite) lifecycle(t *testing.T) {
	spec := s.spec(t, "dtlife")
	g := s.start(t, spec)
	st := want(t, g, driver.Running)
	if st.Since.IsZero() && st.PID <= 0 {
		t.Errorf("running guest: status %+v has neither a pid nor a start time", st)
	}

	t.Run("console", func(t *testing.T) {
		// The ready guest's console holds the marker (or the driver's
		// own readiness line), where the module reads it.
		con, err := driver.ReadConsole(s.f.New(), spec)
		if err != nil || len(con) == 0 {
			t.Fatalf("console of a ready guest: %q, %v", con, err)
		}
		if _, ok := s.f.New().(driver.ConsoleReader); !ok {
			if _, err := os.Stat(spec.ConsoleLog()); err != nil {
				t.Errorf("no console at Spec.ConsoleLog(), and no driver.ConsoleReader: %v", err)
			}
		}
	})

	t.Run("reattach", func(t *testing.T) {
		a := s.attach(t, spec)
		ast := want(t, a, driver.Running)
		if ast.PID != st.PID {
			t.Errorf("re-attached pid %d, started pid %d", ast.PID, st.PID)
		}
		if err := a.WaitReady(ctxT(t, s.f.Ready)); err != nil {
			t.Errorf("re-attached wait ready: %v", err)
		}
		if pst := s.statusFromProcess(t, spec); pst.State != driver.Running || pst.PID != st.PID {
			t.Errorf("another process sees %s pid %d, want running pid %d", pst.State, pst.PID, st.PID)
		}
	})

	t.Run("exec", func(t *testing.T) {
		ex, ok := g.(driver.Execer)
		if !ok {
			t.Skip("no driver.Execer")
		}
		s.skip(t, "exec")
		var out strings.Builder
		r, err := ex.Exec(ctxT(t, 30*time.Second), []string{"/bin/sh", "-c", "echo drivertest"}, driver.ExecOptions{Stdout: &out})
		if err != nil || r.Code != 0 || string(r.Stdout) != "drivertest\n" || out.String() != "drivertest\n" {
			t.Errorf("exec echo: %+v (streamed %q), %v", r, out.String(), err)
		}
		r, err = ex.Exec(ctxT(t, 30*time.Second), []string{"/bin/sh", "-c", "exit 3"}, driver.ExecOptions{})
		if err != nil || r.Code != 3 {
			t.Errorf("exec exit 3: code %d, %v", r.Code, err)
		}
	})

	t.Run("suspend", func(t *testing.T) {
		sp, ok := g.(driver.Suspender)
		if !ok {
			t.Skip("no driver.Suspender")
		}
		s.skip(t, "suspend")
		ctx := ctxT(t, 30*time.Second)
		if err := sp.Suspend(ctx); err != nil {
			t.Fatalf("suspend: %v", err)
		}
		want(t, g, driver.Suspended)
		want(t, s.attach(t, spec), driver.Suspended) // a new process sees it too
		if err := sp.Resume(ctx); err != nil {
			t.Fatalf("resume: %v", err)
		}
		want(t, g, driver.Running)
	})

	t.Run("freeze_fs", func(t *testing.T) {
		fz, ok := g.(driver.FSFreezer)
		if !ok {
			t.Skip("no driver.FSFreezer")
		}
		s.skip(t, "freeze_fs")
		thaw, err := fz.FreezeFS(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatalf("freeze: %v", err)
		}
		thaw()
		want(t, g, driver.Running)
		// A freezer killed before it thawed: another process thaws.
		leftFrozen, err := fz.FreezeFS(ctxT(t, 30*time.Second))
		if err != nil {
			t.Fatalf("freeze again: %v", err)
		}
		defer leftFrozen() // only releases what it holds by now
		a, ok := s.attach(t, spec).(driver.FSFreezer)
		if !ok {
			t.Fatal("a re-attached guest is no driver.FSFreezer")
		}
		if err := a.ThawFS(ctxT(t, 30*time.Second)); err != nil {
			t.Fatalf("thaw from a new runner: %v", err)
		}
		if err := a.ThawFS(ctxT(t, 30*time.Second)); err != nil {
			t.Errorf("thaw of a thawed file system: %v", err)
		}
		if ex, ok := g.(driver.Execer); ok {
			// Writes go through again (on a frozen file system they hang).
			r, err := ex.Exec(ctxT(t, 20*time.Second), []string{"/bin/sh", "-c", "echo x > /drivertest-thawed && sync && rm /drivertest-thawed"}, driver.ExecOptions{})
			if err != nil || r.Code != 0 {
				t.Errorf("write after thaw: code %d %s, %v", r.Code, r.Stderr, err)
			}
		}
	})

	ckpt, ckptDir := "", t.TempDir() // the checkpoint outlives its subtest
	t.Run("checkpoint", func(t *testing.T) {
		cp, ok := g.(driver.Checkpointer)
		if !ok {
			t.Skip("no driver.Checkpointer")
		}
		s.skip(t, "checkpoint")
		file := filepath.Join(ckptDir, "state")
		if err := cp.Checkpoint(ctxT(t, 2*time.Minute), file); err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		want(t, g, driver.Running) // it runs on
		if r, ok := s.f.New().(driver.Restorer); ok {
			if err := r.CheckState(file); err != nil {
				t.Errorf("CheckState of its own checkpoint: %v", err)
			}
			junk := filepath.Join(t.TempDir(), "junk")
			os.WriteFile(junk, []byte("not a guest state at all"), 0o600)
			if err := r.CheckState(junk); err == nil {
				t.Error("CheckState accepts junk")
			}
			ckpt = file
		}
	})

	t.Run("stop", func(t *testing.T) {
		ctx := ctxT(t, 2*time.Minute)
		if sp, ok := g.(driver.Suspender); ok {
			// A suspended guest stops as well (the module stops both).
			if err := sp.Suspend(ctx); err != nil {
				t.Fatalf("suspend before stop: %v", err)
			}
		}
		if err := g.Stop(ctx, 5*time.Second); err != nil {
			t.Fatalf("stop: %v", err)
		}
		st := status(t, g)
		if running(st) {
			t.Fatalf("after stop: %s", st.State)
		}
		if ast := status(t, s.attach(t, spec)); ast.State != st.State {
			t.Errorf("a new runner sees %s, the stopping one %s", ast.State, st.State)
		}
		if err := g.Stop(ctx, time.Second); err != nil {
			t.Errorf("second stop: %v", err)
		}
		if err := s.attach(t, spec).Stop(ctx, time.Second); err != nil {
			t.Errorf("stop of the stopped guest from a new runner: %v", err)
		}
		if st2 := status(t, g); st2.State != st.State {
			t.Errorf("stopping again changed the state: %s -> %s", st.State, st2.State)
		}
	})

	t.Run("crash", func(t *testing.T) {
		var c driver.Guest
		if r, ok := s.f.New().(driver.Restorer); ok && ckpt != "" {
			// The restored guest runs on from the checkpoint.
			var err error
			if c, err = r.Restore(ctxT(t, s.f.Ready), spec, ckpt); err != nil {
				t.Fatalf("restore: %v", err)
			}
			t.Cleanup(func() { c.Stop(context.Background(), 0) })
			if err := c.WaitReady(ctxT(t, s.f.Ready)); err != nil {
				t.Fatalf("restored wait ready: %v", err)
			}
			want(t, c, driver.Running)
			if _, ok := c.(driver.Suspender); !ok {
				t.Error("a restored guest is no driver.Suspender")
			}
		} else {
			c = s.start(t, spec)
		}
		s.f.Crash(t, c)
		deadline := time.Now().Add(20 * time.Second)
		st := status(t, c)
		for running(st) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			st = status(t, c)
		}
		if st.State != driver.Crashed || st.Reason == "" {
			t.Fatalf("after a crash: %s (%q), want crashed with a reason", st.State, st.Reason)
		}
		t.Logf("crash reason: %s", st.Reason)
		if ast := status(t, s.attach(t, spec)); ast.State != driver.Crashed {
			t.Errorf("a new runner sees %s after the crash", ast.State)
		}
		if pst := s.statusFromProcess(t, spec); pst.State != driver.Crashed || pst.Reason != st.Reason {
			t.Errorf("another process sees %s (%q) after the crash, want crashed (%q)", pst.State, pst.Reason, st.Reason)
		}
		if err := c.Stop(ctxT(t, 30*time.Second), time.Second); err != nil {
			t.Errorf("stop after a crash: %v", err)
		}
		if st := status(t, c); running(st) {
			t.Errorf("after stopping a crashed guest: %s", st.State)
		}
	})
}

// live: a running guest moves to a second guest of the same driver that
// waits for its state; the source stays paused until stopped.
func (s *suite) live(t *testing.T) {
	r := s.f.New()
	lt, ok := r.(driver.LiveTarget)
	if !ok {
		t.Skip("no driver.LiveTarget")
	}
	s.skip(t, "live migration")
	spec := s.spec(t, "dtsrc")
	src := s.start(t, spec)
	ls, ok := src.(driver.LiveSource)
	if !ok {
		t.Fatal("the runner is a driver.LiveTarget, its guests no driver.LiveSource")
	}
	far := spec
	far.Name, far.Dir = "dtdst", filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(far.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(far.Dir, "in.sock")
	dst, err := lt.StartIncoming(ctxT(t, s.f.Ready), far, "unix:"+sock)
	if err != nil {
		t.Fatalf("start incoming: %v", err)
	}
	t.Cleanup(func() { dst.Stop(context.Background(), 0) })
	switched := false
	stats, err := ls.MigrateLive(ctxT(t, 3*time.Minute), "unix:"+sock, func(context.Context) error { switched = true; return nil })
	if err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if !switched || stats.RAMBytes <= 0 || stats.Paused.IsZero() {
		t.Errorf("migrate: switchover ran %v, stats %+v", switched, stats)
	}
	if err := dst.WaitReady(ctxT(t, s.f.Ready)); err != nil {
		t.Fatalf("incoming wait ready: %v", err)
	}
	st := status(t, dst)
	if st.State == driver.Suspended {
		if err := dst.(driver.Suspender).Resume(ctxT(t, 30*time.Second)); err != nil {
			t.Fatalf("resume the incoming guest: %v", err)
		}
		st = status(t, dst)
	}
	if st.State != driver.Running {
		t.Fatalf("incoming guest: %s (%s)", st.State, st.Reason)
	}
	if a, ok := dst.(driver.Announcer); ok {
		if err := a.Announce(ctxT(t, 30*time.Second)); err != nil {
			t.Errorf("announce: %v", err)
		}
	}
	if sst := status(t, src); sst.State == driver.Running {
		t.Errorf("the source runs on after the migration")
	}
	if err := src.Stop(ctxT(t, 30*time.Second), 0); err != nil {
		t.Errorf("stop the source: %v", err)
	}
	if err := dst.Stop(ctxT(t, 30*time.Second), 0); err != nil {
		t.Errorf("stop the incoming guest: %v", err)
	}
}
