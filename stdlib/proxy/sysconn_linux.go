package proxy

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

const rawSyscalls = true

// maxRW caps one read or write as internal/poll does on a stream (1 GiB).
const maxRW = 1 << 30

// read is the raw read: false asks RawConn to wait until the socket is
// readable and call it again.
func (r *sysConn) read(fd uintptr) bool {
	op := &r.r
	p := op.p
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	for {
		// RawSyscall: see sysConn. p is on the heap (op holds it),
		// which the GC does not move.
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			if n == 0 {
				op.err = io.EOF
			}
			op.n = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.err = os.NewSyscallError("read", e)
		return true
	}
}

// write is the raw write: it writes until p is written, and returns false
// (wait until writable) when the socket's send buffer is full.
func (r *sysConn) write(fd uintptr) bool {
	op := &r.w
	for op.n < len(op.p) {
		p := op.p[op.n:]
		if len(p) > maxRW {
			p = p[:maxRW]
		}
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		switch e {
		case 0:
			op.n += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.err = os.NewSyscallError("write", e)
		return true
	}
	return true
}

// rawPeek reads up to len(b) bytes without consuming them and without
// waiting (recvfrom with MSG_PEEK|MSG_DONTWAIT), as a raw system call:
// the pool checks every backend connection it reuses (peeker).
func rawPeek(fd uintptr, b []byte) (int, error) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(n), nil
	}
}
