//go:build !windows

package colinuxd

import (
	"context"
	"fmt"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

const why = "coLinux runs only on 32-bit Windows hosts"

// Start is not supported outside Windows.
func (r *Runner) Start(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	return nil, fmt.Errorf("colinux %s: start: %w", spec.Name, driver.Unsupported("colinux", "start", why))
}

// Attach is not supported outside Windows.
func (r *Runner) Attach(ctx context.Context, spec driver.Spec) (driver.Guest, error) {
	return nil, fmt.Errorf("colinux %s: attach: %w", spec.Name, driver.Unsupported("colinux", "attach", why))
}
