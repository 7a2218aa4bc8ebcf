package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// sysConn must behave as the net.Conn it wraps: the fast path and the
// backend pool read and write through it.

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func TestSysConnReadWrite(t *testing.T) {
	c, s := tcpPair(t)
	sc := newSysConn(c)
	if rawSyscalls && sc.rc == nil {
		t.Fatal("a TCP connection gets no RawConn: the raw calls are not used")
	}
	// A write larger than the socket buffers waits for the reader
	// (EAGAIN, then the poller) and still writes everything.
	want := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		n, err := sc.Write(want)
		if err == nil && n != len(want) {
			err = io.ErrShortWrite
		}
		done <- err
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes written differ from the bytes read")
	}
	// A read waits for data, then returns what is there.
	go func() { time.Sleep(20 * time.Millisecond); s.Write([]byte("hello")) }()
	buf := make([]byte, 64)
	n, err := sc.Read(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read = %q, %v; want hello", buf[:n], err)
	}
	if n, err := sc.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read = %d, %v", n, err)
	}
	// The peer's close is io.EOF, as net.Conn reports it.
	s.Close()
	if n, err := sc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after close = %d, %v; want 0, EOF", n, err)
	}
}

func TestSysConnDeadlineAndClose(t *testing.T) {
	c, _ := tcpPair(t)
	sc := newSysConn(c)
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	_, err := sc.Read(make([]byte, 8))
	if !isTimeout(err) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past deadline: %v; want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	// A Close from another goroutine ends a waiting read.
	go func() { time.Sleep(20 * time.Millisecond); c.Close() }()
	if _, err := sc.Read(make([]byte, 8)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed connection: %v; want net.ErrClosed", err)
	}
	if _, err := sc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed connection: %v; want net.ErrClosed", err)
	}
}

func TestSysConnReset(t *testing.T) {
	c, s := tcpPair(t)
	sc := newSysConn(c)
	s.SetLinger(0) // close with RST
	s.Close()
	time.Sleep(20 * time.Millisecond)
	_, err := sc.Read(make([]byte, 8))
	var oe *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read after a reset: %v; want a read *net.OpError wrapping ECONNRESET", err)
	}
	// retryable must see it as net.Conn's error.
	if !errors.Is(retryable(err, false), errRetry) {
		t.Fatalf("retryable(%v) is not errRetry", err)
	}
}

func TestRawPeek(t *testing.T) {
	c, s := tcpPair(t)
	p := newPeeker(c)
	if p.unsolicited() {
		t.Fatal("an idle open connection counts as unsolicited")
	}
	s.Write([]byte("x"))
	time.Sleep(20 * time.Millisecond)
	if !p.unsolicited() || p.gone() {
		t.Fatal("a waiting byte: want unsolicited, not gone")
	}
	buf := make([]byte, 1)
	if n, _ := c.Read(buf); n != 1 {
		t.Fatal("peek consumed the byte")
	}
	s.Close()
	time.Sleep(20 * time.Millisecond)
	if !p.unsolicited() || !p.gone() {
		t.Fatal("a closed peer: want unsolicited and gone")
	}
}
