//go:build unix

package engine

import (
	"errors"
	"fmt"
	"syscall"
)

// spaceError says, for a full file system, what a write needed and what
// is free in dir; other errors pass through.
func spaceError(dir string, need int, err error) error {
	if !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return fmt.Errorf("%w (needs %d bytes): free space in %s, then rerun", err, need, dir)
	}
	return fmt.Errorf("%w: needs %d bytes, %d bytes free in %s: free space there, then rerun", err, need, int64(st.Bavail)*int64(st.Bsize), dir)
}
