package proxy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
)

// Behaviour specific to the embedded proxy.

func TestEmbeddedLimitsAndLog(t *testing.T) {
	tg := newTarget(t, "embedded")
	a := newNamedBackend(t, "A")
	mustVHost(t, tg.reg, "a.test", hostPort(a.Server))
	cl := newClient(t)
	waitStatus(t, cl, tg.addr, "a.test", 200)
	// Header size limit (default 64 KiB).
	code, _, err := get(cl, tg.addr, "a.test", "X-Big", strings.Repeat("x", 100<<10))
	if err != nil || code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("100 KiB header: got %d %v, want 431", code, err)
	}
	// Not a forward proxy.
	if code := rawStatus(t, tg.addr, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n"); code != http.StatusMethodNotAllowed {
		t.Errorf("CONNECT: got %d, want 405", code)
	}
	// The access log gets a line per request once flushed at shutdown.
	tg.srv.cancel()
	if err := <-tg.srv.done; err != nil {
		t.Fatal(err)
	}
	tg.srv.done <- nil // for the cleanup
	log := tg.srv.accessLog.String()
	if !strings.Contains(log, `"GET / HTTP/1.1" 200 `) || !strings.Contains(log, `"a.test"`) || !strings.Contains(log, hostPort(a.Server)) {
		t.Errorf("access log lacks the request line, host or backend:\n%s", log)
	}
	if !strings.Contains(log, `"CONNECT a.test:443 HTTP/1.1" 405 `) {
		t.Errorf("access log lacks the CONNECT line:\n%s", log)
	}
}

// TestEmbeddedGracefulShutdown cancels the context while a request is in
// flight: the request completes, then Serve returns nil.
func TestEmbeddedGracefulShutdown(t *testing.T) {
	tg := newTarget(t, "embedded")
	release, started := make(chan struct{}), make(chan struct{})
	slow := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "finished")
	}))
	mustVHost(t, tg.reg, "slow.test", slow)
	a := newNamedBackend(t, "A")
	mustVHost(t, tg.reg, "a.test", hostPort(a.Server))
	cl := newClient(t)
	waitStatus(t, cl, tg.addr, "a.test", 200)
	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		code, body, err := get(cl, tg.addr, "slow.test")
		res <- result{code, body, err}
	}()
	<-started
	tg.srv.cancel()
	// Once shutdown began, new connections are refused.
	eventually(t, "listener closed", func() error {
		c, err := net.Dial("tcp", tg.addr)
		if err == nil {
			c.Close()
			return fmt.Errorf("still accepting")
		}
		return nil
	})
	close(release)
	r := <-res
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Errorf("in-flight request: %d %q %v", r.code, r.body, r.err)
	}
	if err := <-tg.srv.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	tg.srv.done <- nil
}

// TestEmbeddedBadRegistryKeepsRoutes: a corrupt registry file is reported
// and the previous table keeps serving.
func TestEmbeddedBadRegistryKeepsRoutes(t *testing.T) {
	tg := newTarget(t, "embedded")
	a := newNamedBackend(t, "A")
	mustVHost(t, tg.reg, "a.test", hostPort(a.Server))
	cl := newClient(t)
	waitStatus(t, cl, tg.addr, "a.test", 200)
	if err := os.WriteFile(tg.reg.Path(), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := newNamedBackend(t, "B")
	// A later good write is picked up; a.test served throughout.
	for i := 0; i < 20; i++ {
		if code, _, err := get(cl, tg.addr, "a.test"); err != nil || code != 200 {
			t.Fatalf("a.test after corrupt registry: %d %v", code, err)
		}
	}
	if err := os.Remove(tg.reg.Path()); err != nil {
		t.Fatal(err)
	}
	mustVHost(t, tg.reg, "b.test", hostPort(b.Server))
	eventually(t, "b.test after repair", func() error {
		code, _, err := get(cl, tg.addr, "b.test")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
}

func newHTTPServer(t *testing.T, h http.Handler) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}
