package proxy

import (
	"io"
	"net"
	"syscall"
)

// sysConn reads and writes a TCP connection of the hot paths (a client
// on the fast path, a pooled backend connection) through its
// syscall.RawConn, with system calls that do not tell the Go scheduler
// they enter the kernel (rawconn_linux.go). The sockets are non-blocking,
// so a call never waits in the kernel: when there is nothing to read or
// no room to write, the goroutine parks on the runtime's poller as
// net.Conn's Read and Write do, and deadlines and Close work as they do
// there. What this saves (issue 21): net.Conn's calls mark the goroutine's
// P as in a system call, and the runtime's monitor thread (sysmon), which
// checks such Ps every 20 us, hands a P whose call it sees twice to
// another thread. At a proxy's rate of short socket calls that kept
// sysmon at its shortest sleep and moved Ps between threads: 8% of the
// proxy's CPU in sysmon's sleeps and thread wake-ups (perf, 64 keep-alive
// connections), none of which nginx's workers pay. With the raw calls
// sysmon takes 2%, and the proxy's CPU per request went from 24 us to
// nginx's 18-19 us (bench/proxyserve/profile.sh).
//
// One Read and one Write may run at the same time (as on a net.Conn);
// two Reads or two Writes may not.
type sysConn struct {
	c  net.Conn
	rc syscall.RawConn // nil: plain c.Read and c.Write
	r  rawOp
	w  rawOp
}

// rawOp is one direction's state: the closure is made once, so that a
// call allocates nothing.
type rawOp struct {
	fn  func(fd uintptr) bool
	p   []byte
	n   int
	err error
}

func newSysConn(c net.Conn) *sysConn {
	r := &sysConn{c: c}
	if _, ok := c.(*net.TCPConn); ok && rawSyscalls {
		if rc, err := c.(*net.TCPConn).SyscallConn(); err == nil {
			r.rc = rc
		}
	}
	r.r.fn = r.read
	r.w.fn = r.write
	return r
}

// Read reads as net.Conn's Read does.
func (r *sysConn) Read(p []byte) (int, error) {
	if r.rc == nil {
		return r.c.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	op := &r.r
	op.p, op.n, op.err = p, 0, nil
	err := r.rc.Read(op.fn)
	n := op.n
	if err == nil {
		err = op.err
	}
	op.p, op.err = nil, nil
	if err != nil && err != io.EOF {
		err = r.opError("read", err)
	}
	return n, err
}

// Write writes all of p, as net.Conn's Write does.
func (r *sysConn) Write(p []byte) (int, error) {
	if r.rc == nil {
		return r.c.Write(p)
	}
	op := &r.w
	op.p, op.n, op.err = p, 0, nil
	var err error
	if len(p) > 0 {
		err = r.rc.Write(op.fn)
	}
	n := op.n
	if err == nil {
		err = op.err
	}
	op.p, op.err = nil, nil
	if err != nil {
		err = r.opError("write", err)
	}
	return n, err
}

// opError wraps a failed call's error as net.Conn's calls do (RawConn's
// own errors, such as a deadline's, are already wrapped).
func (r *sysConn) opError(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: r.c.LocalAddr(), Addr: r.c.RemoteAddr(), Err: err}
}
