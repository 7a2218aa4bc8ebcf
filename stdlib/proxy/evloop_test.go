//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// startLoopServer runs an embedded proxy with event loops (GOMAXPROCS
// of them) and returns it, its address and its registry.
func startLoopServer(t *testing.T, procs int) (*Server, string, *Registry, *syncBuffer) {
	t.Helper()
	if procs > 0 {
		old := runtime.GOMAXPROCS(procs)
		t.Cleanup(func() { runtime.GOMAXPROCS(old) })
	}
	t.Setenv("TINYFARM_PROXY_LOOP", "")
	reg := NewRegistry(filepath.Join(t.TempDir(), "state", "proxy"), StaticResolver{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &syncBuffer{}
	srv := serveOn(t, ln, reg, Options{AccessLog: logBuf, PollInterval: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	eventually(t, "event loops running", func() error {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if srv.loops == nil {
			return fmt.Errorf("no event loops")
		}
		return nil
	})
	return srv, ln.Addr().String(), reg, logBuf
}

// exchange sends raw requests on one connection and reads a response for
// each.
func exchange(t *testing.T, addr string, reqs ...string) []*http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	var out []*http.Response
	for _, r := range reqs {
		if _, err := io.WriteString(c, r); err != nil {
			t.Fatal(err)
		}
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("after %d responses: %v", len(out), err)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", len(out), err)
		}
		res.Body = io.NopCloser(bytes.NewReader(body))
		out = append(out, res)
	}
	return out
}

func bodyOf(res *http.Response) string {
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// A response the loop does not pass on itself (chunked, after a 103) is
// finished by the goroutine path from the bytes the loop read, on the
// same sockets: the backend sees each request once, and the client's
// connection serves its next requests.
func TestLoopHandsOverAResponseMidway(t *testing.T) {
	_, addr, reg, logBuf := startLoopServer(t, 2)
	var hits atomic.Int64
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/chunked":
			io.WriteString(w, "part one, ")
			w.(http.Flusher).Flush() // no Content-Length: chunked
			io.WriteString(w, "part two")
		case "/early":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "after hints")
		default:
			io.WriteString(w, "plain")
		}
	}))
	t.Cleanup(be.Close)
	mustVHost(t, reg, "a.test", hostPort(be))
	waitStatus(t, newClient(t), addr, "a.test", 200)
	hits.Store(0)
	req := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: a.test\r\n\r\n" }
	res := exchange(t, addr, req("/plain"), req("/chunked"), req("/plain"), req("/early"), req("/chunked"))
	want := []string{"plain", "part one, part two", "plain", "after hints", "part one, part two"}
	for i, r := range res {
		if got := bodyOf(r); r.StatusCode != 200 || got != want[i] {
			t.Errorf("response %d: %d %q, want 200 %q", i, r.StatusCode, got, want[i])
		}
	}
	if n := hits.Load(); n != int64(len(want)) {
		t.Errorf("backend saw %d requests for %d sent: a request went twice (or not at all)", n, len(want))
	}
	eventually(t, "access log lines", func() error {
		srvFlush(t, logBuf)
		if n := strings.Count(logBuf.String(), `"a.test"`); n < len(want) {
			return fmt.Errorf("%d lines for a.test", n)
		}
		return nil
	})
}

// srvFlush is a no-op the access log check waits on (the proxy flushes
// its log every second).
func srvFlush(*testing.T, *syncBuffer) {}

// Connections are spread over the loops: the loop epoll woke for the
// listener is not left to take a whole burst.
func TestLoopsShareConnections(t *testing.T) {
	srv, addr, reg, _ := startLoopServer(t, 2)
	be := newNamedBackend(t, "A")
	mustVHost(t, reg, "a.test", hostPort(be.Server))
	waitStatus(t, newClient(t), addr, "a.test", 200)
	var conns []net.Conn
	for range 16 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		t.Cleanup(func() { c.Close() })
	}
	for _, c := range conns {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != 200 {
			t.Fatalf("request: %v %v", res, err)
		}
	}
	srv.mu.Lock()
	g := srv.loops
	srv.mu.Unlock()
	if len(g.loops) != 2 {
		t.Fatalf("%d loops with GOMAXPROCS 2", len(g.loops))
	}
	var loads []int32
	for _, l := range g.loops {
		loads = append(loads, l.load.Load())
	}
	// 16 open here, and at most a few of waitStatus's client still open.
	for _, n := range loads {
		if n < 7 {
			t.Errorf("connections per loop %v: not shared", loads)
			break
		}
	}
}

// A large body reaches a client that reads slowly intact: the loop
// keeps what the client's socket does not take and stops reading the
// backend until it does.
func TestLoopLargeBodySlowReader(t *testing.T) {
	_, addr, reg, _ := startLoopServer(t, 2)
	body := make([]byte, 24<<20) // more than the sockets' buffers hold
	for i := range body {
		body[i] = byte(i * 7 / 3)
	}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body)
	}))
	t.Cleanup(be.Close)
	mustVHost(t, reg, "big.test", hostPort(be))
	waitStatus(t, newClient(t), addr, "big.test", 200)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	for round := range 2 {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: big.test\r\n\r\n")
		time.Sleep(200 * time.Millisecond) // the proxy fills the socket and waits
		br := bufio.NewReaderSize(c, 1024)
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		// Slowly at first: the proxy finds the socket full again and again.
		n, err := io.CopyN(h, res.Body, 64<<10)
		for i := 0; i < 10 && err == nil; i++ {
			time.Sleep(20 * time.Millisecond)
			var m int64
			m, err = io.CopyN(h, res.Body, 64<<10)
			n += m
		}
		if err == nil {
			var m int64
			m, err = io.Copy(h, res.Body)
			n += m
		}
		if err != nil || n != int64(len(body)) || !bytes.Equal(h.Sum(nil), sha256Of(body)) {
			t.Fatalf("round %d: %d bytes (want %d), err %v, digest equal %v", round, n, len(body), err, bytes.Equal(h.Sum(nil), sha256Of(body)))
		}
		if br.Buffered() > 0 {
			t.Fatalf("round %d: %d bytes after the body", round, br.Buffered())
		}
	}
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// A client that leaves while its request waits for the backend is seen
// at once (epoll reports the close): the backend's request is cancelled
// (its connection closed) and the access log says 499.
func TestLoopClientLeavesWhileWaiting(t *testing.T) {
	_, addr, reg, logBuf := startLoopServer(t, 2)
	cancelled := make(chan struct{})
	started := make(chan struct{}, 1)
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wait" {
			return
		}
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(30 * time.Second):
		}
	}))
	t.Cleanup(be.Close)
	mustVHost(t, reg, "w.test", hostPort(be))
	waitStatus(t, newClient(t), addr, "w.test", 200)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /wait HTTP/1.1\r\nHost: w.test\r\n\r\n")
	<-started
	c.Close()
	select {
	case <-cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend's request was not cancelled when its client left")
	}
	eventually(t, "499 in the access log", func() error {
		if !strings.Contains(logBuf.String(), `"GET /wait HTTP/1.1" 499 `) {
			return fmt.Errorf("no 499 line:\n%s", logBuf.String())
		}
		return nil
	})
}
