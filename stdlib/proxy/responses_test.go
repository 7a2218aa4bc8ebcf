package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// How responses come back through the request pipeline: streaming,
// bodiless responses, hop-by-hop headers, pooled connections the backend
// closed, clients that leave.

// routed starts an embedded proxy with host routed to backend and waits
// until a GET answers with a status other than 404.
func routed(t *testing.T, host, backend string) (*target, *http.Client) {
	t.Helper()
	tg := newTarget(t, "embedded")
	mustVHost(t, tg.reg, host, backend)
	cl := newClient(t)
	eventually(t, "route", func() error {
		code, _, err := get(cl, tg.addr, host)
		if err == nil && code == 404 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	return tg, cl
}

// TestStreamsChunkedWithTrailers: a chunked response reaches the client
// chunk by chunk (flushed, not buffered until the end), and its trailers
// arrive.
func TestStreamsChunkedWithTrailers(t *testing.T) {
	release := make(chan struct{})
	be := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			return
		}
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(20 * time.Second):
		}
		io.WriteString(w, "second\n")
		w.Header().Set("X-Sum", "42")
	}))
	tg, cl := routed(t, "s.test", be)
	req, _ := http.NewRequest("GET", "http://"+tg.addr+"/stream", nil)
	req.Host = "s.test"
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk: %q %v", line, err)
	}
	close(release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest: %q %v", rest, err)
	}
	if got := resp.Trailer.Get("X-Sum"); got != "42" {
		t.Errorf("trailer X-Sum = %q, want 42", got)
	}
}

// TestHeadNoBodyAndHopHeaders: HEAD keeps Content-Length without a
// body, 204/304 pass, hop-by-hop headers are dropped both ways.
func TestHeadNoBodyAndHopHeaders(t *testing.T) {
	be := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(204)
		case "/304":
			w.WriteHeader(304)
		case "/hop":
			w.Header().Set("Connection", "X-Private")
			w.Header().Set("X-Private", "drop me")
			w.Header().Set("Keep-Alive", "timeout=5")
			fmt.Fprintf(w, "secret=%q keepalive=%q te=%q q=%s", r.Header.Get("X-Secret"), r.Header.Get("Keep-Alive"), r.Header.Get("Te"), r.URL.RawQuery)
		default:
			w.Header().Set("Content-Length", "11")
			io.WriteString(w, "hello world")
		}
	}))
	tg, cl := routed(t, "h.test", be)
	do := func(method, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+tg.addr+path, nil)
		req.Host = "h.test"
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, body := do("HEAD", "/"); resp.StatusCode != 200 || resp.ContentLength != 11 || body != "" {
		t.Errorf("HEAD: %d length %d body %q", resp.StatusCode, resp.ContentLength, body)
	}
	for _, code := range []int{204, 304} {
		if resp, body := do("GET", fmt.Sprintf("/%d", code)); resp.StatusCode != code || body != "" {
			t.Errorf("GET /%d: %d %q", code, resp.StatusCode, body)
		}
	}
	resp, body := do("GET", "/hop?a=1&b=%20", "Connection", "X-Secret", "X-Secret", "1", "Te", "trailers, deflate")
	if want := `secret="" keepalive="" te="trailers" q=a=1&b=%20`; body != want {
		t.Errorf("backend saw %s, want %s", body, want)
	}
	if resp.Header.Get("X-Private") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop response headers passed: %v", resp.Header)
	}
}

// TestRetriesStaleConnections: a backend that closes every connection
// right after answering (without saying so) costs no failed request: a
// GET on a pooled connection the backend closed is retried.
func TestRetriesStaleConnections(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(5 * time.Millisecond) // the proxy pools it, then it dies
			}()
		}
	}()
	tg, cl := routed(t, "stale.test", ln.Addr().String())
	for i := 0; i < 20; i++ {
		time.Sleep(20 * time.Millisecond)
		code, body, err := get(cl, tg.addr, "stale.test")
		if err != nil || code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q %v", i, code, body, err)
		}
	}
	if conns.Load() < 20 {
		t.Errorf("backend saw %d connections for 20+ requests; expected one each", conns.Load())
	}
}

// TestClientGoneCancelsBackend: when the client hangs up while the
// backend is still thinking, the backend's request is cancelled.
func TestClientGoneCancelsBackend(t *testing.T) {
	cancelled := make(chan struct{})
	be := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			return
		}
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(30 * time.Second):
		}
	}))
	tg, cl := routed(t, "slow.test", be)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+tg.addr+"/slow", nil)
	req.Host = "slow.test"
	if resp, err := cl.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("slow request returned %d", resp.StatusCode)
	}
	select {
	case <-cancelled:
	case <-time.After(20 * time.Second):
		t.Fatal("the backend's request was not cancelled after the client left")
	}
}

// BenchmarkEmbeddedGET: GETs through the embedded proxy to a tiny backend,
// on 8 keep-alive connections (client, proxy and backend in this process;
// use -memprofile to see the proxy's allocations per request).
func BenchmarkEmbeddedGET(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }))
	defer be.Close()
	dir := b.TempDir()
	reg := NewRegistry(dir, nil)
	if _, err := reg.VHost(context.Background(), VHostSpec{Host: "b.test", To: be.Listener.Addr().String()}, ChangeOptions{}); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv, err := NewServer(Options{RoutesFile: reg.Path(), AccessLog: io.Discard})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	tr := &http.Transport{MaxIdleConnsPerHost: 8, DisableCompression: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	addr := ln.Addr().String()
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			code, _, err := get(cl, addr, "b.test")
			if err != nil || code != 200 {
				b.Errorf("GET: %d %v", code, err)
				return
			}
		}
	})
}

// TestNoContentTypeSniffed: a backend response without Content-Type
// reaches the client without one, on the fast path (a GET) and on
// net/http's path (a POST, a head too large for the fast path), as
// nginx passes it. net/http's server would otherwise sniff one from the
// body ("text/html; charset=utf-8" for this one).
func TestNoContentTypeSniffed(t *testing.T) {
	be := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = nil // the backend sends none
		io.WriteString(w, "<!doctype html><html><body>a page?</body></html>")
	}))
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			tg := newTarget(t, kind)
			mustVHost(t, tg.reg, "ct.test", be)
			tg.apply(t)
			cl := newClient(t)
			waitStatus(t, cl, tg.addr, "ct.test", 200)
			for _, c := range []struct {
				name, method, body string
				hdr                string
			}{
				{"GET", "GET", "", ""},
				{"POST", "POST", "a=1", ""},
				{"GET with a large head", "GET", "", strings.Repeat("x", 6000)},
			} {
				var body io.Reader
				if c.body != "" {
					body = strings.NewReader(c.body)
				}
				req, _ := http.NewRequest(c.method, "http://"+tg.addr+"/", body)
				req.Host = "ct.test"
				if c.hdr != "" {
					req.Header.Set("X-Big", c.hdr)
				}
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(b), "a page?") {
					t.Fatalf("%s: %d %q", c.name, resp.StatusCode, b)
				}
				if ct, ok := resp.Header["Content-Type"]; ok {
					t.Errorf("%s: Content-Type %q added; the backend sent none", c.name, ct)
				}
			}
		})
	}
}
