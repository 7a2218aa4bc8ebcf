//go:build linux || freebsd || netbsd || openbsd || dragonfly || solaris || aix

package fsutil

import (
	"os"

	"golang.org/x/sys/unix"
)

// Mknodat makes the special file name (mode: its type, S_IFCHR, S_IFBLK or
// S_IFIFO, and permission bits; dev: its device number) in the open
// directory dir: relative to it, so no symlink in the path can send it out
// of the tree dir belongs to.
func Mknodat(dir *os.File, name string, mode uint32, dev uint64) error {
	return unix.Mknodat(int(dir.Fd()), name, mode, int(dev))
}
