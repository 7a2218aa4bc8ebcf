//go:build !unix

package proxy

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
)

func signalReload(pid int) error {
	return fmt.Errorf("reload nginx (pid %d): signals need a Unix host; use the nginx command instead", pid)
}

func inode(fi fs.FileInfo) uint64 { return 0 }

func detach(cmd *exec.Cmd) {}

func terminate(p *os.Process) error { return p.Kill() }

func fdLimit() int { return 0 }

// peeker cannot peek here; the pool's put-time check remains.
type peeker struct{}

func newPeeker(net.Conn) *peeker { return &peeker{} }

func (*peeker) unsolicited() bool { return false }

// gone cannot tell here: a wait on a backend ends by its own timeout.
func (*peeker) gone() bool { return false }

// tryLockFile opens path; no lock here (a second daemon fails to bind).
func tryLockFile(path string) (f *os.File, held bool, err error) {
	f, err = os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	return f, false, err
}
