//go:build linux

package ns_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver/drivertest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// TestConformance runs the driver contract's suite (drivertest) on real
// namespace guests: a scatter disk on the test bridge, in root mode.
func TestConformance(t *testing.T) {
	needRoot(t)
	disk := scatterDisk(t, "")
	var n atomic.Int32
	drivertest.Run(t, drivertest.Factory{
		New: func() driver.Runner { return &ns.Runner{} },
		Spec: func(t *testing.T, name, dir string) driver.Spec {
			s := spec(t, name, disk, 60+int(n.Add(1)))
			s.Dir = dir
			return s
		},
		Ready: 30 * time.Second,
	})
}
