package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"html"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The connection loop: the proxy accepts client connections itself and
// parses each request head with a strict, allocation-light reader. A plain
// HTTP/1.1 request without a body (origin-form URI, one valid Host, no
// Content-Length other than 0, no Transfer-Encoding, Upgrade, Expect or
// Trailer) is proxied right here over a pooled backend connection: no
// per-request goroutine, context, header map or ResponseWriter, and the
// response head and a small body leave in one write. Anything else (request
// bodies, WebSocket, HTTP/1.0, absolute-form URIs, CONNECT, anything
// malformed or too large) is handed, with the bytes already read, to the
// net/http server, which then owns the connection: its errors (400, 431,
// 405) and its semantics stay the reference.

// connReader reads from the client connection, first returning the byte
// the client-gone watcher may have read.
type connReader struct {
	c       net.Conn
	pending []byte // 0 or 1 byte
	one     [1]byte
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(r.pending) > 0 && len(p) > 0 {
		p[0] = r.pending[0]
		r.pending = nil
		return 1, nil
	}
	return r.c.Read(p)
}

// hdrField is a header line of the raw request head: offsets into head.
type hdrField struct {
	name, val [2]int
	drop      bool
}

// clientConn is one client connection served by the connection loop.
type clientConn struct {
	s      *Server
	c      net.Conn
	cr     connReader
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string // remote address, for the access log
	ip     string // remote IP, for X-Forwarded-For
	head   []byte // the raw request head
	fields []hdrField
	resReq http.Request // the request ReadResponse is told about (its method)

	// The request being served: offsets into head.
	method, uri, host, ua [2]int
	closeAfter            bool
	teTrailers            bool
	connTokens            [][2]int
}

func (cc *clientConn) str(r [2]int) []byte { return cc.head[r[0]:r[1]] }

// connTracker tracks the connection loop's connections for graceful
// shutdown: idle ones are closed at once, busy ones after their request.
type connTracker struct {
	mu      sync.Mutex
	conns   map[*clientConn]bool // value: busy
	closing bool
	wg      sync.WaitGroup
}

func (t *connTracker) add(cc *clientConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.conns[cc] = false
	t.wg.Add(1)
	return true
}

func (t *connTracker) remove(cc *clientConn) {
	t.mu.Lock()
	delete(t.conns, cc)
	t.mu.Unlock()
	t.wg.Done()
}

// setBusy marks cc busy or idle; false means shutting down: close cc.
func (t *connTracker) setBusy(cc *clientConn, busy bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.conns[cc] = busy
	return true
}

// shutdown closes the idle connections and waits for the busy ones until
// ctx is done, then closes those too.
func (t *connTracker) shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.closing = true
	for cc, busy := range t.conns {
		if !busy {
			cc.c.Close()
		}
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() { t.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	for cc := range t.conns {
		cc.c.Close()
	}
	t.mu.Unlock()
	<-done
	return ctx.Err()
}

// connListener feeds handed-off connections to the net/http server.
type connListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

func (l *connListener) hand(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	}
}

// prefixConn replays bytes already read from a connection.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// CloseWrite lets net/http half-close before closing after an error
// response (so the client reads it rather than a reset).
func (p *prefixConn) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// serveConns accepts client connections until ln is closed.
func (s *Server) serveConns(ln net.Listener, tr *connTracker, hl *connListener) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors and the like: back off and retry,
			// as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.opts.Logger.Warn("proxy: accept; retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		cc := &clientConn{s: s, c: c}
		if !tr.add(cc) {
			c.Close()
			continue
		}
		go cc.serve(tr, hl)
	}
}

// errHandOff: the request is not for the fast loop.
var errHandOff = errors.New("hand off to net/http")

func (cc *clientConn) serve(tr *connTracker, hl *connListener) {
	defer tr.remove(cc)
	s := cc.s
	cc.cr.c = cc.c
	cc.br = bufio.NewReaderSize(&cc.cr, 4<<10)
	cc.bw = bufio.NewWriterSize(cc.c, 16<<10)
	cc.remote = cc.c.RemoteAddr().String()
	if ip, _, err := net.SplitHostPort(cc.remote); err == nil {
		cc.ip = ip
	}
	for {
		if cc.br.Buffered() == 0 {
			cc.c.SetReadDeadline(time.Now().Add(s.opts.IdleTimeout))
			if _, err := cc.br.Peek(1); err != nil {
				cc.c.Close()
				return
			}
		}
		if !tr.setBusy(cc, true) {
			cc.c.Close()
			return
		}
		start := time.Now()
		// A head already received in full needs no header deadline (the
		// idle deadline set above still bounds the connection).
		buf, _ := cc.br.Peek(cc.br.Buffered())
		timed := bytes.Index(buf, []byte("\r\n\r\n")) < 0
		if timed {
			cc.c.SetReadDeadline(start.Add(s.opts.ReadHeaderTimeout))
		}
		err := cc.readHead()
		if errors.Is(err, errHandOff) {
			cc.handOff(hl)
			return
		}
		if err != nil {
			cc.c.Close()
			return
		}
		if timed {
			cc.c.SetReadDeadline(time.Time{})
		}
		if !cc.proxy(start) || cc.closeAfter {
			cc.c.Close()
			return
		}
		if !tr.setBusy(cc, false) {
			cc.c.Close()
			return
		}
	}
}

// handOff gives the connection, with the bytes read so far, to net/http.
func (cc *clientConn) handOff(hl *connListener) {
	prefix := make([]byte, 0, len(cc.head)+cc.br.Buffered()+len(cc.cr.pending))
	prefix = append(prefix, cc.head...)
	buf, _ := cc.br.Peek(cc.br.Buffered())
	prefix = append(prefix, buf...)
	prefix = append(prefix, cc.cr.pending...)
	hl.hand(&prefixConn{Conn: cc.c, r: io.MultiReader(bytes.NewReader(prefix), cc.c)})
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isHostChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c == '.' || c == '-' || c == ':' || c == '_' || c == '[' || c == ']'
}

// asciiEqualFold compares b with the lower-case ASCII string s.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// readHead reads and checks a request head. errHandOff means the request
// (or whatever the client sent) is for net/http.
func (cc *clientConn) readHead() error {
	cc.head = cc.head[:0]
	cc.fields = cc.fields[:0]
	cc.connTokens = cc.connTokens[:0]
	cc.closeAfter, cc.teTrailers = false, false
	cc.ua = [2]int{}
	limit := cc.s.opts.MaxHeaderBytes
	lineStart := 0
	hosts := 0
	for first := true; ; first = false {
		for {
			line, err := cc.br.ReadSlice('\n')
			cc.head = append(cc.head, line...)
			if len(cc.head) > limit {
				return errHandOff // net/http answers 431
			}
			if err == nil {
				break
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if len(cc.head) > 0 && !isTimeout(err) {
				return errHandOff // net/http reads the rest, or answers 400
			}
			return err // slow head, or the client left
		}
		end := len(cc.head)
		if end-lineStart < 2 || cc.head[end-2] != '\r' {
			return errHandOff // bare LF: let net/http judge
		}
		line := cc.head[lineStart : end-2]
		if first {
			if !cc.requestLine(lineStart, line) {
				return errHandOff
			}
			lineStart = end
			continue
		}
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return errHandOff
		}
		name := line[:colon]
		for _, c := range name {
			if !isTokenChar(c) {
				return errHandOff
			}
		}
		vs, ve := colon+1, len(line)
		for vs < ve && (line[vs] == ' ' || line[vs] == '\t') {
			vs++
		}
		for ve > vs && (line[ve-1] == ' ' || line[ve-1] == '\t') {
			ve--
		}
		val := line[vs:ve]
		for _, c := range val {
			if c < ' ' && c != '\t' || c == 0x7f {
				return errHandOff
			}
		}
		f := hdrField{name: [2]int{lineStart, lineStart + colon}, val: [2]int{lineStart + vs, lineStart + ve}}
		switch len(name) {
		case 2:
			if asciiEqualFold(name, "te") {
				f.drop = true
				cc.teTrailers = cc.teTrailers || bytes.Contains(bytes.ToLower(val), []byte("trailers"))
			}
		case 4:
			if asciiEqualFold(name, "host") {
				hosts++
				if len(val) == 0 {
					return errHandOff
				}
				for _, c := range val {
					if !isHostChar(c) {
						return errHandOff
					}
				}
				cc.host = f.val
				f.drop = true
			}
		case 6:
			if asciiEqualFold(name, "expect") {
				return errHandOff
			}
		case 7:
			if asciiEqualFold(name, "upgrade") || asciiEqualFold(name, "trailer") {
				return errHandOff
			}
		case 10:
			switch {
			case asciiEqualFold(name, "connection"):
				f.drop = true
				if !cc.connectionTokens(f.val) {
					return errHandOff
				}
			case asciiEqualFold(name, "keep-alive"):
				f.drop = true
			case asciiEqualFold(name, "user-agent"):
				cc.ua = f.val
			}
		case 14:
			if asciiEqualFold(name, "content-length") {
				if string(val) != "0" {
					return errHandOff
				}
				f.drop = true
			}
		case 15:
			if asciiEqualFold(name, "x-forwarded-for") {
				f.drop = true
			}
		case 16:
			if asciiEqualFold(name, "x-forwarded-host") || asciiEqualFold(name, "proxy-connection") {
				f.drop = true
			}
		case 17:
			switch {
			case asciiEqualFold(name, "transfer-encoding"):
				return errHandOff
			case asciiEqualFold(name, "x-forwarded-proto"):
				f.drop = true
			}
		case 18:
			if asciiEqualFold(name, "proxy-authenticate") {
				f.drop = true
			}
		case 19:
			if asciiEqualFold(name, "proxy-authorization") {
				f.drop = true
			}
		}
		cc.fields = append(cc.fields, f)
		lineStart = end
	}
	if hosts != 1 {
		return errHandOff // net/http answers 400
	}
	if len(cc.connTokens) > 0 {
		for i := range cc.fields {
			f := &cc.fields[i]
			for _, t := range cc.connTokens {
				if bytes.EqualFold(cc.str(f.name), cc.str(t)) {
					f.drop = true
				}
			}
		}
	}
	return nil
}

// requestLine parses "METHOD /path HTTP/1.1" at head[off:].
func (cc *clientConn) requestLine(off int, line []byte) bool {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return false
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return false
	}
	for _, c := range line[:sp1] {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	if string(line[:sp1]) == http.MethodConnect {
		return false
	}
	uri := rest[:sp2]
	if uri[0] != '/' {
		return false // absolute form, "*": net/http
	}
	for _, c := range uri {
		if c <= ' ' || c == 0x7f {
			return false
		}
	}
	cc.method = [2]int{off, off + sp1}
	cc.uri = [2]int{off + sp1 + 1, off + sp1 + 1 + sp2}
	return true
}

// connectionTokens records the Connection header's tokens.
func (cc *clientConn) connectionTokens(v [2]int) bool {
	s := v[0]
	for i := v[0]; i <= v[1]; i++ {
		if i < v[1] && cc.head[i] != ',' {
			continue
		}
		a, b := s, i
		for a < b && (cc.head[a] == ' ' || cc.head[a] == '\t') {
			a++
		}
		for b > a && (cc.head[b-1] == ' ' || cc.head[b-1] == '\t') {
			b--
		}
		s = i + 1
		if a == b {
			continue
		}
		tok := cc.head[a:b]
		for _, c := range tok {
			if !isTokenChar(c) {
				return false
			}
		}
		switch {
		case asciiEqualFold(tok, "close"):
			cc.closeAfter = true
		case asciiEqualFold(tok, "keep-alive"):
		default:
			cc.connTokens = append(cc.connTokens, [2]int{a, b})
		}
	}
	return true
}

// proxy serves the parsed request; false means close the connection.
func (cc *clientConn) proxy(start time.Time) bool {
	s := cc.s
	host := canonicalHost(string(cc.str(cc.host)))
	b := s.routes.Load().lookup(host)
	if b == nil {
		cc.writeError(start, http.StatusNotFound, "", "<!doctype html><title>404 Not Found</title><h1>404 Not Found</h1><p>No site is configured for host "+
			strconv.Quote(html.EscapeString(host))+" on this server.</p>\n")
		return cc.flush()
	}
	method := cc.str(cc.method)
	cc.resReq.Method = http.MethodGet
	head := false
	switch string(method) {
	case http.MethodGet:
	case http.MethodHead:
		cc.resReq.Method, head = http.MethodHead, true
	default:
		cc.resReq.Method = string(method)
	}
	idempotent := idempotentMethod(cc.resReq.Method)

	var (
		bc  *backendConn
		res *http.Response
		err error
	)
	for attempt := 0; ; attempt++ {
		var reused bool
		bc, reused, err = b.pool.get(context.Background(), attempt >= 8)
		if err != nil {
			break
		}
		res, err = cc.exchange(bc, b.addr)
		if err == nil {
			break
		}
		bc.c.Close()
		if reused && idempotent && errors.Is(err, errRetry) {
			continue
		}
		break
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			cc.logLine(start, 499, 0, b.addr)
			return false
		}
		s.opts.Logger.Warn("proxy: backend error", "host", string(cc.str(cc.host)), "backend", b.addr, "err", err)
		cc.writeError(start, http.StatusBadGateway, b.addr, "<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1><p>The site's backend is not answering.</p>\n")
		return cc.flush()
	}

	bw := cc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(res.StatusCode), 10))
	bw.WriteByte(' ')
	if st := res.Status; len(st) > 4 && st[3] == ' ' { // "200 OK": ReadResponse checked the code
		bw.WriteString(st[4:])
	} else {
		bw.WriteString(http.StatusText(res.StatusCode))
	}
	bw.WriteString("\r\n")
	noBody := head || res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified
	conn := res.Header["Connection"]
	for k, vv := range res.Header {
		if isHop(k) || len(conn) > 0 && connectionListed(conn, k) || k == "Content-Length" && !noBody {
			continue
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	if _, ok := res.Header["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(time.Now().UTC().AppendFormat(nil, http.TimeFormat))
		bw.WriteString("\r\n")
	}
	chunked := !noBody && res.ContentLength < 0
	switch {
	case noBody:
	case chunked:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(res.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			i := 0
			for k := range res.Trailer {
				if i > 0 {
					bw.WriteString(", ")
				}
				bw.WriteString(k)
				i++
			}
			bw.WriteString("\r\n")
		}
	default:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), res.ContentLength, 10))
		bw.WriteString("\r\n")
	}
	if cc.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	n, copyErr := cc.copyBody(res, chunked)
	res.Body.Close()
	if copyErr == nil && chunked {
		bw.WriteString("0\r\n")
		for k, vv := range res.Trailer {
			for _, v := range vv {
				bw.WriteString(k)
				bw.WriteString(": ")
				bw.WriteString(v)
				bw.WriteString("\r\n")
			}
		}
		bw.WriteString("\r\n")
	}
	if copyErr == nil {
		copyErr = bw.Flush()
	}
	status := res.StatusCode
	if copyErr != nil {
		bc.c.Close()
		cc.logLine(start, status, n, b.addr)
		return false
	}
	if res.Close || bc.br.Buffered() > 0 {
		bc.c.Close()
	} else {
		b.pool.put(bc)
	}
	cc.logLine(start, status, n, b.addr)
	return true
}

// exchange writes the request to bc and reads the response head. A
// backend slower than a moment gets a watcher on the client connection:
// the client hanging up aborts the exchange.
func (cc *clientConn) exchange(bc *backendConn, addr string) (*http.Response, error) {
	if err := cc.writeRequest(bc.bw); err != nil {
		return nil, retryable(err, true)
	}
	bc.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := bc.br.Peek(1)
	bc.c.SetReadDeadline(time.Time{})
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		err = cc.watchWhile(bc, func() error { _, err := bc.br.Peek(1); return err })
	}
	if err != nil {
		return nil, retryable(err, false)
	}
	for {
		res, err := http.ReadResponse(bc.br, &cc.resReq)
		if err != nil {
			return nil, err
		}
		switch {
		case res.StatusCode == http.StatusSwitchingProtocols:
			res.Body.Close()
			return nil, errors.New("backend " + addr + " switched protocols without an Upgrade request")
		case res.StatusCode >= 100 && res.StatusCode < 200:
			continue
		}
		return res, nil
	}
}

// watchWhile runs wait while watching the client connection: if the
// client hangs up, bc's deadline is set so wait returns, and the error is
// context.Canceled. With pipelined bytes buffered there is nothing to
// watch.
func (cc *clientConn) watchWhile(bc *backendConn, wait func() error) error {
	if cc.br.Buffered() > 0 || len(cc.cr.pending) > 0 {
		return wait()
	}
	gone := make(chan bool, 1)
	cc.c.SetReadDeadline(time.Time{})
	go func() {
		n, err := cc.c.Read(cc.cr.one[:])
		if n == 1 {
			cc.cr.pending = cc.cr.one[:1]
		}
		isGone := n == 0 && err != nil && !isTimeout(err)
		if isGone {
			bc.c.SetDeadline(aLongTimeAgo)
		}
		gone <- isGone
	}()
	err := wait()
	cc.c.SetReadDeadline(aLongTimeAgo)
	isGone := <-gone
	cc.c.SetReadDeadline(time.Time{})
	if isGone {
		return context.Canceled
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeRequest writes the request to the backend as writeRequest does for
// the net/http side: hop-by-hop headers dropped, X-Forwarded-* set.
func (cc *clientConn) writeRequest(bw *bufio.Writer) error {
	bw.Write(cc.str(cc.method))
	bw.WriteByte(' ')
	bw.Write(cc.str(cc.uri))
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.Write(cc.str(cc.host))
	bw.WriteString("\r\n")
	for _, f := range cc.fields {
		if f.drop {
			continue
		}
		bw.Write(cc.head[f.name[0]:f.val[1]])
		bw.WriteString("\r\n")
	}
	if cc.teTrailers {
		bw.WriteString("Te: trailers\r\n")
	}
	if cc.ip != "" {
		bw.WriteString("X-Forwarded-For: ")
		bw.WriteString(cc.ip)
		bw.WriteString("\r\n")
	}
	bw.WriteString("X-Forwarded-Host: ")
	bw.Write(cc.str(cc.host))
	bw.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	return bw.Flush()
}

// copyBody copies the response body to the client writer, chunk-framed
// when chunked; a body of unknown length is flushed after every read.
func (cc *clientConn) copyBody(res *http.Response, chunked bool) (int64, error) {
	if res.Body == http.NoBody {
		return 0, nil
	}
	buf := cc.s.bufs.Get()
	defer cc.s.bufs.Put(buf)
	var total int64
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			total += int64(n)
			if chunked {
				cc.bw.Write(strconv.AppendInt(cc.bw.AvailableBuffer(), int64(n), 16))
				cc.bw.WriteString("\r\n")
			}
			if _, err := cc.bw.Write(buf[:n]); err != nil {
				return total, err
			}
			if chunked {
				cc.bw.WriteString("\r\n")
				if err := cc.bw.Flush(); err != nil {
					return total, err
				}
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// writeError writes a small HTML error response.
func (cc *clientConn) writeError(start time.Time, code int, backend, body string) {
	bw := cc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\nContent-Type: text/html; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: ")
	bw.Write(time.Now().UTC().AppendFormat(nil, http.TimeFormat))
	bw.WriteString("\r\nContent-Length: ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(body)), 10))
	if cc.closeAfter {
		bw.WriteString("\r\nConnection: close")
	}
	bw.WriteString("\r\n\r\n")
	if string(cc.str(cc.method)) != http.MethodHead {
		bw.WriteString(body)
	}
	cc.logLine(start, code, int64(len(body)), backend)
}

func (cc *clientConn) flush() bool { return cc.bw.Flush() == nil }

func (cc *clientConn) logLine(start time.Time, status int, n int64, backend string) {
	if cc.s.log == nil {
		return
	}
	cc.s.log.writeLine(cc.remote, string(cc.str(cc.method)), string(cc.str(cc.uri)), "HTTP/1.1",
		string(cc.str(cc.host)), string(cc.str(cc.ua)), status, n, start, backend)
}
