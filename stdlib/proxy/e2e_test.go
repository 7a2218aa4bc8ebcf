package proxy

import (
	"bufio"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The acceptance tests run every scenario through the embedded proxy and
// through a real nginx configured by ApplyNginx.

func TestRouting(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			tg := newTarget(t, kind)
			a, b, c := newNamedBackend(t, "A"), newNamedBackend(t, "B"), newNamedBackend(t, "C")
			mustVHost(t, tg.reg, "a.test", hostPort(a.Server))
			mustVHost(t, tg.reg, "*.b.test", hostPort(b.Server))
			mustVHost(t, tg.reg, "exact.b.test", hostPort(c.Server))
			tg.apply(t)
			cl := newClient(t)
			// The routes file was written three times; wait for the last.
			eventually(t, "routes loaded", func() error {
				code, body, err := get(cl, tg.addr, "exact.b.test")
				if err == nil && (code != 200 || !strings.HasPrefix(body, "backend=C ")) {
					err = fmt.Errorf("status %d %q", code, body)
				}
				return err
			})
			cases := []struct{ host, want string }{
				{"a.test", "backend=A"},
				{"A.Test", "backend=A"},
				{"www.b.test", "backend=B"},
				{"deep.www.b.test", "backend=B"},
				{"exact.b.test", "backend=C"}, // exact beats wildcard
			}
			for _, tc := range cases {
				code, body, err := get(cl, tg.addr, tc.host)
				if err != nil || code != 200 || !strings.HasPrefix(body, tc.want+" ") {
					t.Errorf("Host %s: got %d %q %v, want 200 %s", tc.host, code, body, err, tc.want)
				}
			}
			// Forwarded headers; a client-supplied X-Forwarded-For is not trusted.
			_, body, _ := get(cl, tg.addr, "a.test", "X-Forwarded-For", "6.6.6.6")
			if want := "backend=A host=a.test xff=127.0.0.1 xfproto=http xfhost=a.test"; body != want {
				t.Errorf("forwarded headers: got %q, want %q", body, want)
			}
			before := a.hits.Load() + b.hits.Load() + c.hits.Load()
			for _, host := range []string{"unknown.test", "b.test", "a.test.evil", "127.0.0.1"} {
				code, _, err := get(cl, tg.addr, host)
				if err != nil || code != http.StatusNotFound {
					t.Errorf("unknown Host %s: got %d %v, want 404", host, code, err)
				}
			}
			// A proxy-style absolute URI for an unknown host is not forwarded.
			if code := rawStatus(t, tg.addr, "GET http://unknown.test/ HTTP/1.1\r\nHost: unknown.test\r\n\r\n"); code != 404 {
				t.Errorf("absolute URI to unknown host: got %d, want 404", code)
			}
			if after := a.hits.Load() + b.hits.Load() + c.hits.Load(); after != before {
				t.Errorf("unknown hosts reached a backend (%d requests)", after-before)
			}
		})
	}
}

// rawStatus sends a raw request and returns the response status code.
func rawStatus(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestBackendDownThenUp(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			tg := newTarget(t, kind)
			a := newNamedBackend(t, "A")
			deadAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
			mustVHost(t, tg.reg, "a.test", hostPort(a.Server))
			mustVHost(t, tg.reg, "dead.test", deadAddr)
			tg.apply(t)
			cl := newClient(t)
			eventually(t, "dead.test gives 502", func() error {
				if code, _, err := get(cl, tg.addr, "dead.test"); err != nil || code != 502 {
					return fmt.Errorf("got %d %v", code, err)
				}
				return nil
			})
			if code, body, err := get(cl, tg.addr, "a.test"); code != 200 || !strings.HasPrefix(body, "backend=A") {
				t.Errorf("a.test while dead.test is down: %d %q %v", code, body, err)
			}
			ln, err := net.Listen("tcp", deadAddr)
			if err != nil {
				t.Fatalf("reuse port: %v", err)
			}
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "alive") })}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })
			eventually(t, "dead.test up again", func() error {
				code, body, err := get(cl, tg.addr, "dead.test")
				if err == nil && (code != 200 || body != "alive") {
					err = fmt.Errorf("got %d %q", code, body)
				}
				return err
			})
		})
	}
}

func TestWebSocketEcho(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			tg := newTarget(t, kind)
			ws := wsEchoBackend(t)
			mustVHost(t, tg.reg, "ws.test", hostPort(ws))
			tg.apply(t)
			cl := newClient(t)
			waitStatus(t, cl, tg.addr, "ws.test", 400)
			c, err := net.Dial("tcp", tg.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			key := "dGhlIHNhbXBsZSBub25jZQ=="
			fmt.Fprintf(c, "GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) {
				t.Fatalf("handshake: %d %v", resp.StatusCode, resp.Header)
			}
			for i := 0; i < 3; i++ {
				msg := fmt.Sprintf("hello %d", i)
				if err := wsWrite(c, 1, []byte(msg), true); err != nil {
					t.Fatal(err)
				}
				op, p, err := wsRead(br)
				if err != nil || op != 1 || string(p) != msg {
					t.Fatalf("echo %d: op %d %q %v", i, op, p, err)
				}
			}
			wsWrite(c, 8, nil, true)
		})
	}
}

// TestLargeStreams moves 100 MB each way. For the in-process proxy the heap
// must stay far below the transfer size: bodies are streamed, not buffered.
func TestLargeStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("100 MB transfers; skipped with -short")
	}
	const size = 100 << 20
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			tg := newTarget(t, kind)
			be := newBigBackend(t, size)
			mustVHost(t, tg.reg, "big.test", hostPort(be))
			tg.apply(t)
			cl := newClient(t)
			waitStatus(t, cl, tg.addr, "big.test", 204)
			var peak atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			if kind == "embedded" {
				runtime.GC()
				wg.Add(1)
				go func() {
					defer wg.Done()
					var ms runtime.MemStats
					for {
						runtime.ReadMemStats(&ms)
						if ms.HeapInuse > peak.Load() {
							peak.Store(ms.HeapInuse)
						}
						select {
						case <-stop:
							return
						case <-time.After(5 * time.Millisecond):
						}
					}
				}()
			}

			// Upload: the backend answers with the byte count and CRC it read.
			src := &pattern{}
			h := crc32.NewIEEE()
			req, _ := http.NewRequest("PUT", "http://"+tg.addr+"/upload", io.TeeReader(io.LimitReader(src, size), h))
			req.Host = "big.test"
			resp, err := cl.Do(req)
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%d %08x", size, h.Sum32()); resp.StatusCode != 200 || string(got) != want {
				t.Errorf("upload: got %d %q, want 200 %q", resp.StatusCode, got, want)
			}

			// Download.
			req, _ = http.NewRequest("GET", "http://"+tg.addr+"/download", nil)
			req.Host = "big.test"
			resp, err = cl.Do(req)
			if err != nil {
				t.Fatalf("download: %v", err)
			}
			h.Reset()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			wh := crc32.NewIEEE()
			io.Copy(wh, io.LimitReader(&pattern{}, size))
			if err != nil || n != size || h.Sum32() != wh.Sum32() {
				t.Errorf("download: %d bytes, crc %08x, err %v; want %d bytes, crc %08x", n, h.Sum32(), err, size, wh.Sum32())
			}
			close(stop)
			wg.Wait()
			if kind == "embedded" {
				t.Logf("peak HeapInuse during 2 x 100 MB: %.1f MiB", float64(peak.Load())/(1<<20))
				if peak.Load() > 32<<20 {
					t.Errorf("peak HeapInuse %.1f MiB: the proxy buffers bodies (limit 32 MiB for 100 MB transfers)", float64(peak.Load())/(1<<20))
				}
			}
		})
	}
}

func newBigBackend(t *testing.T, size int64) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			h := crc32.NewIEEE()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %08x", n, h.Sum32())
		case "/download":
			w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
			io.Copy(w, io.LimitReader(&pattern{}, size))
		default:
			w.WriteHeader(204)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestRouteChurnUnderLoad adds and removes a route repeatedly while clients
// hammer another one: the unaffected route sees no failed request. Also
// with the changes going to the journal (a large table's way).
func TestRouteChurnUnderLoad(t *testing.T) {
	for _, kind := range append(kinds(), "embedded-journal") {
		t.Run(kind, func(t *testing.T) {
			if kind == "embedded-journal" {
				withJournal(t, 1)
				kind = "embedded"
			}
			tg := newTarget(t, kind)
			a, z := newNamedBackend(t, "A"), newNamedBackend(t, "Z")
			mustVHost(t, tg.reg, "a.test", hostPort(a.Server))
			tg.apply(t)
			cl := newClient(t)
			eventually(t, "a.test", func() error {
				code, _, err := get(cl, tg.addr, "a.test")
				if err == nil && code != 200 {
					err = fmt.Errorf("status %d", code)
				}
				return err
			})
			var ok, failed atomic.Int64
			var firstErr atomic.Value
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for i := 0; i < 8; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						code, body, err := get(cl, tg.addr, "a.test")
						if err != nil || code != 200 || !strings.HasPrefix(body, "backend=A") {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %q %v", code, body, err))
							continue
						}
						ok.Add(1)
					}
				}()
			}
			for i := 0; i < 5; i++ {
				mustVHost(t, tg.reg, "z.test", hostPort(z.Server))
				tg.apply(t)
				eventually(t, "z.test added", func() error {
					if code, _, err := get(cl, tg.addr, "z.test"); err != nil || code != 200 {
						return fmt.Errorf("%d %v", code, err)
					}
					return nil
				})
				if _, err := tg.reg.Remove(context.Background(), RemoveSpec{Host: "z.test"}, ChangeOptions{}); err != nil {
					t.Fatal(err)
				}
				tg.apply(t)
				eventually(t, "z.test removed", func() error {
					if code, _, err := get(cl, tg.addr, "z.test"); err != nil || code != 404 {
						return fmt.Errorf("%d %v", code, err)
					}
					return nil
				})
			}
			cancel()
			wg.Wait()
			t.Logf("%d requests to the unaffected route during 10 reloads", ok.Load())
			if failed.Load() != 0 || ok.Load() == 0 {
				t.Errorf("%d failed requests (first: %v), %d ok", failed.Load(), firstErr.Load(), ok.Load())
			}
		})
	}
}

// TestTCPForward checks a forward, including half-close: the backend reads
// until EOF and only then answers.
func TestTCPForward(t *testing.T) {
	for _, kind := range kinds() {
		t.Run(kind, func(t *testing.T) {
			if kind == "nginx" {
				requireNginx(t)
				if !hasStreamModule() {
					t.Skip("nginx stream module not installed (" + streamModule + "; Debian package libnginx-mod-stream)")
				}
			}
			tg := newTarget(t, kind)
			be, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { be.Close() })
			go func() {
				for {
					c, err := be.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						n, _ := io.Copy(io.Discard, c) // until the client's half-close
						fmt.Fprintf(c, "read %d bytes", n)
					}()
				}
			}()
			listen := "127.0.0.1:" + strconv.Itoa(freePort(t))
			if _, err := tg.reg.Forward(context.Background(), ForwardSpec{Listen: listen, To: be.Addr().String()}, ChangeOptions{}); err != nil {
				t.Fatal(err)
			}
			tg.apply(t)
			var reply string
			eventually(t, "forward "+listen, func() error {
				c, err := net.Dial("tcp", listen)
				if err != nil {
					return err
				}
				defer c.Close()
				if _, err := c.Write(make([]byte, 100000)); err != nil {
					return err
				}
				if err := c.(*net.TCPConn).CloseWrite(); err != nil {
					return err
				}
				b, err := io.ReadAll(c)
				reply = string(b)
				if err == nil && reply == "" {
					err = fmt.Errorf("empty reply")
				}
				return err
			})
			if reply != "read 100000 bytes" {
				t.Errorf("reply %q, want %q", reply, "read 100000 bytes")
			}
		})
	}
}
