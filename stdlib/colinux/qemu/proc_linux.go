//go:build linux

package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

const supported = true

// detach puts QEMU in its own session, so it outlives tinyfarm and does not
// get the terminal's signals (Ctrl-C).
func detach(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
}

// procAlive tells whether pid is a live (not zombie) QEMU process started
// for this guest: its command line must name our pid file, which guards
// against the PID having been reused by another process.
func procAlive(pid int, pidfile string) bool {
	if pid <= 0 {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return false
	}
	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte("\x00-pidfile\x00"+pidfile+"\x00"))
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// procExiting tells whether pid is a process in the middle of exiting,
// which procAlive already counts as gone but which still holds its
// descriptors, and the disk locks QEMU inherited with them: either its
// memory is released (so /proc/PID/cmdline reads empty) but its files are
// not yet, or its main thread is a zombie while other threads (QEMU's vCPU
// and I/O threads, which share the descriptor table) are still dying.
// Tearing down a guest takes a while on a loaded host, and a restart in
// that window would find the disk locked.
func procExiting(pid int) bool {
	if pid <= 0 {
		return false
	}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	if st := stat[i+2]; st == 'Z' || st == 'X' {
		tasks, err := os.ReadDir(dir + "/task")
		return err == nil && len(tasks) > 1
	}
	cmdline, err := os.ReadFile(dir + "/cmdline")
	return err == nil && len(cmdline) == 0
}
