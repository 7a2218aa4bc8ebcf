package fakedriver_test

import (
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver/drivertest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver/fakedriver"
)

// TestConformance: the fake keeps the driver contract, so tests that use
// it in place of a real driver test what the real ones do.
func TestConformance(t *testing.T) {
	drivertest.Run(t, drivertest.Factory{
		New: func() driver.Runner { return &fakedriver.Runner{} },
		Spec: func(t *testing.T, name, dir string) driver.Spec {
			return driver.Spec{Name: name, Dir: dir, MemBytes: 64 << 20, Layout: driver.Scatter,
				Disks: []driver.Disk{{Path: "/nonexistent/fake.img"}}, Net: driver.Net{Mode: "bridge"}}
		},
		Crash: func(t *testing.T, g driver.Guest) {
			if err := g.(*fakedriver.Guest).Crash("killed by drivertest"); err != nil {
				t.Fatal(err)
			}
		},
	})
}
