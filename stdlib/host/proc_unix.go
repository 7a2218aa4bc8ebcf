//go:build unix

package host

import (
	"os/exec"
	"syscall"
)

// killGroupOnCancel puts cmd in its own process group, so a timeout ends
// the whole pipeline a shell started, not just the shell.
func killGroupOnCancel(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}

// signalCode is the shell's convention for a command killed by a signal.
func signalCode(ee *exec.ExitError) int {
	if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return -1
}
