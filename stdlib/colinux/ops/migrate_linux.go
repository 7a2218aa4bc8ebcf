package ops

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// zeroRange makes n bytes at off of f zeros, as a hole where the
// filesystem can punch one.
func zeroRange(f *os.File, off, n int64) error {
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	}
	_, err := f.WriteAt(make([]byte, n), off)
	return err
}

// allocatedBytes is the disk space path takes (its allocated blocks: a
// sparse image takes less than its size); 0 when it does not exist.
func allocatedBytes(path string) int64 {
	var st unix.Stat_t
	if unix.Stat(path, &st) != nil {
		return 0
	}
	return st.Blocks * 512
}

// freeBytes is the space available to root on the file system that
// holds path, or would (its nearest existing parent); -1 when unknown.
func freeBytes(path string) int64 {
	for p := path; ; {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil {
			return int64(st.Bfree) * st.Bsize
		}
		parent := filepath.Dir(p)
		if parent == p {
			return -1
		}
		p = parent
	}
}

// detachProc runs cmd in a session of its own: no signal sent to the
// caller's session or process group reaches it.
func detachProc(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// diskSHA256Later opens the file at path now and hashes it when sum is
// called, also once it was moved or removed (an open file keeps its
// data); release closes it, summed or not.
func diskSHA256Later(path string) (sum func() (string, error), release func()) {
	f, err := os.Open(path)
	if err != nil {
		return func() (string, error) { return "", err }, func() {}
	}
	return func() (string, error) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", err
		}
		return readSHA256(f, path)
	}, func() { f.Close() }
}
