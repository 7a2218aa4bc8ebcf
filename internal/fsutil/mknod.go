package fsutil

import (
	"errors"
	"runtime"
)

// ErrNoMknodat is Mknodat's error on an OS without mknodat(2) (darwin:
// golang.org/x/sys/unix has none for it). A special file made by path
// instead could be sent out of its root by a symlink planted in the tree,
// so there is no fallback. It matches errors.ErrUnsupported.
var ErrNoMknodat error = noMknodat{}

type noMknodat struct{}

func (noMknodat) Error() string {
	return "special files (devices, fifos) need mknodat(2), which tinyfarm has no way to call on " + runtime.GOOS + ": make them on a Linux host"
}

func (noMknodat) Unwrap() error { return errors.ErrUnsupported }
