//go:build !linux

package ops

import (
	"context"
	"fmt"
	"io"
	"os"
)

// copyFile copies src to dst (created, not existing) in full.
func copyFile(ctx context.Context, src, dst string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
		return "", fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return "full", nil
}

func allocated(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// seekData is off: holes are not looked for here (read as zeros).
func seekData(f *os.File, off, size int64) int64 { return off }
