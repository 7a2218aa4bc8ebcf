//go:build unix

package crashtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// DefaultTrials is the number of trials per operation when
// $TINYFARM_CRASH_TRIALS is unset: enough to catch a gross violation in
// `make test`, small enough to keep it fast.
const DefaultTrials = 8

// Env names.
const (
	EnvTrials = "TINYFARM_CRASH_TRIALS"
	EnvSeed   = "TINYFARM_CRASH_SEED"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// Bin returns the path of the real tinyfarm binary, built once per test
// binary into a temp dir of its own.
func Bin(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tinyfarm-crashtest-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "tinyfarm")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/tinyfarm/tinyfarm/cmd/tinyfarm").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build tinyfarm: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		tb.Fatal(binErr)
	}
	return binPath
}

// Trials returns the number of trials per operation: $TINYFARM_CRASH_TRIALS,
// else def (DefaultTrials when 0).
func Trials(tb testing.TB, def int) int {
	tb.Helper()
	s := os.Getenv(EnvTrials)
	if s == "" {
		if def > 0 {
			return def
		}
		return DefaultTrials
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		tb.Fatalf("%s=%q: want a positive number", EnvTrials, s)
	}
	return n
}

// Cmd is one tinyfarm invocation.
type Cmd struct {
	Args  []string // after the binary's name, e.g. {"run", "pb.lua"}
	Env   []string // added to the test's environment (KEY=VALUE)
	Dir   string   // working directory
	Stdin string
}

func (c Cmd) command(ctx context.Context, bin string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Stdin = strings.NewReader(c.Stdin)
	// A group of its own, so the kill reaches what tinyfarm runs in the
	// foreground (mkfs, e2fsck, ssh) as a kill of the whole command would;
	// detached children (guest monitors, the proxy daemon) leave the group
	// by design and survive, as they survive a real kill -9 of tinyfarm.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs c to completion (at most 5 minutes) and returns its combined
// output.
func Run(tb testing.TB, c Cmd) (string, error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := c.command(ctx, Bin(tb))
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// MustRun runs c to completion and fails tb unless it succeeds.
func MustRun(tb testing.TB, c Cmd) string {
	tb.Helper()
	out, err := Run(tb, c)
	if err != nil {
		tb.Fatalf("tinyfarm %s: %v\n%s", strings.Join(c.Args, " "), err, out)
	}
	return out
}

// Result is what a killed (or finished) trial did.
type Result struct {
	Trial    int
	Pid      int           // the killed tinyfarm's pid
	At       time.Duration // when the kill was due, from the start
	Killed   bool          // the SIGKILL came before the command ended
	Finished bool          // the command ended on its own (exit status in Err)
	Took     time.Duration // from the start to the end of the command
	Err      error
	Out      string
}

func (r Result) String() string {
	s := fmt.Sprintf("trial %d: kill at %v", r.Trial, r.At.Round(time.Millisecond))
	if r.Finished {
		s += fmt.Sprintf(" (finished first: %v)", r.Err)
	}
	return s
}

// Kill starts c, sends SIGKILL to its process group after at, and waits
// for it.
func Kill(tb testing.TB, c Cmd, at time.Duration) Result {
	tb.Helper()
	var out bytes.Buffer
	cmd := c.command(context.Background(), Bin(tb))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start tinyfarm %s: %v", strings.Join(c.Args, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	r := Result{At: at, Pid: cmd.Process.Pid}
	t0 := time.Now()
	select {
	case r.Err = <-done:
		r.Finished = true
	case <-time.After(at):
		// The group may hold children the leader started (mkfs,
		// e2fsck...), so the whole group gets the signal, by its id.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		r.Err = <-done
		r.Killed = true
	}
	r.Took = time.Since(t0)
	r.Out = out.String()
	return r
}

// Op is an operation under test.
type Op struct {
	Name string
	// Prepare sets up the state a trial starts from (the "before") and
	// returns the command to run. It runs before the two measuring runs
	// too (trial 0 and -1).
	Prepare func(t *testing.T, trial int) Cmd
	// Check asserts the invariant after a trial and that a rerun
	// converges. It runs after the measuring runs too (r.Finished).
	Check func(t *testing.T, r Result)
	// Trials is the number of trials when $TINYFARM_CRASH_TRIALS is
	// unset; 0: DefaultTrials. Slow operations (seconds a trial) take
	// fewer in `make test`.
	Trials int
}

// Stats sum up an operation's trials.
type Stats struct {
	Measured       time.Duration
	Trials, Killed int
}

// Seed returns the trials' random seed: $TINYFARM_CRASH_SEED or the clock.
func Seed(tb testing.TB) uint64 {
	if s := os.Getenv(EnvSeed); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			tb.Fatalf("%s=%q: want a number", EnvSeed, s)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

// RunOp measures op (the faster of two uninterrupted runs), then runs its
// trials (Trials), each killed at a uniformly random moment within the
// measured duration, and checks every one. It logs the counts and returns
// them.
func RunOp(t *testing.T, op Op) Stats {
	t.Helper()
	seed := Seed(t)
	rng := rand.New(rand.NewPCG(seed, 17))
	var st Stats
	// Two uninterrupted runs, the faster one measured: the first one
	// also fills caches (downloads, the page cache) the trials find full.
	for i := range 2 {
		c := op.Prepare(t, -i)
		t0 := time.Now()
		out, err := Run(t, c)
		d := time.Since(t0)
		if err != nil {
			t.Fatalf("%s: uninterrupted run: %v\n%s", op.Name, err, out)
		}
		if i == 0 || d < st.Measured {
			st.Measured = d
		}
		op.Check(t, Result{Finished: true, Out: out})
		if t.Failed() {
			return st
		}
	}
	if testing.Verbose() {
		t.Logf("%s: an uninterrupted run takes %v", op.Name, st.Measured)
	}
	n := Trials(t, op.Trials)
	for i := 1; i <= n; i++ {
		c := op.Prepare(t, i)
		at := time.Duration(rng.Int64N(int64(st.Measured)))
		r := Kill(t, c, at)
		r.Trial = i
		st.Trials++
		if r.Killed {
			st.Killed++
		}
		if testing.Verbose() {
			t.Logf("%s: %v, took %v", op.Name, r, r.Took.Round(time.Millisecond))
		}
		op.Check(t, r)
		if t.Failed() {
			t.Logf("%s: failed at %v (seed %s=%d)", op.Name, r, EnvSeed, seed)
			break
		}
	}
	t.Logf("%s: %d trials (%d killed mid-operation), measured %v, seed %s=%d",
		op.Name, st.Trials, st.Killed, st.Measured.Round(time.Millisecond), EnvSeed, seed)
	return st
}

// TempFiles lists the names below dir that look like a writer's temporary
// file (".tf-*", "*.tmp*", ".tmp-*"): what a killed write leaves
// and the next run must clean up.
func TempFiles(dir string) []string {
	var found []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if isTemp(d.Name()) {
			rel, _ := filepath.Rel(dir, p)
			found = append(found, rel)
		}
		return nil
	})
	return found
}

// Tree describes every entry below dir (temporary files left out): its
// type, mode, owner and content hash or link target, keyed by the path
// relative to dir. Two trees with equal descriptions hold the same files.
func Tree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if isTemp(d.Name()) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fi.Mode().String()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			desc += fmt.Sprintf(" %d:%d", st.Uid, st.Gid)
		}
		switch {
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %d bytes sha256:%x", len(b), sha256.Sum256(b))
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + l
		}
		m[rel] = desc
		return nil
	})
	if err != nil {
		tb.Fatalf("tree %s: %v", dir, err)
	}
	return m
}

// DiffTrees lists how got differs from want (descriptions from Tree).
func DiffTrees(want, got map[string]string) []string {
	var d []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			d = append(d, "missing "+p+" ("+w+")")
		case g != w:
			d = append(d, p+": "+g+", want "+w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			d = append(d, "extra "+p+" ("+g+")")
		}
	}
	sort.Strings(d)
	return d
}

func isTemp(b string) bool {
	return strings.HasPrefix(b, ".tf-") || strings.Contains(b, ".tmp") || strings.HasPrefix(b, ".tmp-")
}
