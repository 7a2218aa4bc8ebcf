//go:build unix && !linux

package proxy

import "syscall"

// rawPeek reads up to len(b) bytes without consuming them and without
// waiting (the raw system call is Linux's: rawconn_linux.go).
func rawPeek(fd uintptr, b []byte) (int, error) {
	n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err
}
