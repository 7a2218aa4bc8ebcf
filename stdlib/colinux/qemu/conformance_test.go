//go:build linux

package qemu

import (
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver/drivertest"
)

// TestConformance runs the driver contract's suite (drivertest) on real
// VMs under TCG: the mini release booted frugal (no disk to build), on
// user-mode networking. Four QEMU starts: the lifecycle boot, its
// restore (then crashed), and the two ends of a live migration.
func TestConformance(t *testing.T) {
	rel := requireQEMU(t)
	ready := readyOverlay(t, t.TempDir())
	drivertest.Run(t, drivertest.Factory{
		New: func() driver.Runner { return &Runner{} },
		Spec: func(t *testing.T, name, dir string) driver.Spec {
			s := testSpec(t, rel, name, ready)
			s.Dir = dir
			return s
		},
		Ready: 90 * time.Second,
	})
}
