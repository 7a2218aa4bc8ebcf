//go:build !linux

package proxy

// rawSyscalls is false: sysConn uses net.Conn's Read and Write.
const rawSyscalls = false

func (r *sysConn) read(fd uintptr) bool  { return true }
func (r *sysConn) write(fd uintptr) bool { return true }
