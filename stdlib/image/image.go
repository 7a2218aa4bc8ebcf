//go:build linux

// Package image builds tinycolinux disks and remasters Tiny Core
// initramfs images, offline.
//
// [Build] makes an ext2/3/4 disk image from a Tiny Core core (the mirror's
// release file for its arch: corepure64.gz on x86_64, core.gz on x86) and
// .tcz extensions in
// one of two layouts: "scatter" (core extracted into the disk root,
// extensions installed by extraction, boots with root=/dev/X) or "frugal"
// (the disk holds tce/, home/ and opt/; core boots as the initramfs). The
// tree is assembled in a staging directory and turned into a filesystem by
// `mkfs.<fs> -d`, written to a temporary file next to the image and renamed
// over it, so a killed build leaves the previous image or none. A sidecar
// <image>.tinyfarm.json records a hash of the inputs and the guest's SSH
// host keys (ed25519, ecdsa, rsa, placed where every Tiny Core SSH server
// reads them): a second Build with the same inputs changes nothing, and a
// rebuild keeps the keys, so the pinned set stays valid.
//
// [Edit] changes an existing disk through the [target.Target] interface
// (loop-mounted in a private mount namespace, always unmounted). [Unpack]
// and [Pack] extract and write newc cpio initramfs images safely and
// reproducibly.
//
// Building and editing need root: file owners and setuid bits come from
// the staging tree (as with `cpio -idm` + `mkfs.ext3 -d`), and loop mounts
// need CAP_SYS_ADMIN. Without root they fail with an ErrUnsupported error
// that says so; check mode (Options.Check) works without root.
package image

import (
	"errors"
	"os"

	"github.com/tinyfarm/tinyfarm/stdlib/target"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"
)

// Sentinel errors; every error from this package wraps one of them, an
// io/fs error, or a context error.
var (
	// ErrInvalid: bad options or a malformed archive.
	ErrInvalid = errkind.Invalid("invalid")
	// ErrUnsafePath: an archive entry that would land outside the root, or
	// be written through a symlink. Same value as target.ErrUnsafePath.
	ErrUnsafePath = target.ErrUnsafePath
	// ErrUnsupported: an operation this process cannot do (not root).
	// Same value as errors.ErrUnsupported.
	ErrUnsupported = errors.ErrUnsupported
	// ErrBusy: the image is in use (attached to a loop device).
	ErrBusy = errors.New("image in use")
)

// Layout is how a disk holds Tiny Core.
type Layout string

// Layouts.
const (
	// Scatter: core extracted into the disk root (the seed's hard-disk
	// mode); the kernel boots it with root=/dev/X.
	Scatter Layout = "scatter"
	// Frugal: the disk holds tce/ (optional/*.tcz, onboot.lst, mydata.tgz),
	// home/ and opt/; the core boots as the initramfs.
	Frugal Layout = "frugal"
)

// writeAtomic replaces p with data (temp file in the same directory,
// fsync, rename, directory fsync).
func writeAtomic(p string, data []byte, perm os.FileMode) error {
	return fsutil.WriteFileAtomic(p, data, perm)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
