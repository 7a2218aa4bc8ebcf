//go:build !linux

package ns

import (
	"context"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Runner is the ns driver; it needs Linux namespaces.
type Runner struct {
	Exe        string
	Pids       int
	Logf       func(format string, args ...any)
	Unhardened bool
}

func (r *Runner) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	return nil, driver.Unsupported("ns", "start", "namespace guests need a Linux host")
}

func (r *Runner) Attach(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	return nil, driver.Unsupported("ns", "attach", "namespace guests need a Linux host")
}

// Main is a no-op off Linux.
func Main() {}

// VethExists is false off Linux.
func VethExists(driver.Spec) bool { return false }

// DeleteBridge is a no-op off Linux.
func DeleteBridge(string) error { return nil }

// UserNSAvailable is false off Linux.
func UserNSAvailable() bool { return false }

// CheckHost: namespace guests need a Linux host.
func (r *Runner) CheckHost() error {
	return driver.Unsupported("ns", "running guests", "namespace guests need a Linux host")
}
