//go:build unix

package cluster

import (
	"os"
	"os/exec"
	"syscall"
)

// detach puts the daemon in its own session: it outlives the command that
// started it, and the terminal's Ctrl-C does not reach it.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
