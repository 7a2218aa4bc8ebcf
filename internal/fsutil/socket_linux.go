package fsutil

import (
	"io/fs"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a Unix socket address holds
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// SocketPath returns a path by which the Unix socket at path can be bound
// or dialled: path itself when it fits in a socket address, else
// /proc/self/fd/N/<name> through an open descriptor of its directory, so
// a state dir deep in the file system still works. release closes the
// descriptor once the socket is bound or connected.
func SocketPath(path string) (p string, release func(), err error) {
	if len(path) <= maxSocketPath {
		return path, func() {}, nil
	}
	fd, err := unix.Open(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, &fs.PathError{Op: "open socket dir", Path: filepath.Dir(path), Err: err}
	}
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + filepath.Base(path), func() { unix.Close(fd) }, nil
}

// SocketArg is how to name the socket dir/name to a program that runs
// with dir as its working directory (QEMU's -qmp, -incoming, migrate
// URIs): the absolute path when it fits in a socket address, else name.
func SocketArg(dir, name string) string {
	if p := filepath.Join(dir, name); len(p) <= maxSocketPath {
		return p
	}
	return name
}
