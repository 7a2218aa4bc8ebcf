package farm

import (
	"context"
	"slices"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/colinuxd"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/qemu"
)

// registered are the backends the tinyfarm binary offers, in order of
// preference: the default driver is the first that can run guests on
// this host (driver.HostChecker). A new backend is its package and one
// line here; the module asks it for abilities (the optional interfaces
// of package driver), never for its name.
var registered = []struct {
	name string
	new  func() driver.Runner
}{
	{"ns", func() driver.Runner { return &ns.Runner{} }},            // root on Linux: guests start in ~0.1 s
	{"qemu", func() driver.Runner { return &qemu.Runner{} }},        // anywhere QEMU runs
	{"colinux", func() driver.Runner { return &colinuxd.Runner{} }}, // coLinux 0.7 on 32-bit Windows
}

// known are the registered backends, for what a farm asks of a driver
// it does not run (Definition.Validate, a define-only farm).
var known = func() map[string]driver.Runner {
	m := map[string]driver.Runner{}
	for _, r := range registered {
		m[r.name] = r.new()
	}
	return m
}()

// DefaultDrivers are the backends the tinyfarm binary offers.
func DefaultDrivers() map[string]driver.Runner {
	m := map[string]driver.Runner{}
	for _, r := range registered {
		m[r.name] = r.new()
	}
	return m
}

// DefaultDriver is the first registered driver that can run guests on
// this host: "ns" for root on Linux, where namespace guests start in
// ~0.1 s, else "qemu".
func DefaultDriver() string {
	return pickDriver(nil)
}

// pickDriver is the first driver that can run guests here: of the
// registered ones (in order) those in have (all with have nil), then
// have's others by name.
func pickDriver(have map[string]driver.Runner) string {
	var names []string
	for _, r := range registered {
		if _, ok := have[r.name]; ok || have == nil {
			names = append(names, r.name)
		}
	}
	var others []string
	for name := range have {
		if known[name] == nil {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	names = append(names, others...)
	for _, name := range names {
		r := have[name]
		if r == nil {
			r = known[name]
		}
		if hc, ok := r.(driver.HostChecker); !ok || hc.CheckHost() == nil {
			return name
		}
	}
	if len(names) > 0 {
		return names[len(names)-1]
	}
	return ""
}

// Backend is the runner a farm asks about driver name: its own, else the
// registered one; nil for a name neither knows.
func (f *Farm) Backend(name string) driver.Runner {
	if r, ok := f.opts.Drivers[name]; ok {
		return r
	}
	return known[name]
}

// driverNames lists the drivers a definition may name, for errors.
func (f *Farm) driverNames() string {
	var names []string
	for _, r := range registered {
		names = append(names, r.name)
	}
	var others []string
	if f != nil {
		for name := range f.opts.Drivers {
			if known[name] == nil {
				others = append(others, name)
			}
		}
	}
	slices.Sort(others)
	names = append(names, others...)
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Why is what driver name's backend says about an ability it lacks.
func (f *Farm) Why(ctx context.Context, name, ability, otherwise string) string {
	if e, ok := f.Backend(name).(driver.Explainer); ok {
		if s := e.WhyUnsupported(ctx, ability); s != "" {
			return s
		}
	}
	return otherwise
}
