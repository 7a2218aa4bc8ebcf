package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The fast path: most requests a web site gets are a GET or HEAD without
// a body on a keep-alive connection. Each client connection starts on
// this loop, which reads request heads into one buffer, parses the
// strict subset parseFastRequest accepts and forwards them on the pooled
// backend connections, without net/http's per-request goroutine, context,
// header maps and response writer (issue 21: that machinery cost about
// 60% more CPU per request than nginx). At the first request it does not
// serve itself (a body, an upgrade, an unknown host, an odd byte, a head
// larger than its buffer) it hands the connection, with the bytes read
// and not yet served, to net/http's server (ServeHTTP and the request
// pipeline), which keeps it to the end. Responses take the checks of
// the pipeline: checkResponse, the hop-by-hop rules, the unsolicited-byte
// check before a backend connection is reused.

// fastBufSize is the fast path's read buffer per connection: a request
// head that does not fit goes to net/http's path (up to MaxHeaderBytes).
const fastBufSize = 4 << 10

// clientPoll is how often a wait on a backend checks whether the client
// is still there (net/http's path is told by the request's context).
const clientPoll = 100 * time.Millisecond

// fastConn is a client connection on the fast loop.
type fastConn struct {
	s      *Server
	c      *limitedConn
	lim    *connLimiter
	remote string // RemoteAddr().String()
	ip     string // the client IP, for X-Forwarded-For
	peek   *peeker
	buf    []byte
	r, w   int // unread bytes are buf[r:w]
	req    fastRequest
	res    fastResponse
	stub   http.Request // what http.ReadResponse needs: the method
	host   string       // the last Host header, as a string
	ua     string       // the last User-Agent, as a string
	bw     *bufio.Writer
	end    time.Time // when the last request was answered (log)
}

// fastState tracks the fast connections for a graceful shutdown.
type fastState struct {
	mu       sync.Mutex
	conns    map[*fastConn]struct{}
	closing  atomic.Bool
	wg       sync.WaitGroup
	handoffs atomic.Int64 // connections given to net/http (for tests)
}

var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// serveFast runs the fast loop on c until it closes or is handed off.
func (s *Server) serveFast(c *limitedConn, lim *connLimiter, hand *handoffListener) {
	if _, ok := c.Conn.(*net.TCPConn); !ok {
		// TLS or another transport: net/http's path knows its details
		// (X-Forwarded-Proto, r.TLS).
		if !hand.give(c) {
			c.Close()
		}
		return
	}
	fc := s.newFastConn(c, lim)
	if !s.fast.add(fc) {
		c.Close()
		return
	}
	defer s.fast.remove(fc)
	lim.state(c, http.StateNew)
	fc.run(hand, nil)
}

// newFastConn makes the fast loop's state for c.
func (s *Server) newFastConn(c *limitedConn, lim *connLimiter) *fastConn {
	fc := &fastConn{s: s, c: c, lim: lim, remote: c.RemoteAddr().String(), peek: newPeeker(c.Conn)}
	c.raw = newSysConn(c.Conn)
	if ip, _, err := net.SplitHostPort(fc.remote); err == nil {
		fc.ip = ip
	}
	fc.buf = make([]byte, fastBufSize)
	return fc
}

// run is the fast loop. With sent set, it first finishes the request
// fc.req, which the event loop already sent to a backend (sent serves
// it and reports whether the connection stays open).
func (fc *fastConn) run(hand *handoffListener, sent func() bool) {
	s, c, lim := fc.s, fc.c, fc.lim
	limit := min(fastBufSize, s.opts.MaxHeaderBytes)
	// The read deadline: ReadHeaderTimeout from the first byte of a head
	// (from the accept for the first), IdleTimeout between requests. The
	// idle one is moved only when an eighth of it has passed since it was
	// set (moving a deadline costs a runtime timer update), so an idle
	// connection is closed after 7/8 of IdleTimeout at the earliest.
	const (
		dlHeader = iota
		dlIdle
		dlStale // a head begun in the buffer: set a header deadline
	)
	dl, dlSet := dlHeader, time.Now()
	c.SetReadDeadline(dlSet.Add(s.opts.ReadHeaderTimeout))
	// A head is parsed when the bytes read may end it (an empty line),
	// not after every read: a head trickled in a byte at a time would
	// otherwise cost a parse per byte.
	mayEnd := true
	for {
		res := parseMore
		if sent != nil {
			res = parseOK
		} else if fc.w > fc.r && mayEnd {
			res = parseFastRequest(fc.buf[fc.r:fc.w], s.opts.MaxHeaders, &fc.req)
		}
		switch res {
		case parseOK:
			var keep bool
			if sent != nil {
				keep, sent = sent(), nil
			} else {
				b := s.routes.Load().lookup(fc.hostString())
				if b == nil {
					fc.handoff(hand) // net/http's path answers 404
					return
				}
				if s.fast.closing.Load() {
					c.Close()
					return
				}
				lim.state(c, http.StateActive)
				keep = fc.serve(b)
			}
			fc.r += fc.req.n
			if !keep {
				c.Close()
				return
			}
			lim.state(c, http.StateIdle)
			if fc.r == fc.w {
				fc.r, fc.w = 0, 0
				if now := fc.end; dl != dlIdle || now.Sub(dlSet) > s.opts.IdleTimeout/8 {
					c.SetReadDeadline(now.Add(s.opts.IdleTimeout))
					dl, dlSet = dlIdle, now
				}
			} else {
				dl = dlStale
			}
			mayEnd = true
			if s.fast.closing.Load() {
				c.Close()
				return
			}
			continue
		case parseSlow:
			fc.handoff(hand)
			return
		}
		// parseMore: read on, within the head's time.
		if fc.w-fc.r >= limit {
			fc.handoff(hand) // net/http answers 431, or serves a big head
			return
		}
		if fc.r > 0 {
			fc.w = copy(fc.buf, fc.buf[fc.r:fc.w])
			fc.r = 0
		}
		if fc.w > 0 && dl != dlHeader {
			now := time.Now()
			c.SetReadDeadline(now.Add(s.opts.ReadHeaderTimeout))
			dl, dlSet = dlHeader, now
		}
		n, err := c.raw.Read(fc.buf[fc.w:limit])
		from := max(fc.r, fc.w-3)
		fc.w += n
		if err != nil {
			c.Close()
			return
		}
		mayEnd = headEnd(fc.buf[from:fc.w]) || fc.w-fc.r >= limit
	}
}

// headEnd reports whether b holds an empty line: the end of a head
// (CRLF, or bare LF, which the parser leaves to net/http).
func headEnd(b []byte) bool {
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// hostString returns the request's Host as a lower-case string without
// port, reusing the last one when the header is the same.
func (fc *fastConn) hostString() string {
	if string(fc.req.host) != fc.host {
		fc.host = string(fc.req.host)
	}
	return canonicalHost(fc.host)
}

// handoff gives the connection, with its unserved bytes, to net/http.
func (fc *fastConn) handoff(hand *handoffListener) {
	fc.s.fast.handoffs.Add(1)
	fc.c.raw = nil // net/http's path writes through net.Conn
	if fc.w > fc.r {
		fc.c.pre = append([]byte(nil), fc.buf[fc.r:fc.w]...)
	}
	fc.c.SetReadDeadline(time.Time{})
	if !hand.give(fc.c) {
		fc.c.Close()
	}
}

// serve forwards the parsed request to b and writes the response; it
// reports whether the client connection stays open.
func (fc *fastConn) serve(b *backend) bool {
	s := fc.s
	start := time.Now()
	method := fc.req.method()
	fc.stub.Method = method
	var (
		bc  *backendConn
		res *http.Response
		err error
	)
	for attempt := 0; ; attempt++ {
		var reused bool
		bc, reused, err = b.pool.get(s.fwdCtx, attempt >= maxAttempts-1, start)
		if err != nil {
			break
		}
		res, err = fc.exchange(bc, start)
		if err == nil || err == errFastResponse {
			break
		}
		bc.watch = nil
		bc.c.Close()
		if errors.Is(err, errClientGone) || !canRetry(reused, method, false, err) {
			break
		}
	}
	return fc.respond(b, bc, res, err, start)
}

// serveSent finishes the request fc.req, whose head the event loop
// already sent on bc at start: it reads the response and passes it on,
// as serve does.
func (fc *fastConn) serveSent(b *backend, bc *backendConn, start time.Time) bool {
	fc.stub.Method = fc.req.method()
	res, err := fc.readResponseHead(bc, start)
	if err != nil && err != errFastResponse {
		bc.watch = nil
		bc.c.Close()
	}
	return fc.respond(b, bc, res, err, start)
}

// respond passes on the outcome of an exchange with b on bc (a response
// head in res or fc.res, or err) and reports whether the client
// connection stays open.
func (fc *fastConn) respond(b *backend, bc *backendConn, res *http.Response, err error, start time.Time) bool {
	fr := &fc.req
	method := fr.method()
	if err == errFastResponse {
		n, werr := fc.writeFastResponse(bc)
		bc.watch = nil
		fc.log(fc.res.status, n, start, b.addr)
		if werr != nil {
			bc.c.Close()
			return false
		}
		if fc.res.close || bc.br.Buffered() > 0 || bodyless(method, fc.res.status) {
			bc.c.Close()
		} else {
			b.pool.put(bc, fc.end)
		}
		return !fr.close
	}
	if err != nil {
		if errors.Is(err, errClientGone) {
			fc.log(499, 0, start, b.addr)
			return false
		}
		fc.s.opts.Logger.Warn("proxy: backend error", "host", string(fr.host), "backend", b.addr, "err", err)
		code := fc.writeError(err)
		fc.log(code, 0, start, b.addr)
		return !fr.close
	}
	n, werr := fc.writeResponse(bc, res)
	if werr != nil {
		// Closed first: closing a body reads the rest of it.
		bc.c.Close()
	}
	res.Body.Close()
	bc.watch = nil
	fc.log(res.StatusCode, n, start, b.addr)
	if werr != nil {
		return false
	}
	if res.Close || bc.br.Buffered() > 0 || bodyless(method, res.StatusCode) {
		bc.c.Close()
	} else {
		b.pool.put(bc, fc.end)
	}
	return !fr.close
}

// errFastResponse says exchange parsed the response head into fc.res
// (parseFastResponse): it is not an error.
var errFastResponse = errors.New("fast response")

// errClientGone ends a wait on a backend whose client has left.
var errClientGone = errors.New("client closed the connection")

// exchange writes the request head to bc and reads the response head,
// waiting at most BackendTimeout from start, and less when the client
// leaves.
func (fc *fastConn) exchange(bc *backendConn, start time.Time) (*http.Response, error) {
	writeFastHead(bc.bw, &fc.req, fc.ip)
	if err := bc.bw.Flush(); err != nil {
		return nil, retryable(err, true)
	}
	return fc.readResponseHead(bc, start)
}

// readResponseHead reads the response head to the request sent on bc at
// start, as exchange does after the write.
func (fc *fastConn) readResponseHead(bc *backendConn, start time.Time) (*http.Response, error) {
	// Peek first, so an idle connection the backend closed (EOF before
	// any byte) is told apart from a truncated response.
	bc.watch, bc.until, bc.now = fc.peek, start.Add(fc.s.opts.BackendTimeout), start
	if _, err := bc.br.Peek(1); err != nil {
		if errors.Is(err, errClientGone) || isTimeout(err) {
			return nil, err
		}
		return nil, retryable(err, false)
	}
	if b, _ := bc.br.Peek(bc.br.Buffered()); parseFastResponse(b, fc.req.head, &fc.res) == parseOK {
		return nil, errFastResponse
	}
	for {
		res, err := http.ReadResponse(bc.br, &fc.stub)
		if err != nil {
			return nil, err
		}
		switch {
		case res.StatusCode == http.StatusSwitchingProtocols:
			bc.c.Close() // before Close reads the rest
			res.Body.Close()
			return nil, fmt.Errorf("backend %s switched protocols; the request asked for none", bc.c.RemoteAddr())
		case res.StatusCode >= 100 && res.StatusCode < 200:
			continue // informational: not forwarded
		}
		if err := checkResponse(res); err != nil {
			bc.c.Close()
			res.Body.Close()
			return nil, fmt.Errorf("backend %s: %w", bc.c.RemoteAddr(), err)
		}
		bc.until = time.Time{} // the body may take its time
		return res, nil
	}
}

// writeFastHead writes the head of fr for a backend: what writeHead
// writes for the same request on net/http's path (FuzzFastParse compares
// the two), with the header names as the client sent them.
func writeFastHead(w *bufio.Writer, fr *fastRequest, ip string) {
	w.Write(appendFastHead(w.AvailableBuffer(), fr, ip))
}

// appendFastHead appends the head writeFastHead writes.
func appendFastHead(b []byte, fr *fastRequest, ip string) []byte {
	b = append(b, fr.method()...)
	b = append(b, ' ')
	b = append(b, fr.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, fr.host...)
	b = append(b, "\r\n"...)
	for _, f := range fr.fields {
		b = append(b, f.name...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	if ip != "" {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, ip...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-Host: "...)
	b = append(b, fr.host...)
	return append(b, "\r\nX-Forwarded-Proto: http\r\n\r\n"...)
}

// writeResponse passes res on to the client: its status, the headers
// forwardResponseHeaders lets through, the body framed by Content-Length
// or re-chunked, and trailers. It returns the body bytes written.
func (fc *fastConn) writeResponse(bc *backendConn, res *http.Response) (int64, error) {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(fc.c)
	defer func() { bw.Reset(nil); writerPool.Put(bw) }()
	fr := &fc.req
	writeStatusLine(bw, res.StatusCode)
	hasDate := false
	eachResponseHeader(res, func(k string, vv []string) {
		switch k {
		case "Content-Length":
			return // set below from the parsed length
		case "Date":
			hasDate = true
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeHeaderValue(bw, v)
			bw.WriteString("\r\n")
		}
	})
	if !hasDate {
		bw.WriteString("Date: ")
		bw.Write(httpDate())
		bw.WriteString("\r\n")
	}
	if fr.close {
		bw.WriteString("Connection: close\r\n")
	}
	noBody := bodyless(fr.method(), res.StatusCode)
	chunked := false
	switch {
	case res.StatusCode == http.StatusNoContent || res.StatusCode == http.StatusNotModified:
	case res.ContentLength >= 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), res.ContentLength, 10))
		bw.WriteString("\r\n")
	case !noBody:
		chunked = true
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	bw.WriteString("\r\n")
	if noBody {
		return 0, bw.Flush()
	}
	var n int64
	var err error
	if chunked {
		n, err = fc.copyChunked(bw, bc, res)
	} else {
		n, err = fc.copyBody(bw, bc, res.Body)
	}
	if err != nil {
		return n, err
	}
	return n, bw.Flush()
}

// writeFastResponse passes on the response parseFastResponse read
// (fc.res, still in bc's buffer): as writeResponse does, with the header
// lines as the backend sent them. It returns the body bytes written.
func (fc *fastConn) writeFastResponse(bc *backendConn) (int64, error) {
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(fc.c)
	defer func() { bw.Reset(nil); writerPool.Put(bw) }()
	fr := &fc.res
	bw.Write(appendFastResponseHead(bw.AvailableBuffer(), fr, fc.req.close))
	bc.br.Discard(fr.n) // after the fields, which point into its buffer
	var n int64
	if bodyless(fc.req.method(), fr.status) {
		return 0, bw.Flush()
	}
	for n < fr.length {
		// From the read buffer while it has bytes (the whole body of a
		// small response: it leaves with the head, in one write), then
		// in reads of up to the buffer's size.
		if bc.br.Buffered() == 0 {
			if _, err := bc.br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return n, err
			}
		}
		p, _ := bc.br.Peek(int(min(int64(bc.br.Buffered()), fr.length-n)))
		if _, err := bw.Write(p); err != nil {
			return n, err
		}
		bc.br.Discard(len(p))
		n += int64(len(p))
	}
	return n, bw.Flush()
}

// appendFastResponseHead appends the head passed on to the client for
// the response fr parsed: the status, its end-to-end header lines as the
// backend sent them, a Date when it had none, Connection: close when the
// client asked for it (reqClose), and the Content-Length.
func appendFastResponseHead(b []byte, fr *fastResponse, reqClose bool) []byte {
	b = appendStatusLine(b, fr.status)
	for _, f := range fr.fields {
		b = append(b, f.name...)
		b = append(b, ": "...)
		b = append(b, f.value...)
		b = append(b, "\r\n"...)
	}
	if !fr.hasDate {
		b = append(b, "Date: "...)
		b = append(b, httpDate()...)
		b = append(b, "\r\n"...)
	}
	if reqClose {
		b = append(b, "Connection: close\r\n"...)
	}
	if fr.length >= 0 && fr.status != http.StatusNoContent && fr.status != http.StatusNotModified {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, fr.length, 10)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// copyBody copies a body of known length to bw. (A read that has to wait
// for the backend checks the client: watchedReader.)
func (fc *fastConn) copyBody(bw *bufio.Writer, bc *backendConn, body io.Reader) (int64, error) {
	buf := fc.s.bufs.Get()
	defer fc.s.bufs.Put(buf)
	var n int64
	for {
		m, rerr := body.Read(buf)
		if m > 0 {
			if _, err := bw.Write(buf[:m]); err != nil {
				return n, err
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// chunkWriter frames what is written as one HTTP/1.1 chunk per write.
type chunkWriter struct{ bw *bufio.Writer }

func (cw chunkWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cw.bw.Write(strconv.AppendInt(cw.bw.AvailableBuffer(), int64(len(p)), 16))
	cw.bw.WriteString("\r\n")
	cw.bw.Write(p)
	_, err := cw.bw.WriteString("\r\n")
	return len(p), err
}

// copyChunked re-frames a body of unknown length as chunks, flushed as
// they come, then the trailers.
func (fc *fastConn) copyChunked(bw *bufio.Writer, bc *backendConn, res *http.Response) (int64, error) {
	buf := fc.s.bufs.Get()
	defer fc.s.bufs.Put(buf)
	cw := chunkWriter{bw}
	var n int64
	for {
		m, rerr := res.Body.Read(buf)
		if m > 0 {
			cw.Write(buf[:m])
			n += int64(m)
			if err := bw.Flush(); err != nil {
				return n, err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, rerr
		}
	}
	bw.WriteString("0\r\n")
	for k, vv := range res.Trailer {
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeHeaderValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	_, err := bw.WriteString("\r\n")
	return n, err
}

// writeError answers a failed exchange: 504 when the backend timed out,
// else 502, as backendError does.
func (fc *fastConn) writeError(err error) int {
	code := errorStatus(err)
	bw := writerPool.Get().(*bufio.Writer)
	bw.Reset(fc.c)
	defer func() { bw.Reset(nil); writerPool.Put(bw) }()
	bw.Write(appendErrorResponse(bw.AvailableBuffer(), code, fc.req.close, fc.req.head))
	bw.Flush()
	return code
}

// errorStatus is the status of a failed exchange: 504 when the backend
// timed out, else 502.
func errorStatus(err error) int {
	if isTimeout(err) {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// appendErrorResponse appends the whole 502 or 504 response (code) of the
// fast paths; head: the request was a HEAD (no body).
func appendErrorResponse(b []byte, code int, reqClose, head bool) []byte {
	text := "<!doctype html><title>502 Bad Gateway</title><h1>502 Bad Gateway</h1><p>The site's backend is not answering.</p>\n"
	if code == http.StatusGatewayTimeout {
		text = "<!doctype html><title>504 Gateway Timeout</title><h1>504 Gateway Timeout</h1><p>The site's backend did not answer in time.</p>\n"
	}
	b = appendStatusLine(b, code)
	b = append(b, "Content-Type: text/html; charset=utf-8\r\nDate: "...)
	b = append(b, httpDate()...)
	b = append(b, "\r\n"...)
	if reqClose {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(text)), 10)
	b = append(b, "\r\n\r\n"...)
	if !head {
		b = append(b, text...)
	}
	return b
}

// log writes the access log line of the request served and sets fc.end,
// the time the rest of the request's bookkeeping uses (one clock read).
func (fc *fastConn) log(status int, n int64, start time.Time, backend string) {
	fc.end = time.Now()
	if a := fc.s.log; a != nil {
		fr := &fc.req
		if string(fr.ua) != fc.ua {
			fc.ua = string(fr.ua)
		}
		client := fc.ip
		if client == "" {
			client = fc.remote
		}
		a.writeLine(client, fr.method(), string(fr.target), "HTTP/1.1", fc.host, fc.ua, status, n, start, fc.end, backend)
	}
}

// writeStatusLine writes "HTTP/1.1 code text", as net/http's server does.
func writeStatusLine(bw *bufio.Writer, code int) {
	bw.Write(appendStatusLine(bw.AvailableBuffer(), code))
}

// appendStatusLine appends the status line writeStatusLine writes.
func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if text := http.StatusText(code); text != "" {
		b = append(b, text...)
	} else {
		b = append(b, "status code "...)
		b = strconv.AppendInt(b, int64(code), 10)
	}
	return append(b, "\r\n"...)
}

// writeHeaderValue writes v with CR and LF replaced by spaces, as
// http.Header.Write does.
func writeHeaderValue(bw *bufio.Writer, v string) {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			bw.WriteByte(' ')
		} else {
			bw.WriteByte(c)
		}
	}
}

// httpDate returns the current time in the Date header's format, made
// once a second.
func httpDate() []byte {
	now := time.Now().Unix()
	if d := dateCache.Load(); d != nil && d.sec == now {
		return d.b
	}
	d := &cachedDate{sec: now, b: time.Unix(now, 0).UTC().AppendFormat(nil, http.TimeFormat)}
	dateCache.Store(d)
	return d.b
}

type cachedDate struct {
	sec int64
	b   []byte
}

var dateCache atomic.Pointer[cachedDate]

func (f *fastState) add(fc *fastConn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing.Load() {
		return false
	}
	if f.conns == nil {
		f.conns = map[*fastConn]struct{}{}
	}
	f.conns[fc] = struct{}{}
	f.wg.Add(1)
	return true
}

func (f *fastState) remove(fc *fastConn) {
	f.mu.Lock()
	delete(f.conns, fc)
	f.mu.Unlock()
	f.wg.Done()
}

// shutdown stops the fast connections: idle ones at once, the others when
// their request is answered, the rest when ctx is done.
func (f *fastState) shutdown(ctx interface{ Done() <-chan struct{} }) {
	f.mu.Lock()
	f.closing.Store(true)
	for fc := range f.conns {
		// Wakes a read for the next request; a request being served
		// is not reading, and its loop sees closing afterwards.
		fc.c.SetReadDeadline(aLongTimeAgo)
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	f.mu.Lock()
	for fc := range f.conns {
		fc.c.Close()
	}
	f.mu.Unlock()
}

// handoffListener feeds connections from the fast loop to net/http's
// server.
type handoffListener struct {
	addr  net.Addr
	ch    chan net.Conn
	done  chan struct{}
	close sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// give passes c on; false when the listener is closed.
func (h *handoffListener) give(c net.Conn) bool {
	select {
	case h.ch <- c:
		return true
	case <-h.done:
		return false
	}
}

func (h *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

func (h *handoffListener) Close() error {
	h.close.Do(func() { close(h.done) })
	return nil
}

func (h *handoffListener) Addr() net.Addr { return h.addr }
