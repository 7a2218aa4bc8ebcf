//go:build unix

package fsutil

import (
	"errors"

	"golang.org/x/sys/unix"
)

// processAlive: signal 0 checks existence; EPERM means it exists under
// another user.
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
