//go:build unix

package fsutil

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// SpaceError turns a write's "no space left on device" into an error that
// says how much the write needed and how much dir's file system has free,
// and what to do; other errors pass through.
func SpaceError(dir string, need int64, err error) error {
	if !errors.Is(err, unix.ENOSPC) && !errors.Is(err, unix.EDQUOT) {
		return err
	}
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return fmt.Errorf("%w (needs %d bytes): free space in %s, then rerun", err, need, dir)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	return fmt.Errorf("%w: needs %d bytes, %d bytes free in %s (and %d free inodes): free space there, then rerun", err, need, free, dir, st.Ffree)
}
