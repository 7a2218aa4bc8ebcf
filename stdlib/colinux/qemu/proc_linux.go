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
