// Package hostinfo reads facts about the host machine that several
// packages need (the qemu driver and the test helpers that boot VMs).
package hostinfo

import (
	"os"
	"strconv"
	"strings"
)

// TSCKHz returns the host CPU clock in kHz from /proc/cpuinfo, or 0.
// Under TCG a guest's TSC runs at the host TSC rate; telling the guest
// kernel (tsc_early_khz=) spares it a PIT calibration that hangs on a
// loaded host under microvm.
func TSCKHz() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return 0
		}
		return int(mhz * 1000)
	}
	return 0
}
