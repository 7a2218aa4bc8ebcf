//go:build !unix

package target

import (
	"fmt"
	"io/fs"
)

func sysOwner(fi fs.FileInfo) (uid, gid int, major, minor uint32) { return 0, 0, 0, 0 }

func (d *Dir) mknod(tmp string, e Entry) error {
	return fmt.Errorf("mknod %s: special files need a Unix host: %w", tmp, ErrUnsupported)
}
