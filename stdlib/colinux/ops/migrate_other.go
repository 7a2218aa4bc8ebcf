//go:build !linux

package ops

import "os"

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
