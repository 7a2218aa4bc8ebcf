//go:build !linux

package ops

import (
	"os"
	"os/exec"
)

// zeroRange makes n bytes at off of f zeros.
func zeroRange(f *os.File, off, n int64) error {
	_, err := f.WriteAt(make([]byte, n), off)
	return err
}

// allocatedBytes is path's size here (no block counts).
func allocatedBytes(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// freeBytes is unknown here.
func freeBytes(path string) int64 { return -1 }

// detachProc does nothing here.
func detachProc(cmd *exec.Cmd) {}

// diskSHA256Later hashes the file at path now: here (Windows) a file held
// open cannot be moved or removed, which its guest's destroy does next.
func diskSHA256Later(path string) (sum func() (string, error), release func()) {
	s, err := fileSHA256(path)
	return func() (string, error) { return s, err }, func() {}
}
