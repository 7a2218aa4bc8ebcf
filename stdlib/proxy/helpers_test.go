package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// target is a proxy under test: the embedded one or a real nginx.
type target struct {
	kind  string
	addr  string // HTTP listen address, 127.0.0.1:port
	reg   *Registry
	apply func(t *testing.T) // make the registry's routes effective (asynchronously)
	nginx *nginxInstance     // nil for the embedded proxy
	srv   *embedded          // nil for nginx
}

type embedded struct {
	accessLog *syncBuffer
	cancel    context.CancelFunc
	done      chan error
}

func kinds() []string { return []string{"embedded", "nginx"} }

func newTarget(t *testing.T, kind string) *target {
	t.Helper()
	dir := t.TempDir()
	reg := NewRegistry(filepath.Join(dir, "state", "proxy"), StaticResolver{})
	switch kind {
	case "embedded":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		logBuf := &syncBuffer{}
		srv, err := NewServer(Options{
			RoutesFile:   reg.Path(),
			AccessLog:    logBuf,
			Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
			PollInterval: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		e := &embedded{accessLog: logBuf, cancel: cancel, done: make(chan error, 1)}
		go func() { e.done <- srv.Serve(ctx, ln) }()
		t.Cleanup(func() {
			cancel()
			if err := <-e.done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
		return &target{kind: kind, addr: ln.Addr().String(), reg: reg, apply: func(*testing.T) {}, srv: e}
	case "nginx":
		n := startNginx(t, reg)
		return &target{kind: kind, addr: n.addr, reg: reg, nginx: n, apply: n.apply}
	}
	t.Fatalf("unknown kind %s", kind)
	return nil
}

// testWriter sends log output to t.Log until the test ends.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	defer func() { _ = recover() }() // logging after the test ended
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// nginxInstance is a real nginx started by the test, unprivileged, from a
// temp prefix, on a 127.0.0.1 high port.
type nginxInstance struct {
	addr   string
	dir    string
	cfg    NginxConfig
	reg    *Registry
	stderr *syncBuffer
	pid    int // the master process
}

const streamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

func hasStreamModule() bool {
	_, err := os.Stat(streamModule)
	return err == nil
}

// nginxCommand runs nginx as nobody, as PLATFORM.md §8 does.
func nginxCommand() []string {
	return []string{"setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "nginx"}
}

func requireNginx(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx binary not found (install nginx-light):", err)
	}
}

// nginxDir makes a temp prefix that an unprivileged nginx can use and writes
// its main nginx.conf; extraHTTP is added inside http {}.
func nginxDir(t *testing.T, extraHTTP string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tinyfarm-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{"", "logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, d), 0o777); err != nil {
			t.Fatal(err)
		}
	}
	main := "worker_processes 1;\npid nginx.pid;\nerror_log stderr;\n"
	stream := ""
	if hasStreamModule() {
		main += "load_module " + streamModule + ";\n"
		stream = "include tinyfarm-stream.conf;\n"
	}
	main += `events { worker_connections 1024; }
http {
    access_log logs/access.log;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;
    server_names_hash_max_size 4096;
` + extraHTTP + `    include tinyfarm.conf;   # the tinyfarm vhosts
}
` + stream
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func startNginx(t *testing.T, reg *Registry) *nginxInstance {
	t.Helper()
	requireNginx(t)
	dir := nginxDir(t, "")
	port := freePort(t)
	n := &nginxInstance{addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir, reg: reg, stderr: &syncBuffer{}}
	n.cfg = NginxConfig{
		Path:    filepath.Join(dir, "tinyfarm.conf"),
		Conf:    filepath.Join(dir, "nginx.conf"),
		Prefix:  dir + "/",
		Command: nginxCommand(),
		Render:  NginxOptions{Listen: n.addr, DefaultServer: true},
	}
	if hasStreamModule() {
		n.cfg.StreamPath = filepath.Join(dir, "tinyfarm-stream.conf")
		// The main config includes it, so it must exist before the first start.
		if err := os.WriteFile(n.cfg.StreamPath, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ApplyNginx(context.Background(), Table{}, n.cfg); err != nil {
		t.Fatalf("initial ApplyNginx: %v", err)
	}
	argv := nginxCommand()
	cmd := exec.Command(argv[0], append(argv[1:], "-p", dir+"/", "-c", "nginx.conf", "-g", "daemon off;")...)
	cmd.Stderr = n.stderr
	cmd.Stdout = n.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.pid = cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("nginx stderr:\n%s", n.stderr.String())
		}
	})
	eventually(t, "nginx listening on "+n.addr, func() error {
		select {
		case <-exited:
			t.Fatalf("nginx exited: %s", n.stderr.String())
		default:
		}
		c, err := net.Dial("tcp", n.addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	n.cfg.Reload = true
	n.cfg.PIDFile = filepath.Join(dir, "nginx.pid")
	return n
}

func (n *nginxInstance) apply(t *testing.T) {
	t.Helper()
	tab, err := n.reg.Routes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	old := nginxWorkers(n.pid)
	ch, err := ApplyNginx(context.Background(), tab, n.cfg)
	if err != nil {
		t.Fatalf("ApplyNginx: %v", err)
	}
	if !ch.Changed {
		return
	}
	// A reload is done when every worker of the old configuration has
	// exited: until then an old worker may still accept a connection and
	// answer it from the old routes, after a new worker already answered
	// from the new ones.
	eventually(t, "nginx reload: old workers exit", func() error {
		now := nginxWorkers(n.pid)
		if len(now) == 0 {
			return errors.New("no worker running")
		}
		for pid := range now {
			if old[pid] {
				return fmt.Errorf("worker %d of the old configuration still running", pid)
			}
		}
		return nil
	})
}

// nginxWorkers returns the live (not zombie) child processes of the nginx
// master process pid, read from /proc.
func nginxWorkers(pid int) map[int]bool {
	ents, _ := os.ReadDir("/proc")
	workers := map[int]bool{}
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after
		// its closing parenthesis.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == pid {
			workers[child] = true
		}
	}
	return workers
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// eventually polls f until it returns nil. Reloads are asynchronous in both
// proxies; this waits for an outcome, it does not measure time.
// waitStatus waits until a GET for host through the proxy at addr answers
// with status want (the route is live).
func waitStatus(t *testing.T, cl *http.Client, addr, host string, want int) {
	t.Helper()
	eventually(t, "route", func() error {
		code, _, err := get(cl, addr, host)
		if err == nil && code != want {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
}

func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after 20s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustVHost(t testing.TB, reg *Registry, host, to string) {
	t.Helper()
	if _, err := reg.VHost(context.Background(), VHostSpec{Host: host, To: to, Replace: true}, ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
}

// namedBackend answers every request with its name and the request's
// Host and X-Forwarded-* headers, and counts the requests it saw.
type namedBackend struct {
	*httptest.Server
	name string
	hits atomic.Int64
}

func newNamedBackend(t *testing.T, name string) *namedBackend {
	t.Helper()
	b := &namedBackend{name: name}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		fmt.Fprintf(w, "backend=%s host=%s xff=%s xfproto=%s xfhost=%s",
			name, r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"))
	}))
	t.Cleanup(b.Close)
	return b
}

// hostPort returns the listen address of an httptest server.
func hostPort(s *httptest.Server) string { return s.Listener.Addr().String() }

// get sends GET / with the given Host header through the proxy.
func get(c *http.Client, addr, host string, hdr ...string) (int, string, error) {
	req, err := http.NewRequest("GET", "http://"+addr+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

func newClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// wsAccept computes Sec-WebSocket-Accept (RFC 6455 §4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsEchoBackend is a minimal WebSocket server: it completes the handshake
// and echoes text frames (payloads under 126 bytes) until a close frame.
func wsEchoBackend(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "websocket only", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Flush()
		for {
			op, payload, err := wsRead(brw.Reader)
			if err != nil || op == 8 {
				return
			}
			wsWrite(conn, op, payload, false)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func wsRead(r *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	if n >= 126 {
		return 0, nil, errors.New("long frames not supported by this test")
	}
	var mask [4]byte
	if h[1]&0x80 != 0 {
		if _, err := io.ReadFull(r, mask[:]); err != nil {
			return 0, nil, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	for i := range p {
		p[i] ^= mask[i%4]
	}
	return h[0] & 0x0f, p, nil
}

func wsWrite(w io.Writer, op byte, p []byte, masked bool) error {
	f := []byte{0x80 | op, byte(len(p))}
	if masked {
		mask := [4]byte{1, 2, 3, 4}
		f[1] |= 0x80
		f = append(f, mask[:]...)
		for i, c := range p {
			f = append(f, c^mask[i%4])
		}
	} else {
		f = append(f, p...)
	}
	_, err := w.Write(f)
	return err
}

// pattern is an endless deterministic byte stream.
type pattern struct{ n int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.n*7 + p.n>>11)
		p.n++
	}
	return len(b), nil
}
