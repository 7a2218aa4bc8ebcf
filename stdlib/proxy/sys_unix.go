//go:build unix

package proxy

import (
	"io/fs"
	"net"
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

// fdLimit is the process's file-descriptor limit (RLIMIT_NOFILE), 0 if
// unknown.
func fdLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}

// peeker tells whether an idle backend connection has bytes waiting or
// was closed by the backend: either way it must not carry another
// request. It peeks without blocking and without consuming. Made once per
// connection, so that a check allocates nothing.
type peeker struct {
	rc  syscall.RawConn // nil: cannot peek
	fn  func(fd uintptr)
	buf [1]byte
	n   int
	err error
}

func newPeeker(c net.Conn) *peeker {
	p := &peeker{}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			p.rc = rc
		}
	}
	p.fn = p.peek
	return p
}

func (p *peeker) peek(fd uintptr) {
	p.n, p.err = rawPeek(fd, p.buf[:])
}

// unsolicited reports whether the connection has bytes waiting or was
// closed (or cannot be checked: then it is not reused).
func (p *peeker) unsolicited() bool {
	if p.rc == nil {
		return true
	}
	// Control, not Read: a read deadline the connection still has from
	// its last exchange must not count.
	if err := p.rc.Control(p.fn); err != nil {
		return true
	}
	if p.err == syscall.EAGAIN || p.err == syscall.EWOULDBLOCK || p.err == syscall.EINTR {
		return false
	}
	return p.err != nil || p.n >= 0 // data, EOF (n == 0) or an error
}

// gone reports whether the peer has closed the connection (EOF or an
// error); bytes waiting (a pipelined request) do not count.
func (p *peeker) gone() bool {
	if p.rc == nil {
		return false
	}
	if err := p.rc.Control(p.fn); err != nil {
		return true
	}
	if p.err == syscall.EAGAIN || p.err == syscall.EWOULDBLOCK || p.err == syscall.EINTR {
		return false
	}
	return p.err != nil || p.n == 0
}

// tryLockFile opens path and takes an exclusive flock on it without
// waiting: held is true when another open file (a running daemon's)
// holds it.
func tryLockFile(path string) (f *os.File, held bool, err error) {
	f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, true, nil
		}
		return nil, false, err
	}
	return f, false, nil
}
