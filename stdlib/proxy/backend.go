package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The fast path: plain HTTP/1.1 requests without a body (GET, HEAD, most
// of a web site's traffic) go straight from the handler goroutine to a
// pooled backend connection: the request line and headers are written in
// one buffered write, the response is parsed with http.ReadResponse and
// streamed to the client. Compared with httputil.ReverseProxy over an
// http.Transport this saves the request clone, the Transport's writeLoop
// and readLoop goroutines and the channel hand-offs between them on every
// request. Everything else (request bodies, Expect, protocol upgrades such
// as WebSocket, request trailers) goes through the ReverseProxy.

// idleConnTimeout closes pooled backend connections idle for longer.
const idleConnTimeout = 90 * time.Second

// backendPool is a LIFO pool of idle keep-alive connections to one backend.
type backendPool struct {
	addr   string
	dialer *net.Dialer
	max    int

	mu     sync.Mutex
	idle   []*backendConn
	closed bool
}

type backendConn struct {
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

func newBackendPool(addr string, dialer *net.Dialer, max int) *backendPool {
	return &backendPool{addr: addr, dialer: dialer, max: max}
}

// get returns an idle connection (reused true) or dials a new one.
func (p *backendPool) get(ctx context.Context, fresh bool) (*backendConn, bool, error) {
	if !fresh {
		now := time.Now()
		p.mu.Lock()
		for n := len(p.idle); n > 0; n = len(p.idle) {
			bc := p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
			if now.Sub(bc.idleAt) > idleConnTimeout {
				bc.c.Close()
				continue
			}
			p.mu.Unlock()
			return bc, true, nil
		}
		p.mu.Unlock()
	}
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	return &backendConn{c: c, br: bufio.NewReaderSize(c, 16<<10), bw: bufio.NewWriterSize(c, 4<<10)}, false, nil
}

// put returns a connection whose last response was read to the end.
func (p *backendPool) put(bc *backendConn) {
	bc.idleAt = time.Now()
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.max {
		p.mu.Unlock()
		bc.c.Close()
		return
	}
	p.idle = append(p.idle, bc)
	p.mu.Unlock()
}

// closeIdle closes the idle connections; with stop, connections returned
// later are closed too (the backend left the routing table).
func (p *backendPool) closeIdle(stop bool) {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	if stop {
		p.closed = true
	}
	p.mu.Unlock()
	for _, bc := range idle {
		bc.c.Close()
	}
}

// hopHeaders are the hop-by-hop headers (RFC 9110 §7.6.1) a proxy drops.
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// connectionListed reports whether k is named by a Connection header.
func connectionListed(conn []string, k string) bool {
	for _, v := range conn {
		for _, f := range strings.Split(v, ",") {
			if textproto.TrimString(f) != "" && strings.EqualFold(textproto.TrimString(f), k) {
				return true
			}
		}
	}
	return false
}

// fastPathOK reports whether r can take the fast path.
func fastPathOK(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.Method == http.MethodConnect || len(r.TransferEncoding) > 0 || r.ContentLength != 0 || len(r.Trailer) > 0 {
		return false
	}
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	h := r.Header
	return len(h["Upgrade"]) == 0 && len(h["Expect"]) == 0
}

var aLongTimeAgo = time.Unix(1, 0)

// errRetry marks a failure on a reused connection before any response
// byte arrived: the backend closed it while idle.
var errRetry = errors.New("backend closed an idle connection")

// idempotentMethod reports whether a request with this method may be sent
// again on a fresh connection after a reused one failed (errRetry).
func idempotentMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// serveFast proxies a request that passed fastPathOK.
func (s *Server) serveFast(w http.ResponseWriter, r *http.Request, b *backend) {
	ctx := r.Context()
	// One cancellation hook for the whole exchange: the client going away
	// (ctx done) unblocks whatever the connection in use is waiting on,
	// such as a silent backend.
	var cur atomic.Pointer[backendConn]
	stop := context.AfterFunc(ctx, func() {
		if bc := cur.Load(); bc != nil {
			bc.c.SetDeadline(aLongTimeAgo)
		}
	})
	idempotent := idempotentMethod(r.Method)
	var (
		bc  *backendConn
		res *http.Response
		err error
	)
	for attempt := 0; ; attempt++ {
		var reused bool
		bc, reused, err = b.pool.get(ctx, attempt >= 8)
		if err != nil {
			stop()
			s.backendError(w, r, b.addr, err)
			return
		}
		cur.Store(bc)
		if ctx.Err() != nil { // cancelled before cur was set
			bc.c.SetDeadline(aLongTimeAgo)
		}
		res, err = s.exchange(ctx, bc, r, b.addr)
		if err == nil {
			break
		}
		bc.c.Close()
		if reused && idempotent && errors.Is(err, errRetry) && ctx.Err() == nil {
			continue
		}
		stop()
		s.backendError(w, r, b.addr, err)
		return
	}

	h := w.Header()
	conn := res.Header["Connection"]
	for k, vv := range res.Header {
		if isHop(k) || len(conn) > 0 && connectionListed(conn, k) {
			continue
		}
		h[k] = vv
	}
	if len(res.Trailer) > 0 {
		names := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(res.StatusCode)
	copyErr := s.copyBody(w, res)
	res.Body.Close()
	if !stop() {
		copyErr = errors.Join(copyErr, ctx.Err())
	}
	if copyErr != nil {
		bc.c.Close()
		// The status line is out: all that is left is to abort the
		// response, as ReverseProxy does.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range res.Trailer {
		h[k] = vv
	}
	if res.Close || bc.br.Buffered() > 0 {
		bc.c.Close()
	} else {
		b.pool.put(bc)
	}
}

// exchange writes r to bc and reads the response headers.
func (s *Server) exchange(ctx context.Context, bc *backendConn, r *http.Request, addr string) (*http.Response, error) {
	if err := writeRequest(bc.bw, r); err != nil {
		return nil, retryable(err, true)
	}
	// Peek first, so an idle connection the backend closed (EOF before
	// any byte) is told apart from a truncated response.
	if _, err := bc.br.Peek(1); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, retryable(err, false)
	}
	for {
		res, err := http.ReadResponse(bc.br, r)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, err
		}
		switch {
		case res.StatusCode == http.StatusSwitchingProtocols:
			res.Body.Close()
			return nil, fmt.Errorf("backend %s switched protocols without an Upgrade request", addr)
		case res.StatusCode >= 100 && res.StatusCode < 200:
			continue // informational (103 Early Hints): not forwarded
		}
		return res, nil
	}
}

// retryable marks the errors of a backend that closed an idle connection:
// a failed write, or EOF / reset before the first response byte.
func retryable(err error, write bool) error {
	if write || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errRetry, err)
	}
	return err
}

// writeRequest writes r as an origin-form HTTP/1.1 request without a body,
// dropping hop-by-hop headers and setting the X-Forwarded-* headers as
// httputil.ProxyRequest.SetXForwarded does (the client is the direct peer;
// a client-supplied X-Forwarded-For is not trusted).
func writeRequest(bw *bufio.Writer, r *http.Request) error {
	uri := r.RequestURI
	if uri == "" || uri[0] != '/' {
		uri = r.URL.RequestURI()
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vv := range r.Header {
		switch k {
		case "Host", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Content-Length":
			continue
		case "Te":
			for _, v := range vv {
				if strings.Contains(strings.ToLower(v), "trailers") {
					bw.WriteString("Te: trailers\r\n")
					break
				}
			}
			continue
		}
		if isHop(k) || len(conn) > 0 && connectionListed(conn, k) {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(ip)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.WriteString(r.Host)
	if r.TLS != nil {
		bw.WriteString("\r\nX-Forwarded-Proto: https\r\n\r\n")
	} else {
		bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	}
	return bw.Flush()
}

// copyBody streams the response body. A body of unknown length (chunked,
// server-sent events, long polls) is flushed after every read, as
// ReverseProxy does.
func (s *Server) copyBody(w http.ResponseWriter, res *http.Response) error {
	if res.Body == http.NoBody {
		return nil
	}
	buf := s.bufs.Get()
	defer s.bufs.Put(buf)
	flush := res.ContentLength < 0
	var rc *http.ResponseController
	if flush {
		rc = http.NewResponseController(w)
	}
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
			if flush {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// backendError answers 502, or 499 when the client went away.
func (s *Server) backendError(w http.ResponseWriter, r *http.Request, addr string, err error) {
	if errors.Is(err, context.Canceled) {
		w.WriteHeader(499) // client went away; nginx logs the same code
		return
	}
	s.opts.Logger.Warn("proxy: backend error", "host", r.Host, "backend", addr, "err", err)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, "<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1><p>The site's backend is not answering.</p>\n")
}
