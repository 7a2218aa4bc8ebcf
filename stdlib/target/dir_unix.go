//go:build unix

package target

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// sysOwner reads owner and device numbers from a FileInfo.
func sysOwner(fi fs.FileInfo) (uid, gid int, major, minor uint32) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid), unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	}
	return 0, 0, 0, 0
}

func (d *Dir) mknod(tmp string, e Entry) error {
	pf, err := d.root.Open(path.Dir(tmp))
	if err != nil {
		return err
	}
	defer pf.Close()
	var mode uint32
	switch e.Type {
	case TypeChar:
		mode = unix.S_IFCHR
	case TypeBlock:
		mode = unix.S_IFBLK
	case TypeFifo:
		mode = unix.S_IFIFO
	}
	err = fsutil.Mknodat(pf, path.Base(tmp), mode|0o600, unix.Mkdev(e.Major, e.Minor))
	if errors.Is(err, fsutil.ErrNoMknodat) {
		return fmt.Errorf("%w: %w", err, ErrUnsupported) // this package's sentinel
	}
	return err
}
