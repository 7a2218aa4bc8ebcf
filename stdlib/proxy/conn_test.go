package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Edge cases of request parsing and connection handling on the public
// port (net/http's server, with the proxy's rules on top).

// startConnServer runs an embedded proxy (startProxy) with opts
// routing host to a named backend, and returns the proxy's address.
func startConnServer(t *testing.T, opts Options, host string) (string, *namedBackend) {
	t.Helper()
	be := newNamedBackend(t, "A")
	return startProxy(t, opts, host, hostPort(be.Server)), be
}

// rawExchange writes req on a fresh connection and reads n responses.
func rawExchange(t *testing.T, addr, req string, n int) ([]*http.Response, []string, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var (
		rs     []*http.Response
		bodies []string
	)
	for i := 0; i < n; i++ {
		method := "GET"
		if strings.HasPrefix(req, "HEAD") {
			method = "HEAD"
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		resp.Body.Close()
		rs = append(rs, resp)
		bodies = append(bodies, string(b))
	}
	return rs, bodies, c, br
}

func TestRequestEdgeCases(t *testing.T) {
	addr, _ := startConnServer(t, Options{}, "a.test")
	cases := []struct {
		name, req string
		code      int
		body      string // substring, if set
	}{
		{"plain", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", 200, "backend=A host=a.test xff=127.0.0.1 xfproto=http xfhost=a.test"},
		{"host with port", "GET / HTTP/1.1\r\nHost: A.Test:8080\r\n\r\n", 200, "host=A.Test:8080 xff=127.0.0.1 xfproto=http xfhost=A.Test:8080"},
		{"host trailing dot", "GET / HTTP/1.1\r\nHost: a.test.\r\n\r\n", 200, "backend=A"},
		{"spoofed forwarded headers", "GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n\r\n", 200, "xff=127.0.0.1 xfproto=http xfhost=a.test"},
		{"absolute-form URI", "GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", 200, "backend=A host=a.test"},
		{"unknown host", "GET / HTTP/1.1\r\nHost: nope.test\r\n\r\n", 404, `"nope.test"`},
		{"no Host, HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", 400, ""},
		{"no Host, HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", 404, ""},
		{"HTTP/1.0 with Host", "GET / HTTP/1.0\r\nHost: a.test\r\n\r\n", 200, "backend=A"},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", 400, ""},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n", 400, ""},
		{"garbage request line", "HELLO\r\n\r\n", 400, ""},
		{"extra request line field", "GET / HTTP/1.1 x\r\nHost: a.test\r\n\r\n", 400, ""},
		{"bad version", "GET / HTTP/9.9\r\nHost: a.test\r\n\r\n", 505, ""},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a.test\r\n\r\n", 400, ""},
		{"control byte in value", "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\x01b\r\n\r\n", 400, ""},
		{"obsolete line folding", "GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\r\n b\r\n\r\n", 200, "backend=A"},
		{"bare LF", "GET / HTTP/1.1\nHost: a.test\n\n", 200, "backend=A"},
		{"CONNECT", "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n", 405, ""},
		{"body", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\nabc", 200, "backend=A"},
		{"empty body", "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n", 200, "backend=A"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, bodies, _, _ := rawExchange(t, addr, tc.req, 1)
			if rs[0].StatusCode != tc.code || !strings.Contains(bodies[0], tc.body) {
				t.Errorf("got %d %q, want %d containing %q", rs[0].StatusCode, bodies[0], tc.code, tc.body)
			}
		})
	}
}

func TestPipelinedRequestsAndClose(t *testing.T) {
	addr, be := startConnServer(t, Options{}, "a.test")
	// Three pipelined requests in one write, the last one closing: three
	// responses in order, then the connection is closed.
	req := "GET /1 HTTP/1.1\r\nHost: a.test\r\n\r\n" +
		"HEAD /2 HTTP/1.1\r\nHost: a.test\r\n\r\n" +
		"GET /3 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, req)
	br := bufio.NewReader(c)
	for i, m := range []string{"GET", "HEAD", "GET"} {
		resp, err := http.ReadResponse(br, &http.Request{Method: m})
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || m == "GET" && !strings.HasPrefix(string(b), "backend=A") || m == "HEAD" && len(b) != 0 {
			t.Errorf("response %d: %d %q", i, resp.StatusCode, b)
		}
		if i == 2 && !resp.Close {
			t.Errorf("last response lacks Connection: close")
		}
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close: read %v %v, want EOF", n, err)
	}
	if got := be.hits.Load(); got != 3 {
		t.Errorf("backend saw %d requests, want 3", got)
	}

	// A pipelined body-less request after one with a body (handed off).
	rs, bodies, _, _ := rawExchange(t, addr, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi"+
		"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", 2)
	for i := range rs {
		if rs[i].StatusCode != 200 || !strings.HasPrefix(bodies[i], "backend=A") {
			t.Errorf("pipelined after body, response %d: %d %q", i, rs[i].StatusCode, bodies[i])
		}
	}
}

func TestHopByHopHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	beAddr := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		io.WriteString(w, "ok")
	}))
	tg, _ := routed(t, "h.test", beAddr)
	for len(got) > 0 {
		<-got
	}
	rs, bodies, _, _ := rawExchange(t, tg.addr, "GET / HTTP/1.1\r\nHost: h.test\r\nConnection: keep-alive, X-Private\r\n"+
		"X-Private: 1\r\nKeep-Alive: 300\r\nProxy-Authorization: x\r\nTE: trailers, gzip\r\nX-Kept: yes\r\n\r\n", 1)
	if rs[0].StatusCode != 200 || bodies[0] != "ok" {
		t.Fatalf("got %d %q", rs[0].StatusCode, bodies[0])
	}
	h := <-got
	for _, k := range []string{"X-Private", "Keep-Alive", "Proxy-Authorization", "Connection"} {
		if _, ok := h[k]; ok {
			t.Errorf("backend got hop-by-hop header %s", k)
		}
	}
	if h.Get("X-Kept") != "yes" || h.Get("Te") != "trailers" {
		t.Errorf("backend headers: X-Kept %q, Te %q", h.Get("X-Kept"), h.Get("Te"))
	}
	for _, k := range []string{"X-Secret", "Keep-Alive"} {
		if _, ok := rs[0].Header[k]; ok {
			t.Errorf("client got hop-by-hop header %s", k)
		}
	}
}

func TestHeaderLimits(t *testing.T) {
	addr, _ := startConnServer(t, Options{MaxHeaderBytes: 4 << 10, ReadHeaderTimeout: 300 * time.Millisecond}, "a.test")
	// Oversized headers, in one long line and in many lines: 431.
	for _, big := range []string{
		"X-Big: " + strings.Repeat("x", 20<<10) + "\r\n",
		strings.Repeat("X-Many: "+strings.Repeat("y", 100)+"\r\n", 200),
	} {
		rs, _, _, _ := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a.test\r\n"+big+"\r\n", 1)
		if rs[0].StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("oversized head: got %d, want 431", rs[0].StatusCode)
		}
	}
	// Headers just under the limit are served.
	rs, _, _, _ := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: "+strings.Repeat("x", 3<<10)+"\r\n\r\n", 1)
	if rs[0].StatusCode != 200 {
		t.Errorf("3 KiB head: got %d", rs[0].StatusCode)
	}
	// Slowloris: a head that never ends is cut off after ReadHeaderTimeout.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; ; i++ {
		time.Sleep(50 * time.Millisecond)
		if _, err := fmt.Fprintf(c, "X-%d: y\r\n", i); err != nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("slow head still accepted after 5s")
		}
	}
	if _, err := io.ReadAll(c); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Errorf("slow head: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("slow head cut off after %v, want about 300ms", d)
	}
}

// TestBackendOddities: a dead backend is 502; a status line
// without a reason phrase and a close-delimited body are re-framed for
// the keep-alive client.
func TestBackendOddities(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200\r\nX-Odd: 1\r\n\r\nuntil close")
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	tg, _ := routed(t, "odd.test", ln.Addr().String())
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	mustVHost(t, tg.reg, "dead.test", deadAddr)
	eventually(t, "dead route", func() error {
		if code := rawStatus(t, tg.addr, "GET / HTTP/1.1\r\nHost: dead.test\r\n\r\n"); code != http.StatusBadGateway {
			return fmt.Errorf("status %d", code)
		}
		return nil
	})
	rs, bodies, _, _ := rawExchange(t, tg.addr, "GET / HTTP/1.1\r\nHost: odd.test\r\n\r\nGET / HTTP/1.1\r\nHost: odd.test\r\n\r\n", 2)
	for i, r := range rs {
		if r.StatusCode != 200 || r.Header.Get("X-Odd") != "1" || bodies[i] != "until close" || r.Close {
			t.Errorf("response %d: %d %v %q close=%v", i, r.StatusCode, r.Header, bodies[i], r.Close)
		}
	}
}
