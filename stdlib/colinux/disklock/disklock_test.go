//go:build linux

package disklock_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/disklock"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// TestLock: a disk locked for writing refuses a second guest, naming who
// holds it; read-only locks share; a released lock can be taken again.
func TestLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.img")
	os.WriteFile(p, []byte("disk"), 0o644)
	rw := []driver.Disk{{Path: p}}
	held, err := disklock.Lock("one", rw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := disklock.Lock("two", rw); err == nil || !strings.Contains(err.Error(), "in use by process") || !strings.Contains(err.Error(), "guest two") {
		t.Errorf("second writer: %v", err)
	}
	if _, err := disklock.Lock("two", []driver.Disk{{Path: p, ReadOnly: true}}); err == nil {
		t.Error("a reader got a disk locked for writing")
	}
	disklock.Close(held)
	ro := []driver.Disk{{Path: p, ReadOnly: true}}
	a, err1 := disklock.Lock("a", ro)
	b, err2 := disklock.Lock("b", ro)
	if err1 != nil || err2 != nil {
		t.Errorf("two read-only guests: %v %v", err1, err2)
	}
	if _, err := disklock.Lock("w", rw); err == nil {
		t.Error("a writer got a disk shared read-only")
	}
	disklock.Close(a)
	disklock.Close(b)
	if held, err := disklock.Lock("again", rw); err != nil {
		t.Errorf("after release: %v", err)
	} else {
		disklock.Close(held)
	}
	if _, err := disklock.Lock("x", []driver.Disk{{Path: p + ".missing"}}); err == nil {
		t.Error("a missing disk locked")
	}
}
