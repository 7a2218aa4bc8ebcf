package farm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

// BootOptions tune Boot.
type BootOptions struct {
	// ReadyTimeout bounds how long each started guest may take to be
	// ready before the next group starts. Default 90s.
	ReadyTimeout time.Duration
	// Logf receives a line per step as it happens. Default: none.
	Logf func(format string, args ...any)
}

// BootReport says what Boot did.
type BootReport struct {
	// Network is set when the farm bridge or its guards had to be put
	// back ("tfbr0 10.77.0.0/24").
	Network string
	Started []string // autostart guests Boot started, in order
	Running []string // autostart guests that ran already
	Failed  []string // autostart guests that failed to start or get ready
}

// Changed reports whether Boot changed anything.
func (r BootReport) Changed() bool { return r.Network != "" || len(r.Started) > 0 }

// Boot brings the farm back after a host reboot (`tinyfarm boot`): the
// farm bridge and its guards when bridged guests are defined, then the
// autostart guests, higher autostart_priority first; one priority is one
// group, started together, and the next group starts once they are ready
// and the group's longest autostart_delay has passed. Guests that run
// already are left alone, so a second Boot changes nothing. A guest that
// fails does not stop the others; the error names every one that failed.
func (f *Farm) Boot(ctx context.Context, o BootOptions) (BootReport, error) {
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 90 * time.Second
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	var rep BootReport
	defs, err := f.List()
	if err != nil {
		return rep, err
	}
	bridged := false
	for _, d := range defs {
		bridged = bridged || d.Net == "bridge"
	}
	if bridged {
		_, ipnet, err := net.ParseCIDR(f.opts.Subnet)
		if err != nil {
			return rep, fmt.Errorf("farm subnet %q: %w", f.opts.Subnet, err)
		}
		ones, _ := ipnet.Mask.Size()
		changed, err := farmnet.RestoreFarmBridge(f.opts.Bridge, fmt.Sprintf("%s/%d", f.Gateway(), ones), f.dir)
		if err != nil {
			return rep, fmt.Errorf("boot: farm network %s %s: %w", f.opts.Bridge, f.opts.Subnet, err)
		}
		if changed {
			rep.Network = f.opts.Bridge + " " + f.opts.Subnet
			logf("network %s %s: bridge and guards restored", f.opts.Bridge, f.opts.Subnet)
		}
	}
	var auto []*Definition
	for _, d := range defs {
		if d.Autostart {
			auto = append(auto, d)
		}
	}
	sort.SliceStable(auto, func(i, j int) bool { return auto[i].AutostartPriority > auto[j].AutostartPriority })
	var errs []error
	for i := 0; i < len(auto); {
		j := i
		for j < len(auto) && auto[j].AutostartPriority == auto[i].AutostartPriority {
			j++
		}
		group := auto[i:j]
		i = j
		started, gerrs := f.bootGroup(ctx, group, o.ReadyTimeout, logf)
		errs = append(errs, gerrs...)
		for _, d := range group {
			switch {
			case contains(started, d.Name):
				rep.Started = append(rep.Started, d.Name)
			case failedIn(gerrs, d.Name):
				rep.Failed = append(rep.Failed, d.Name)
			default:
				rep.Running = append(rep.Running, d.Name)
			}
		}
		var delay time.Duration
		for _, d := range group {
			delay = max(delay, d.AutostartDelay)
		}
		if len(started) > 0 && delay > 0 && i < len(auto) {
			logf("waiting %v before the next group (autostart_delay)", delay)
			select {
			case <-ctx.Done():
				return rep, errors.Join(append(errs, ctx.Err())...)
			case <-time.After(delay):
			}
		}
	}
	return rep, errors.Join(errs...)
}

// bootErr is a guest's failure in Boot.
type bootErr struct {
	name string
	err  error
}

func (e bootErr) Error() string { return e.err.Error() }
func (e bootErr) Unwrap() error { return e.err }

func failedIn(errs []error, name string) bool {
	for _, e := range errs {
		var be bootErr
		if errors.As(e, &be) && be.name == name {
			return true
		}
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// bootGroup starts the group's guests that do not run, together, and
// waits until each is ready.
func (f *Farm) bootGroup(ctx context.Context, group []*Definition, timeout time.Duration, logf func(string, ...any)) (started []string, errs []error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, d := range group {
		wg.Add(1)
		go func(d *Definition) {
			defer wg.Done()
			g := &Guest{farm: f, Def: d}
			ok, err := g.Start(ctx)
			if err == nil && ok {
				err = g.WaitReady(ctx, timeout)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				logf("guest %s: failed: %v", d.Name, err)
				errs = append(errs, bootErr{d.Name, err})
			case ok:
				logf("guest %s: started (priority %d)", d.Name, d.AutostartPriority)
				started = append(started, d.Name)
			default:
				logf("guest %s: running already", d.Name)
			}
		}(d)
	}
	wg.Wait()
	sort.Strings(started)
	return started, errs
}

// ShutdownReport says what Shutdown stopped.
type ShutdownReport struct {
	Stopped []string
	Failed  []string
}

// Shutdown stops every running guest of the farm at once, each cleanly
// first and killed after grace, so the whole farm is down within about
// grace plus a few seconds (the systemd unit's ExecStop).
func (f *Farm) Shutdown(ctx context.Context, grace time.Duration) (ShutdownReport, error) {
	defs, err := f.List()
	if err != nil {
		return ShutdownReport{}, err
	}
	var rep ShutdownReport
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	for _, d := range defs {
		wg.Add(1)
		go func(d *Definition) {
			defer wg.Done()
			g := &Guest{farm: f, Def: d}
			ok, err := g.Stop(ctx, grace)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				rep.Failed = append(rep.Failed, d.Name)
				errs = append(errs, err)
			} else if ok {
				rep.Stopped = append(rep.Stopped, d.Name)
			}
		}(d)
	}
	wg.Wait()
	sort.Strings(rep.Stopped)
	sort.Strings(rep.Failed)
	return rep, errors.Join(errs...)
}
