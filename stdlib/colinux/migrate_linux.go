package colinux

import (
	"os"

	"golang.org/x/sys/unix"
)

// zeroRange makes n bytes at off of f zeros, as a hole where the
// filesystem can punch one.
func zeroRange(f *os.File, off, n int64) error {
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	}
	_, err := f.WriteAt(make([]byte, n), off)
	return err
}
