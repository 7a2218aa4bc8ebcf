//go:build linux || freebsd || netbsd || openbsd || dragonfly || solaris || aix

package fsutil

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// TestMknodat makes a fifo (no root needed) in an open directory.
func TestMknodat(t *testing.T) {
	dir := t.TempDir()
	d, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := Mknodat(d, "fifo", unix.S_IFIFO|0o600, 0); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "fifo"))
	if err != nil || fi.Mode().Type() != fs.ModeNamedPipe {
		t.Fatalf("fifo: %v %v", fi, err)
	}
}
