// Package disklock keeps one disk image to one running guest on the host:
// the process that runs a guest (the ns driver's monitor, QEMU) holds a
// flock on each of its images for as long as it runs, exclusive for a
// disk the guest writes, shared for a read-only one. The kernel drops it
// when that process ends, kill -9 included, so nothing is left to clean.
package disklock

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Lock takes the lock on each disk of guest name and returns the files
// that hold it: keep them open in (or hand them to) the process that runs
// the guest, never to the guest itself. A disk locked by another guest is
// an error naming it.
func Lock(name string, disks []driver.Disk) ([]*os.File, error) {
	var held []*os.File
	for _, d := range disks {
		f, err := os.Open(d.Path) // O_CLOEXEC: inherited only where handed on
		if err != nil {
			Close(held)
			return nil, fmt.Errorf("disk %s: %w", d.Path, err)
		}
		how := unix.LOCK_EX
		if d.ReadOnly {
			how = unix.LOCK_SH
		}
		if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
			who := holder(f)
			f.Close()
			Close(held)
			return nil, fmt.Errorf("disk %s is in use by %s: one disk serves one guest (stop that one first, or give guest %s a disk of its own): %w", d.Path, who, name, err)
		}
		held = append(held, f)
	}
	return held, nil
}

// Close releases what Lock returned (in this process).
func Close(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// holder names who holds the flock on f: the guest whose process it is
// (an ns monitor names its runtime dir <state>/guests/NAME/run in its
// arguments; QEMU runs in that directory), else the process.
func holder(f *os.File) string {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return "another process"
	}
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	lf, err := os.Open("/proc/locks")
	if err != nil {
		return "another process"
	}
	defer lf.Close()
	sc := bufio.NewScanner(lf)
	for sc.Scan() {
		// "1: FLOCK  ADVISORY  WRITE 12345 08:01:123456 0 EOF"
		fl := strings.Fields(sc.Text())
		if len(fl) < 6 || fl[1] != "FLOCK" || fl[5] != id {
			continue
		}
		pid, err := strconv.Atoi(fl[4])
		if err != nil {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + fl[4] + "/cmdline")
		args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
		if len(args) == 2 && args[0] == "tinyfarm-ns-monitor" {
			return fmt.Sprintf("running guest %s (monitor pid %d, %s)", filepath.Base(filepath.Dir(args[1])), pid, filepath.Dir(args[1]))
		}
		if cwd, err := os.Readlink("/proc/" + fl[4] + "/cwd"); err == nil && filepath.Base(cwd) == "run" && filepath.Base(filepath.Dir(filepath.Dir(cwd))) == "guests" {
			return fmt.Sprintf("running guest %s (pid %d, %s)", filepath.Base(filepath.Dir(cwd)), pid, filepath.Dir(cwd))
		}
		return fmt.Sprintf("process %d (%s)", pid, args[0])
	}
	return "another process"
}
