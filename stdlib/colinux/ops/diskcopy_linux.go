package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyFile copies src to dst (created, not existing): a reflink (FICLONE)
// where the filesystem shares extents between files (btrfs, xfs), else a
// sparse copy that reads only the data extents (SEEK_DATA/SEEK_HOLE) and
// leaves holes as holes. It reports the method.
func copyFile(ctx context.Context, src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return "", err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return "", err
	}
	method, err := copyInto(ctx, in, out, fi.Size())
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return "", fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return method, nil
}

func copyInto(ctx context.Context, in, out *os.File, size int64) (string, error) {
	if err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd())); err == nil {
		return "reflink", nil
	}
	if err := out.Truncate(size); err != nil {
		return "", err
	}
	buf := make([]byte, 1<<20)
	var off int64
	for off < size {
		if err := ctx.Err(); err != nil {
			return "", err
		}
		data, err := unix.Seek(int(in.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to the end
		}
		if err != nil {
			return "", fmt.Errorf("seek data: %w", err)
		}
		hole, err := unix.Seek(int(in.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return "", fmt.Errorf("seek hole: %w", err)
		}
		if err := copyRange(in, out, data, hole, buf); err != nil {
			return "", err
		}
		off = hole
	}
	return "sparse", out.Sync()
}

// copyRange copies [from, to) and skips all-zero blocks (a freshly made
// image has many inside its data extents), keeping them holes.
func copyRange(in, out *os.File, from, to int64, buf []byte) error {
	for from < to {
		n := int64(len(buf))
		if to-from < n {
			n = to - from
		}
		m, err := in.ReadAt(buf[:n], from)
		if m == 0 && err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		for b := 0; b < m; b += 4096 {
			e := min(b+4096, m)
			if !allZero(buf[b:e]) {
				if _, err := out.WriteAt(buf[b:e], from+int64(b)); err != nil {
					return err
				}
			}
		}
		from += int64(m)
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// allocated is the space a file takes on disk (its blocks, not its size).
func allocated(path string) int64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// seekData is the offset of the first data at or after off in f (size
// when only a hole follows); off when the filesystem cannot say.
func seekData(f *os.File, off, size int64) int64 {
	d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return size
	}
	if err != nil {
		return off
	}
	return d
}
