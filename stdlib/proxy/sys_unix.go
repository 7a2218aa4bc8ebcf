//go:build unix

package proxy

import (
	"io/fs"
	"os"
	"os/exec"
	"syscall"
)

// signalReload asks nginx (by pid) to reload its configuration.
func signalReload(pid int) error { return syscall.Kill(pid, syscall.SIGHUP) }

// inode tells a replaced registry file from the old one even when size and
// mtime match.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// detach puts the daemon in its own session: it outlives tinyfarm and
// the terminal's Ctrl-C does not reach it.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }

func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
