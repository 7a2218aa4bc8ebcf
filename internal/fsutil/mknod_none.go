//go:build unix && !(linux || freebsd || netbsd || openbsd || dragonfly || solaris || aix)

package fsutil

import "os"

// Mknodat fails with ErrNoMknodat: this OS has no mknodat(2) to call.
func Mknodat(dir *os.File, name string, mode uint32, dev uint64) error {
	return ErrNoMknodat
}
