//go:build !linux

package disklock

import (
	"os"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Lock locks nothing off Linux (no guest process runs here but coLinux's,
// which holds its images itself).
func Lock(name string, disks []driver.Disk) ([]*os.File, error) { return nil, nil }

// Close releases what Lock returned.
func Close(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}
