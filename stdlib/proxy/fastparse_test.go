package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// The fast path's parser against net/http's server: the fast path must
// never serve a request net/http's path would refuse, and must send a
// backend what net/http's path would send for it.

// fastSeeds are the requests of the attack and edge-case tests, and a few
// ordinary ones; FuzzFastParse starts from them.
var fastSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n",
	"HEAD /x?y=1 HTTP/1.1\r\nHost: A.Test:8080\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n",
	"GET /p%20q HTTP/1.1\r\nHost: a.test.\r\nConnection: keep-alive\r\nKeep-Alive: 300\r\nAccept-Encoding: gzip\r\nCookie: a=b; c=d\r\n\r\n",
	"GET /3 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\nGET /4 HTTP/1.1\r\nHost: a.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-Drop: 1\r\nConnection: X-Drop, keep-alive\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\nClose: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX_Forwarded_For: 6.6.6.6\r\nTransfer_Encoding: chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nProxy-Authorization: x\r\nTE: trailers, gzip\r\nX-Kept: yes\r\n\r\n",
	"GET http://b.test/abs HTTP/1.1\r\nHost: a.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\x00b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\rb\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
	"GET / HTTP/1.1\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test/x\r\n\r\n",
	"GET / HTTP/1.1 x\r\nHost: a.test\r\n\r\n",
	"GET / HTTP/9.9\r\nHost: a.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost : a.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\x01b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\nHost: a.test\n\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-A:  \tv \t\r\nX-B:\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-A: caf\xc3\xa9\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: a.test\r\n\r\n",
	"GET /a#frag HTTP/1.1\r\nHost: a.test\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: b.test\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding : chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: " + strings.Repeat("x-a,", 200) + "close\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\n" + strings.Repeat("X-A: 1\r\n", 200) + "\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\n" + strings.Repeat("X-A: 1\r\n", 99) + "\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + strings.Repeat("x", 3<<10) + "\r\n\r\n",
	"HELLO\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a.test\r\nPragma: no-cache\r\n\r\n",
}

func TestFastParse(t *testing.T) {
	var fr fastRequest
	for _, tc := range []struct {
		req  string
		want parseResult
	}{
		{fastSeeds[0], parseOK},
		{fastSeeds[1], parseOK},
		{fastSeeds[2], parseOK},
		{fastSeeds[3], parseOK},
		{fastSeeds[4], parseOK},
		{"GET / HTTP/1.1\r\nHost: a.te", parseMore},
		{"GE", parseMore},
		{"POST / HTTP/1.1\r\n", parseSlow},
		{"POST", parseSlow},
		{fastSeeds[5], parseSlow},  // a Connection token naming a header
		{fastSeeds[6], parseSlow},  // Close named by Connection: close
		{fastSeeds[7], parseSlow},  // "_"
		{fastSeeds[8], parseSlow},  // TE
		{fastSeeds[9], parseSlow},  // absolute form
		{fastSeeds[21], parseSlow}, // bare LF
		{fastSeeds[33], parseSlow}, // 201 fields > 100
		{fastSeeds[34], parseOK},   // 100 fields
		{fastSeeds[38], parseOK},   // Pragma
	} {
		if got := parseFastRequest([]byte(tc.req), 100, &fr); got != tc.want {
			t.Errorf("%.60q: got %d, want %d", tc.req, got, tc.want)
		}
	}
	parseFastRequest([]byte(fastSeeds[3]), 100, &fr)
	if !fr.close || fr.n != strings.Index(fastSeeds[3], "GET /4") || string(fr.target) != "/3" {
		t.Errorf("pipelined: close %v n %d target %q", fr.close, fr.n, fr.target)
	}
}

// netHTTPOracle runs net/http's server, configured as Serve configures
// it, over in-memory pipes; its handler records what net/http's path of
// the proxy would send a backend (cleanRequest, writeHead).
type netHTTPOracle struct {
	ln  *handoffListener
	srv *http.Server
	got chan oracleRequest
}

type oracleRequest struct {
	head    string // writeHead's output; "" when cleanRequest refused
	close   bool
	hasBody bool
	method  string
}

func newNetHTTPOracle(t testing.TB) *netHTTPOracle {
	o := &netHTTPOracle{ln: newHandoffListener(&net.TCPAddr{}), got: make(chan oracleRequest, 1)}
	o.srv = &http.Server{
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       nil,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			or := oracleRequest{close: r.Close, method: r.Method,
				hasBody: r.ContentLength != 0 || len(r.TransferEncoding) > 0}
			if code, _ := cleanRequest(r.Header, 100); code == 0 {
				var b bytes.Buffer
				bw := bufio.NewWriter(&b)
				writeHead(bw, r, upgradeType(r.Header), false)
				bw.Flush()
				or.head = b.String()
			}
			select {
			case o.got <- or:
			default:
			}
		}),
	}
	go o.srv.Serve(o.ln)
	t.Cleanup(func() { o.srv.Close() })
	return o
}

// serve sends in to the server and returns what its handler saw of the
// first request, or false when net/http did not hand it to the handler.
func (o *netHTTPOracle) serve(in []byte) (oracleRequest, bool) {
	cli, srv := net.Pipe()
	defer cli.Close()
	if !o.ln.give(srv) {
		return oracleRequest{}, false
	}
	go cli.Write(in)
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, cli); close(closed) }()
	select {
	case r := <-o.got:
		return r, true
	case <-closed:
		return oracleRequest{}, false
	case <-time.After(2 * time.Second): // net/http waits for more bytes
		return oracleRequest{}, false
	}
}

// normHead makes a request head comparable: the request line, then the
// header lines with canonical names, sorted.
func normHead(h string) string {
	lines := strings.Split(strings.TrimSuffix(h, "\r\n\r\n"), "\r\n")
	for i := 1; i < len(lines); i++ {
		if k, v, ok := strings.Cut(lines[i], ": "); ok {
			lines[i] = http.CanonicalHeaderKey(k) + ": " + v
		}
	}
	slices.Sort(lines[1:])
	return strings.Join(lines, "\n")
}

// FuzzFastParse: whatever the bytes, when the fast parser serves a
// request, net/http's server accepts it too (it is not refused with 4xx,
// and not left waiting for more), the proxy's rules let it through
// (cleanRequest), it has no body, both read the same number of bytes
// for it, agree on Connection: close, and the backend gets the same
// request line and the same header fields from both paths.
//
//	go test -run '^$' -fuzz FuzzFastParse -fuzztime 10m ./stdlib/proxy/
func FuzzFastParse(f *testing.F) {
	for _, s := range fastSeeds {
		f.Add([]byte(s))
	}
	o := newNetHTTPOracle(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		var fr fastRequest
		if parseFastRequest(in, 100, &fr) != parseOK {
			return // handed to net/http: nothing to compare
		}
		// The same number of bytes, read by net/http's request parser.
		br := bufio.NewReader(bytes.NewReader(in))
		req, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("fast path serves %q; http.ReadRequest: %v", in, err)
		}
		if used := len(in) - br.Buffered(); used != fr.n {
			t.Fatalf("fast path read %d bytes of %q, net/http %d", fr.n, in, used)
		}
		if req.Method != fr.method() || req.RequestURI != string(fr.target) || req.Host != string(fr.host) || req.UserAgent() != string(fr.ua) {
			t.Fatalf("%q: fast %s %q host %q ua %q; net/http %s %q host %q ua %q", in, fr.method(), fr.target, fr.host, fr.ua,
				req.Method, req.RequestURI, req.Host, req.UserAgent())
		}
		got, ok := o.serve(in[:fr.n])
		if !ok {
			t.Fatalf("fast path serves %q; net/http's server does not", in)
		}
		if got.head == "" {
			t.Fatalf("fast path serves %q; cleanRequest refuses it", in)
		}
		if got.hasBody || got.close != fr.close || got.method != fr.method() {
			t.Fatalf("%q: net/http body %v close %v method %s; fast close %v", in, got.hasBody, got.close, got.method, fr.close)
		}
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		writeFastHead(bw, &fr, "")
		bw.Flush()
		if fast, slow := normHead(b.String()), normHead(got.head); fast != slow {
			t.Fatalf("%q: the backend would get\n%s\nfrom the fast path and\n%s\nfrom net/http's", in, fast, slow)
		}
	})
}

// TestFastPathServesAndHandsOff: plain GETs stay on the fast path (no
// hand-off), and each kind of request it does not serve is handed to
// net/http with the bytes already read, and answered there.
func TestFastPathServesAndHandsOff(t *testing.T) {
	be := newRawBackend(t, func(r *http.Request, _ net.Conn) string { return okResponse(r) })
	reg := NewRegistry(t.TempDir(), StaticResolver{})
	mustVHost(t, reg, "a.test", be.addr)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{RoutesFile: reg.Path(), ReadHeaderTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()
	c := dialFrom(t, "", addr)
	for i := 0; i < 5; i++ {
		want := fmt.Sprintf("/fast%d", i)
		res, body, err := c.do("GET " + want + " HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if err != nil || res.StatusCode != 200 || body != want {
			t.Fatalf("GET %s: %v %v %q", want, res, err, body)
		}
	}
	// A head trickled in a byte at a time is served on the fast path.
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for _, b := range []byte("GET /trickle HTTP/1.1\r\nHost: a.test\r\n\r\n") {
		c.Write([]byte{b})
		time.Sleep(time.Millisecond)
	}
	if res, body, err := c.read(false); err != nil || res.StatusCode != 200 || body != "/trickle" {
		t.Errorf("trickled head: %v %v %q", res, err, body)
	}
	if n := srv.fast.handoffs.Load(); n != 0 {
		t.Errorf("%d hand-offs for plain GETs", n)
	}
	// A head with bare LFs, its end in a second write, goes to net/http
	// when it ends (not after ReadHeaderTimeout, 30s here).
	lf := dialFrom(t, "", addr)
	lf.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(lf, "GET /lf HTTP/1.1\nHost: a.test\n")
	time.Sleep(20 * time.Millisecond)
	if res, body, err := lf.do("\n"); err != nil || res.StatusCode != 200 || body != "/lf" {
		t.Errorf("bare LF head: %v %v %q", res, err, body)
	}
	srv.fast.handoffs.Store(0)
	// Each in one write with a plain GET after it: both are answered, in
	// order, by net/http's path.
	for i, first := range []string{
		"POST /slow HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2\r\n\r\nhi",
		"GET /slow HTTP/1.1\r\nHost: a.test\r\nX_A: 1\r\n\r\n",
		"GET /slow HTTP/1.1\r\nHost: a.test\r\nX-Big: " + strings.Repeat("x", fastBufSize) + "\r\n\r\n",
		"GET /slow HTTP/1.1\r\nHost: nope.test\r\n\r\n",
	} {
		c := dialFrom(t, "", addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, first+"GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n")
		for j, want := range []string{"/slow", "/after"} {
			res, body, err := c.read(false)
			if err != nil || j == 1 && (res.StatusCode != 200 || body != want) || j == 0 && res.StatusCode != 200 && res.StatusCode != 404 {
				t.Errorf("case %d, response %d: %v %v %q", i, j, res, err, body)
			}
		}
		if n := srv.fast.handoffs.Load(); n != int64(i+1) {
			t.Errorf("case %d: %d hand-offs, want %d", i, n, i+1)
		}
	}
}

// fastResponseSeeds are backend answers: the attack tests' and ordinary
// ones.
var fastResponseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nDate: Sat, 05 Dec 2026 02:00:00 GMT\r\nContent-Length: 0\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n",
	"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\nConnection: close\r\n\r\nnop",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 8\r\n\r\n",
	"HTTP/1.1 200 OK\rSet-Cookie: evil=1\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 099 Odd\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: 1\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200\r\nX-Odd: 1\r\n\r\nuntil close",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	"HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nX-B:\r\nContent-Length: 2\r\n\r\nhi",
}

// FuzzFastResponse: when the fast response parser takes a backend's
// response head, http.ReadResponse and checkResponse (net/http's path)
// take it too, with the same status, length, Connection: close and the
// same headers passed to the client.
//
//	go test -run '^$' -fuzz FuzzFastResponse -fuzztime 5m ./stdlib/proxy/
func FuzzFastResponse(f *testing.F) {
	for _, s := range fastResponseSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		var fr fastResponse
		if parseFastResponse(in, head, &fr) != parseOK {
			return
		}
		method := "GET"
		if head {
			method = "HEAD"
		}
		br := bufio.NewReader(bytes.NewReader(in))
		res, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("fast path takes %q; http.ReadResponse: %v", in, err)
		}
		if err := checkResponse(res); err != nil {
			t.Fatalf("fast path takes %q; checkResponse: %v", in, err)
		}
		if used := len(in) - br.Buffered(); used != fr.n {
			t.Fatalf("%q: fast head %d bytes, net/http %d", in, fr.n, used)
		}
		if res.StatusCode != fr.status || res.Close != fr.close {
			t.Fatalf("%q: fast %d close %v; net/http %d close %v", in, fr.status, fr.close, res.StatusCode, res.Close)
		}
		if !bodyless(method, fr.status) && res.ContentLength != fr.length {
			t.Fatalf("%q: fast length %d; net/http %d", in, fr.length, res.ContentLength)
		}
		var slow, fast []string
		eachResponseHeader(res, func(k string, vv []string) {
			if k != "Content-Length" {
				for _, v := range vv {
					slow = append(slow, k+": "+v)
				}
			}
		})
		for _, f := range fr.fields {
			fast = append(fast, http.CanonicalHeaderKey(string(f.name))+": "+string(f.value))
		}
		slices.Sort(slow)
		slices.Sort(fast)
		if !slices.Equal(slow, fast) {
			t.Fatalf("%q: headers passed on: fast %q, net/http %q", in, fast, slow)
		}
	})
}
