// Package fakedriver is a guest driver without guests: each "guest" is a
// small JSON record in its runtime directory (so a new Runner, as in a
// new tinyfarm process, re-attaches from it), and its abilities change
// that record. It passes the driver conformance suite (drivertest) and
// lets the colinux module's Lua tests (option decoding, defaults, check
// mode, errors, the recap) run in milliseconds, without root or guests.
//
// A fake guest's shell knows two commands, echo and exit, separated by
// ";" (see Guest.Exec); anything else exits 127.
package fakedriver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Name is the name tests register the fake under.
const Name = "fake"

const (
	recordFile = "fake.json"
	stateMagic = "tinyfarm-fake-state\n"
)

// Runner starts fake guests. The zero value is ready to use.
type Runner struct{}

// What the fake declares (see package driver).
var (
	_ driver.Runner        = (*Runner)(nil)
	_ driver.SpecChecker   = (*Runner)(nil)
	_ driver.Defaulter     = (*Runner)(nil)
	_ driver.Sharer        = (*Runner)(nil)
	_ driver.Configurer    = (*Runner)(nil)
	_ driver.Restorer      = (*Runner)(nil)
	_ driver.ConsoleReader = (*Runner)(nil)

	_ driver.Guest        = (*Guest)(nil)
	_ driver.Execer       = (*Guest)(nil)
	_ driver.Suspender    = (*Guest)(nil)
	_ driver.Checkpointer = (*Guest)(nil)
)

// record is a fake guest's state, in <Spec.Dir>/fake.json.
type record struct {
	State  driver.State `json:"state"`
	Reason string       `json:"reason,omitempty"`
	PID    int          `json:"pid,omitempty"`
	Since  time.Time    `json:"since"`
	Execs  [][]string   `json:"execs,omitempty"` // every command run, in order
	// Console is the guest's console: a fake guest has no console file
	// (the fake is a driver.ConsoleReader).
	Console string `json:"console,omitempty"`
}

// Guest is one fake guest.
type Guest struct {
	spec driver.Spec
}

// CheckSpec: a fake guest has no accelerator.
func (r *Runner) CheckSpec(s driver.Spec) error {
	if s.Accel != "" {
		return fmt.Errorf("accel %q: the fake driver has no accelerator: remove accel", s.Accel)
	}
	return nil
}

// Defaults: fake guests sit on the farm bridge (they take an address,
// reach nothing).
func (r *Runner) Defaults(driver.Layout) driver.Defaults { return driver.Defaults{Net: "bridge"} }

// ShareMethod: shares are only recorded.
func (r *Runner) ShareMethod() string { return "recorded by the fake driver" }

// Config renders the spec as JSON.
func (r *Runner) Config(spec driver.Spec) (string, error) {
	b, err := json.MarshalIndent(spec, "", "  ")
	return string(b) + "\n", err
}

// Start "boots" the guest: it runs, and its console says it is ready.
func (r *Runner) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	return r.start(ctx, spec, driver.Running)
}

func (r *Runner) start(ctx context.Context, spec driver.Spec, state driver.State) (*Guest, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fake %s: start: %w", spec.Name, err)
	}
	g := &Guest{spec: spec}
	if rec, _ := g.read(); rec.State == driver.Running || rec.State == driver.Suspended {
		return nil, fmt.Errorf("fake %s: start: already running (pid %d)", spec.Name, rec.PID)
	}
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("fake %s: start: %w", spec.Name, err)
	}
	h := fnv.New32a()
	h.Write([]byte(spec.Dir))
	old, _ := g.read()
	rec := record{State: state, PID: 1<<22 + int(h.Sum32()%(1<<20)), Since: time.Now().UTC(),
		Console: old.Console + fmt.Sprintf("fake guest %s booting\n%s\n", spec.Name, driver.ReadyMarker)}
	if err := g.write(rec); err != nil {
		return nil, fmt.Errorf("fake %s: start: %w", spec.Name, err)
	}
	return g, nil
}

// ReadConsole is the console kept in the guest's record.
func (r *Runner) ReadConsole(spec driver.Spec) ([]byte, error) {
	rec, err := (&Guest{spec: spec}).read()
	return []byte(rec.Console), err
}

// Attach re-adopts the guest from its record.
func (r *Runner) Attach(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	return &Guest{spec: spec}, nil
}

// CheckState: a fake checkpoint starts with its magic line.
func (r *Runner) CheckState(file string) error {
	_, err := readState(file)
	return err
}

// Restore starts the guest in the run state its checkpoint saved.
func (r *Runner) Restore(ctx context.Context, spec driver.Spec, file string) (driver.Guest, error) {
	saved, err := readState(file)
	if err != nil {
		return nil, fmt.Errorf("fake %s: restore: %w", spec.Name, err)
	}
	return r.start(ctx, spec, saved.State)
}

func readState(file string) (record, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return record{}, err
	}
	rest, ok := strings.CutPrefix(string(b), stateMagic)
	if !ok {
		return record{}, errors.New("not a fake guest state")
	}
	var rec record
	if err := json.Unmarshal([]byte(rest), &rec); err != nil {
		return record{}, fmt.Errorf("fake guest state: %w", err)
	}
	return rec, nil
}

func (g *Guest) path() string { return filepath.Join(g.spec.Dir, recordFile) }

func (g *Guest) read() (record, error) {
	b, err := os.ReadFile(g.path())
	if errors.Is(err, os.ErrNotExist) {
		return record{State: driver.Stopped, Reason: "never started"}, nil
	}
	if err != nil {
		return record{}, err
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return record{}, fmt.Errorf("%s: %w", g.path(), err)
	}
	return rec, nil
}

func (g *Guest) write(rec record) error {
	b, _ := json.MarshalIndent(rec, "", "  ")
	return fsutil.WriteFileAtomic(g.path(), append(b, '\n'), 0o600)
}

// update changes a running (or suspended) guest's record.
func (g *Guest) update(op string, fn func(*record) error) error {
	rec, err := g.read()
	if err != nil {
		return fmt.Errorf("fake %s: %s: %w", g.spec.Name, op, err)
	}
	if rec.State != driver.Running && rec.State != driver.Suspended {
		return fmt.Errorf("fake %s: %s: guest is not running", g.spec.Name, op)
	}
	if err := fn(&rec); err != nil {
		return fmt.Errorf("fake %s: %s: %w", g.spec.Name, op, err)
	}
	return g.write(rec)
}

// Status reports the record.
func (g *Guest) Status(ctx context.Context) (driver.Status, error) {
	rec, err := g.read()
	if err != nil {
		return driver.Status{}, fmt.Errorf("fake %s: status: %w", g.spec.Name, err)
	}
	st := driver.Status{State: rec.State, Reason: rec.Reason, Since: rec.Since, Isolation: "none (fake driver)"}
	if rec.State == driver.Running || rec.State == driver.Suspended {
		st.PID = rec.PID
	}
	return st, nil
}

// Stop stops a running guest; any other is left as it is.
func (g *Guest) Stop(ctx context.Context, grace time.Duration) error {
	rec, err := g.read()
	if err != nil {
		return fmt.Errorf("fake %s: stop: %w", g.spec.Name, err)
	}
	if rec.State != driver.Running && rec.State != driver.Suspended {
		return nil
	}
	rec.State, rec.Reason, rec.Since = driver.Stopped, "stopped by tinyfarm", time.Now().UTC()
	return g.write(rec)
}

// WaitReady: a running fake guest is ready at once.
func (g *Guest) WaitReady(ctx context.Context) error {
	st, err := g.Status(ctx)
	if err != nil {
		return err
	}
	if st.State != driver.Running && st.State != driver.Suspended {
		return fmt.Errorf("fake %s: wait ready: the guest is %s", g.spec.Name, st.State)
	}
	return ctx.Err()
}

// Crash ends the guest as a crash would, with reason.
func (g *Guest) Crash(reason string) error {
	return g.update("crash", func(r *record) error {
		r.State, r.Reason, r.Since = driver.Crashed, reason, time.Now().UTC()
		return nil
	})
}

// Suspend freezes the guest.
func (g *Guest) Suspend(ctx context.Context) error {
	return g.update("suspend", func(r *record) error { r.State = driver.Suspended; return nil })
}

// Resume thaws the guest.
func (g *Guest) Resume(ctx context.Context) error {
	return g.update("resume", func(r *record) error { r.State = driver.Running; return nil })
}

// Checkpoint saves the guest's record to file; the guest runs on.
func (g *Guest) Checkpoint(ctx context.Context, file string) error {
	rec, err := g.read()
	if err != nil {
		return fmt.Errorf("fake %s: checkpoint: %w", g.spec.Name, err)
	}
	if rec.State != driver.Running && rec.State != driver.Suspended {
		return fmt.Errorf("fake %s: checkpoint: guest is not running", g.spec.Name)
	}
	b, _ := json.Marshal(rec)
	return fsutil.WriteFileAtomic(file, append([]byte(stateMagic), b...), 0o600)
}

// Execs are the commands run in the guest so far, in order.
func (g *Guest) Execs() ([][]string, error) {
	rec, err := g.read()
	return rec.Execs, err
}

// Exec records argv and runs it in the fake shell: argv is either a
// command or /bin/sh -c SCRIPT, where SCRIPT is commands separated by
// ";". echo WORDS prints them; exit N ends with code N; any other
// command exits 127 ("not found").
func (g *Guest) Exec(ctx context.Context, argv []string, opts driver.ExecOptions) (driver.ExecResult, error) {
	if err := g.update("exec", func(r *record) error {
		if r.State == driver.Suspended {
			return errors.New("the guest is suspended")
		}
		r.Execs = append(r.Execs, argv)
		return nil
	}); err != nil {
		return driver.ExecResult{}, err
	}
	script := strings.Join(argv, " ")
	if len(argv) == 3 && argv[1] == "-c" {
		script = argv[2]
	}
	var res driver.ExecResult
commands:
	for _, cmd := range strings.Split(script, ";") {
		f := strings.Fields(cmd)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "echo":
			res.Stdout = append(res.Stdout, strings.Join(f[1:], " ")+"\n"...)
			continue
		case "exit":
			if len(f) > 1 {
				res.Code, _ = strconv.Atoi(f[1])
			}
		default:
			res.Code = 127
			res.Stderr = append(res.Stderr, "sh: "+f[0]+": not found\n"...)
		}
		break commands
	}
	if opts.Stdout != nil {
		opts.Stdout.Write(res.Stdout)
	}
	if opts.Stderr != nil {
		opts.Stderr.Write(res.Stderr)
	}
	return res, ctx.Err()
}
