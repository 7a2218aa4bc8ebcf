//go:build unix

package guestexe

import (
	"os"
	"syscall"
)

// trusted: cand is a regular executable file with self's owner that no
// group or other user may write.
func trusted(self, cand string) bool {
	si, err := os.Stat(self)
	if err != nil {
		return false
	}
	ci, err := os.Stat(cand)
	if err != nil || !ci.Mode().IsRegular() || ci.Mode().Perm()&0o111 == 0 || ci.Mode().Perm()&0o022 != 0 {
		return false
	}
	ss, ok1 := si.Sys().(*syscall.Stat_t)
	cs, ok2 := ci.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && ss.Uid == cs.Uid
}
