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

// get returns an idle connection (reused true) or dials a new one. An
// idle connection with bytes waiting, or closed by the backend, is
// dropped: bytes nobody asked for (a body after the head of a HEAD, 204
// or 304 response, a common backend bug) would otherwise be read as the
// next visitor's response (issue 20). http.Transport and nginx close such
// connections too.
func (p *backendPool) get(ctx context.Context, fresh bool) (*backendConn, bool, error) {
	for !fresh {
		now := time.Now()
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		bc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(bc.idleAt) > idleConnTimeout || unsolicited(bc.c) {
			bc.c.Close()
			continue
		}
		return bc, true, nil
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

// connectionSet returns the header names a response's Connection
// headers list (nil for none), or false when they list more than
// maxConnectionTokens: one pass, then a map lookup per header.
func connectionSet(conn []string) (map[string]bool, bool) {
	var set map[string]bool
	for _, v := range conn {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f == "" {
				continue
			}
			if set == nil {
				set = map[string]bool{}
			}
			set[http.CanonicalHeaderKey(f)] = true
			if len(set) > maxConnectionTokens {
				return nil, false
			}
		}
	}
	return set, true
}

// checkResponse refuses a backend response net/http's parser accepts but
// that cannot be passed on as it is (RFC 9112 §4, §5): a status code
// outside 100-999, control bytes in the status line (a bare CR would split
// the response for a lenient cache in front), header or trailer names
// that are not tokens ("X-A : b"), or a Connection header listing too
// many names. The client gets 502. It is the ReverseProxy's
// ModifyResponse too.
func checkResponse(res *http.Response) error {
	if res.StatusCode < 100 || res.StatusCode > 999 {
		return fmt.Errorf("invalid status code %d", res.StatusCode)
	}
	for i := 0; i < len(res.Status); i++ {
		if c := res.Status[i]; c < ' ' && c != '\t' || c == 0x7f {
			return fmt.Errorf("control byte %#x in status line %q", c, res.Status)
		}
	}
	for _, h := range []http.Header{res.Header, res.Trailer} {
		for k := range h {
			if !validFieldName(k) {
				return fmt.Errorf("invalid header name %q", k)
			}
		}
	}
	if _, ok := connectionSet(res.Header["Connection"]); !ok {
		return errors.New("too many Connection tokens")
	}
	return nil
}

// validFieldName reports whether k is an RFC 9110 token.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenChar(k[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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
	conn, _ := connectionSet(res.Header["Connection"]) // checkResponse capped it
	for k, vv := range res.Header {
		if isHop(k) || conn[k] {
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
	// Bytes already read past the response are unsolicited (see get).
	// After a response that has no body by definition the connection is
	// not reused at all: a backend that sends one anyway may send it a
	// moment later, after the next request went out on the connection,
	// and the next visitor would read it as their response.
	if res.Close || bc.br.Buffered() > 0 || bodyless(r.Method, res.StatusCode) {
		bc.c.Close()
	} else {
		b.pool.put(bc)
	}
}

// exchange writes r to bc and reads the response headers, for at most
// BackendTimeout.
func (s *Server) exchange(ctx context.Context, bc *backendConn, r *http.Request, addr string) (*http.Response, error) {
	if err := writeRequest(bc.bw, r); err != nil {
		return nil, retryable(err, true)
	}
	setReadDeadline(ctx, bc, time.Now().Add(s.opts.BackendTimeout))
	defer setReadDeadline(ctx, bc, time.Time{})
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
		if err := checkResponse(res); err != nil {
			res.Body.Close()
			return nil, fmt.Errorf("backend %s: %w", addr, err)
		}
		return res, nil
	}
}

// bodyless reports whether a response to method with this status has no
// body whatever its headers say (RFC 9112 §6.3).
func bodyless(method string, status int) bool {
	return method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
}

// setReadDeadline sets bc's read deadline unless ctx is done: the
// cancellation hook of serveFast sets a past deadline, which must stay.
func setReadDeadline(ctx context.Context, bc *backendConn, t time.Time) {
	bc.c.SetReadDeadline(t)
	if ctx.Err() != nil {
		bc.c.SetDeadline(aLongTimeAgo)
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
	for k, vv := range r.Header { // cleanRequest removed the Connection-listed ones
		switch k {
		case "Host", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Content-Length", "Forwarded":
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
		if isHop(k) {
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

// backendError answers 502, 504 when the backend timed out (as nginx),
// 408 when the client's body did, or 499 when the client went away.
func (s *Server) backendError(w http.ResponseWriter, r *http.Request, addr string, err error) {
	// First: a body read that timed out also cancels the request's
	// context (net/http does on any read error).
	if bodyTimedOut(r) {
		w.Header().Set("Connection", "close")
		http.Error(w, "request body timeout", http.StatusRequestTimeout)
		return
	}
	if errors.Is(err, context.Canceled) {
		w.WriteHeader(499) // client went away; nginx logs the same code
		return
	}
	s.opts.Logger.Warn("proxy: backend error", "host", r.Host, "backend", addr, "err", err)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if isTimeout(err) {
		w.WriteHeader(http.StatusGatewayTimeout)
		io.WriteString(w, "<!doctype html><title>504 Gateway Timeout</title><h1>504 Gateway Timeout</h1><p>The site's backend did not answer in time.</p>\n")
		return
	}
	w.WriteHeader(http.StatusBadGateway)
	io.WriteString(w, "<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1><p>The site's backend is not answering.</p>\n")
}
