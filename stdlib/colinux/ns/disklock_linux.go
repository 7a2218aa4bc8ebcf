package ns

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// lockDisks takes a lock on each disk image for as long as the monitor
// runs (the returned files hold it; the kernel drops it when the monitor
// ends, kill -9 included): exclusive for a disk the guest writes, shared
// for a read-only one. So no two guests on the host, of this farm or
// another state dir, mount one ext file system read-write at once. The
// monitor holds it, not the guest's init: the guest never gets a
// descriptor of its own image.
func lockDisks(s *monitorSpec) ([]*os.File, error) {
	var held []*os.File
	for _, d := range s.Disks {
		f, err := os.Open(d.Path) // O_CLOEXEC: not inherited by the guest
		if err != nil {
			closeAll(held)
			return nil, fmt.Errorf("disk %s: %w", d.Path, err)
		}
		how := unix.LOCK_EX
		if d.ReadOnly {
			how = unix.LOCK_SH
		}
		if err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB); err != nil {
			who := diskHolder(f)
			f.Close()
			closeAll(held)
			return nil, fmt.Errorf("disk %s is in use by %s: one disk serves one guest (stop that one first, or give guest %s a disk of its own): %w", d.Path, who, s.Name, err)
		}
		held = append(held, f)
	}
	return held, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// diskHolder names who holds the flock on f: the guest whose monitor it
// is (its runtime dir is <state>/guests/NAME/run), else the process.
func diskHolder(f *os.File) string {
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
		return fmt.Sprintf("process %d", pid)
	}
	return "another process"
}
