//go:build !linux

package colinux

import "os"

// zeroRange makes n bytes at off of f zeros.
func zeroRange(f *os.File, off, n int64) error {
	_, err := f.WriteAt(make([]byte, n), off)
	return err
}
