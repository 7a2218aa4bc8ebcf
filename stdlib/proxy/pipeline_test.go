package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The request pipeline with bodies: every framing a client may send
// reaches the backend as a valid request, and the answers come back.

// TestPipelineBodyFramings: Content-Length, a small chunked body (sent on
// with a Content-Length), a large one (streamed chunked) and one with
// trailers (chunked, trailers passed on) all arrive whole.
func TestPipelineBodyFramings(t *testing.T) {
	be := newRawBackend(t, func(r *http.Request, _ net.Conn) string {
		// newRawBackend has read the body (and its trailers) by now.
		out := fmt.Sprintf("%s cl=%d te=%v trailer=%q expect=%q", r.Method, r.ContentLength, r.TransferEncoding, r.Trailer.Get("X-Sum"), r.Header.Get("Expect"))
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(out), out)
	})
	addr := startProxy(t, Options{}, "a.test", be.addr)
	big := strings.Repeat("y", 100<<10) // over maxBufferedBody: streamed
	chunk := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n", len(s), s) }
	for _, tc := range []struct{ name, req, want string }{
		{"content-length", "POST /a HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello", "POST cl=5 te=[] trailer=\"\""},
		{"empty POST", "POST /a HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n", "POST cl=0 te=[] trailer=\"\""},
		{"small chunked", "PUT /a HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("hel") + chunk("lo") + "0\r\n\r\n", "PUT cl=5 te=[] trailer=\"\""},
		{"large chunked", "PUT /a HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk(big) + chunk(big) + "0\r\n\r\n", "PUT cl=-1 te=[chunked] trailer=\"\""},
		{"trailers", "POST /a HTTP/1.1\r\nHost: a.test\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk("hello") + "0\r\nX-Sum: 42\r\n\r\n", "POST cl=-1 te=[chunked] trailer=\"42\""},
		{"expect", "POST /a HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello", "POST cl=5 te=[] trailer=\"\" expect=\"\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialFrom(t, "", addr)
			res, body, err := c.do(tc.req)
			if err == nil && res.StatusCode == http.StatusContinue {
				res, body, err = c.read(false)
			}
			if err != nil || res.StatusCode != 200 || !strings.HasPrefix(body, tc.want) {
				t.Errorf("got %v %q %v, want 200 %q", res, body, err, tc.want)
			}
		})
	}
	raw, _ := be.received()
	if n := strings.Count(raw, "y"); n != 2*len(big) {
		t.Errorf("%d bytes of the large bodies reached the backend, want %d", n, 2*len(big))
	}
}

// TestPipelineExpectContinue: a client that waits for 100 Continue before
// sending its body gets it (from the proxy, when the body is needed), and
// the final answer after.
func TestPipelineExpectContinue(t *testing.T) {
	be := newRawBackend(t, func(r *http.Request, _ net.Conn) string { return okResponse(r) })
	addr := startProxy(t, Options{}, "a.test", be.addr)
	c := dialFrom(t, "", addr)
	res, _, err := c.do("POST /up HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	if err != nil || res.StatusCode != http.StatusContinue {
		t.Fatalf("got %v %v, want 100 Continue", res, err)
	}
	io.WriteString(c, "hello")
	res, body, err := c.read(false)
	if err != nil || res.StatusCode != 200 || body != "/up" {
		t.Errorf("after the body: %v %q %v", res, body, err)
	}
}

// TestPipelineEarlyResponse: a backend that refuses an upload without
// reading it (413) is answered at once, not after the client has sent
// everything, and the connection it left is not reused.
func TestPipelineEarlyResponse(t *testing.T) {
	be := newRawBackend(t, func(r *http.Request, _ net.Conn) string { return okResponse(r) })
	refuse, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { refuse.Close() })
	go func() {
		for {
			c, err := refuse.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf) // the head, maybe some body
				io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 3\r\n\r\nbig")
				time.Sleep(2 * time.Second)
			}()
		}
	}()
	addr := startProxy(t, Options{}, "a.test", be.addr, "big.test", refuse.Addr().String())
	c := dialFrom(t, "", addr)
	// 10 MB announced, 1 KiB sent: the answer must not wait for the rest.
	res, body, err := c.do("POST /up HTTP/1.1\r\nHost: big.test\r\nContent-Length: 10000000\r\n\r\n" + strings.Repeat("z", 1024))
	if err != nil || res.StatusCode != http.StatusRequestEntityTooLarge || body != "big" {
		t.Fatalf("got %v %q %v, want 413", res, body, err)
	}
	// The proxy keeps working for others.
	if res, body := rawGet(t, addr, "GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n"); res.StatusCode != 200 || body != "/next" {
		t.Errorf("next request: %d %q", res.StatusCode, body)
	}
}
