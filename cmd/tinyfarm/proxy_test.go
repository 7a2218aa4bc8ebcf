package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// TestProxyServe runs `tinyfarm proxy serve` on a free 127.0.0.1 port,
// routes a request through it to a backend of the test, picks up a route
// added while it runs, and stops it with SIGTERM: exit 0, access log
// written.
func TestProxyServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend saw host=%s", r.Host)
	}))
	defer backend.Close()
	state := filepath.Join(t.TempDir(), "state")
	reg := proxy.NewRegistry(filepath.Join(state, "proxy"), nil)
	ctx := context.Background()
	if _, err := reg.VHost(ctx, proxy.VHostSpec{Host: "web1.test", To: backend.Listener.Addr().String()}, proxy.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "proxy", "serve", "--listen", "127.0.0.1:0", "--access-log", "-")
	cmd.Env = append(os.Environ(), "TINYFARM_HOME="+state)
	var stdout, stderr syncBuf
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	// It prints the bound address on stderr.
	re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
	var addr string
	for deadline := time.Now().Add(30 * time.Second); addr == ""; time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("proxy serve never said where it listens\n%s", stderr.String())
		}
	}

	get := func(host string) (int, string, error) {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	code, body, err := get("web1.test")
	if err != nil || code != 200 || body != "backend saw host=web1.test" {
		t.Fatalf("GET web1.test: %d %q %v", code, body, err)
	}
	if code, _, err := get("nosuch.test"); err != nil || code != 404 {
		t.Errorf("unknown host: %d %v, want 404", code, err)
	}
	// A route added while serving is picked up without a restart.
	if _, err := reg.VHost(ctx, proxy.VHostSpec{Host: "late.test", To: backend.Listener.Addr().String()}, proxy.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, err := get("late.test")
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("late.test never routed: %d %v", code, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	http.DefaultClient.CloseIdleConnections()

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v, want 0\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("proxy serve did not stop after SIGTERM\n%s", stderr.String())
	}
	if log := stdout.String(); !strings.Contains(log, `"GET / HTTP/1.1" 200 `) || !strings.Contains(log, `"web1.test"`) {
		t.Errorf("access log on stdout lacks the request:\n%s", log)
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
