package colinux

import (
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/colinuxd"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/qemu"
)

// DefaultDrivers are the backends the tinyfarm binary offers.
func DefaultDrivers() map[string]driver.Runner {
	return map[string]driver.Runner{
		"ns":      &ns.Runner{},
		"qemu":    &qemu.Runner{},
		"colinux": &colinuxd.Runner{},
	}
}

// DefaultDriver is "ns" for root on Linux, where namespace guests start in
// ~0.1 s, else "qemu".
func DefaultDriver() string {
	if defaultNS() {
		return "ns"
	}
	return "qemu"
}
