package farm

import (
	"context"
	"fmt"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// Guest is a defined guest and the handle to drive it.
type Guest struct {
	farm *Farm
	Def  *Definition
}

// Farm is the farm the guest belongs to.
func (g *Guest) Farm() *Farm { return g.farm }

// GuestOf is the handle of guest d in this farm, for an operation that
// holds a definition it has just written or read (package ops).
func (f *Farm) GuestOf(d *Definition) *Guest { return &Guest{farm: f, Def: d} }

// GuestName lets other modules (proxy) take a guest where a name is wanted.
func (g *Guest) GuestName() string { return g.Def.Name }

// Spec is what the guest's driver runs.
func (g *Guest) Spec() driver.Spec { return g.farm.Spec(g.Def) }

// Handle re-adopts the guest through its driver.
func (g *Guest) Handle(ctx context.Context) (driver.Guest, error) {
	r, err := g.farm.Runner(g.Def)
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	h, err := r.Attach(ctx, g.Spec())
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	return h, nil
}

// Status reports running / suspended / stopped / crashed (with a reason).
func (g *Guest) Status(ctx context.Context) (driver.Status, error) {
	h, err := g.Handle(ctx)
	if err != nil {
		return driver.Status{}, err
	}
	return h.Status(ctx)
}

// Running is Status reduced to "its processes exist".
func (g *Guest) Running(ctx context.Context) bool {
	st, err := g.Status(ctx)
	return err == nil && (st.State == driver.Running || st.State == driver.Suspended)
}

// Start boots the guest unless it runs already; it refuses to overcommit
// host memory. It reports whether it started anything.
func (g *Guest) Start(ctx context.Context) (bool, error) {
	if g.Running(ctx) {
		return false, nil
	}
	unlock, err := g.farm.Lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	if err := g.CheckMemory(ctx); err != nil {
		return false, err
	}
	r, err := g.farm.Runner(g.Def)
	if err != nil {
		return false, fmt.Errorf("guest %s: start: %w", g.Def.Name, err)
	}
	if err := g.checkDiskFree(ctx); err != nil {
		return false, err
	}
	if _, err := r.Start(ctx, g.Spec()); err != nil {
		return false, fmt.Errorf("guest %s: start: %w", g.Def.Name, err)
	}
	return true, g.writeStarted(g.Def)
}

// CheckMemory refuses a start that would commit more host memory than
// the host has (less its reserve), naming the numbers.
func (g *Guest) CheckMemory(ctx context.Context) error {
	h, err := g.farm.Host(ctx)
	if err != nil {
		return err
	}
	committed, err := g.farm.committed(ctx, g.Def.Name)
	if err != nil {
		return err
	}
	if committed+g.Def.MemBytes > h.MemTotal-h.Reserve {
		return fmt.Errorf("guest %s: start: %s more would commit %s of %s host memory (reserve %s, running guests %s); stop a guest or lower mem: %w",
			g.Def.Name, HumanSize(g.Def.MemBytes), HumanSize(committed+g.Def.MemBytes), HumanSize(h.MemTotal), HumanSize(h.Reserve), HumanSize(committed), ErrOvercommit)
	}
	return nil
}

// Stop shuts the guest down (clean first, killed after grace). It reports
// whether the guest was running.
func (g *Guest) Stop(ctx context.Context, grace time.Duration) (bool, error) {
	h, err := g.Handle(ctx)
	if err != nil {
		return false, err
	}
	st, err := h.Status(ctx)
	if err != nil {
		return false, err
	}
	if st.State != driver.Running && st.State != driver.Suspended {
		return false, nil
	}
	if _, vm := h.(driver.OwnKernel); vm && g.Def.HostKey != "" && grace > 0 && st.State == driver.Running {
		// A VM's clean shutdown is the guest's own poweroff (microvm has no
		// ACPI button); the driver then only waits, and kills after grace.
		if c, err := g.Conn(ctx); err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c.Run(pctx, "poweroff", ssh.RunOptions{IgnoreExit: true, Sudo: g.User() != "root"})
			cancel()
		}
	}
	g.dropConn(nil)
	if err := h.Stop(ctx, grace); err != nil {
		return true, fmt.Errorf("guest %s: stop: %w", g.Def.Name, err)
	}
	return true, nil
}

// WaitReady waits for the guest's ready marker, then, when the guest has a
// pinned host key, for one SSH handshake; over it, the shares of a guest
// that mounts them itself (qemu) not mounted yet are mounted (see Share).
func (g *Guest) WaitReady(ctx context.Context, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h, err := g.Handle(ctx)
	if err != nil {
		return err
	}
	if err := h.WaitReady(ctx); err != nil {
		return fmt.Errorf("guest %s: wait_ready: %w", g.Def.Name, err)
	}
	if g.Def.HostKey == "" {
		return nil
	}
	c, err := g.SSH(ctx)
	if err != nil {
		return fmt.Errorf("guest %s: wait_ready: %w", g.Def.Name, err)
	}
	defer c.Close()
	return g.mountShares(ctx, h, c)
}

// mountShares has a guest whose shares it mounts itself
// (driver.ShareMounter: qemu's 9p) mount them over c, as root.
func (g *Guest) mountShares(ctx context.Context, h driver.Guest, c *ssh.Client) error {
	m, ok := h.(driver.ShareMounter)
	if !ok || len(g.Def.Shares) == 0 {
		return nil
	}
	run := func(ctx context.Context, cmd string) (driver.ExecResult, error) {
		r, err := c.Run(ctx, guestPath+cmd, ssh.RunOptions{IgnoreExit: true, Sudo: g.User() != "root"})
		return driver.ExecResult{Code: r.Code, Stdout: r.Stdout, Stderr: r.Stderr}, err
	}
	if err := m.MountShares(ctx, g.Def.Shares, run); err != nil {
		return fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	return nil
}

// Suspend freezes the guest. It reports whether it did anything: a
// guest suspended already is left so; one that does not run is an error.
func (g *Guest) Suspend(ctx context.Context) (bool, error) {
	return g.freeze(ctx, "suspend", driver.Suspended, driver.Running)
}

// Resume thaws the guest, reporting whether it was suspended; a running
// guest is left so.
func (g *Guest) Resume(ctx context.Context) (bool, error) {
	return g.freeze(ctx, "resume", driver.Running, driver.Suspended)
}

func (g *Guest) freeze(ctx context.Context, op string, want, from driver.State) (bool, error) {
	h, err := g.Handle(ctx)
	if err != nil {
		return false, err
	}
	s, ok := h.(driver.Suspender)
	if !ok {
		return false, fmt.Errorf("guest %s: %w", g.Def.Name, driver.Unsupported(g.Def.Driver, op, ""))
	}
	if op == "resume" {
		// A pause left by a killed tinyfarm includes a frozen file
		// system, which a plain resume would leave frozen.
		st, _ := h.Status(ctx)
		if err := g.healPauseLocked(ctx, h); err != nil {
			return false, err
		}
		if st.State == driver.Suspended {
			if now, _ := h.Status(ctx); now.State == driver.Running {
				return true, nil // the heal resumed it
			}
		}
	}
	st, err := h.Status(ctx)
	if err != nil {
		return false, err
	}
	switch st.State {
	case want:
		return false, nil
	case from:
	default:
		return false, fmt.Errorf("guest %s: %s: the guest is %s, not running: start it first: %w", g.Def.Name, op, st.State, ErrNotRunning)
	}
	if op == "suspend" {
		err = s.Suspend(ctx)
	} else {
		err = s.Resume(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	return true, nil
}
