package ns

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// SetLimits writes a running guest's memory quota and CPU share into its
// cgroups (what a redefinition of mem or cpus changes live).
func (g *guest) SetLimits(ctx context.Context, memBytes int64, cpus float64) error {
	rt, err := g.runningRuntime("set limits")
	if err != nil {
		return err
	}
	if rt.Cgroups == nil {
		return fmt.Errorf("ns %s: set limits: no cgroups recorded", g.spec.Name)
	}
	if err := rt.Cgroups.apply(Limits{MemBytes: memBytes, CPUs: cpus}); err != nil {
		return fmt.Errorf("ns %s: %w", g.spec.Name, err)
	}
	if cpus > 0 {
		return nil
	}
	// apply leaves an unset limit alone: lift the CPU quota explicitly.
	if rt.Cgroups.V2 {
		if d := rt.Cgroups.Paths["unified"]; exists(filepath.Join(d, "cpu.max")) {
			return writeCg(d, "cpu.max", "max 100000")
		}
		return nil
	}
	if d := rt.Cgroups.Paths["cpu"]; d != "" {
		return writeCg(d, "cpu.cfs_quota_us", "-1")
	}
	return nil
}

var _ driver.Limiter = (*guest)(nil)
