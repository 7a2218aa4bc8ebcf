package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The request pipeline. Every request net/http's server has parsed and
// ServeHTTP has routed takes the same way to its backend: a pooled
// keep-alive connection, the request head written by writeHead (the one
// place that decides which headers a backend sees), the body (if any)
// streamed by a second goroutine while the response is awaited, the
// response parsed with http.ReadResponse, checked by checkResponse and
// streamed to the client with the headers copyResponseHeader lets through.
// A protocol upgrade (WebSocket) that the backend accepts turns into a
// two-way relay. Retries follow one rule, canRetry.
//
// A request without a body (GET, HEAD: most of a web site's traffic)
// never leaves the handler goroutine: compared with httputil.ReverseProxy
// over an http.Transport this saves a request clone, the Transport's
// writeLoop and readLoop goroutines and their channel hand-offs.

var aLongTimeAgo = time.Unix(1, 0)

// errRetry marks a failure on a reused connection before any response
// byte arrived: the backend closed it while idle.
var errRetry = errors.New("backend closed an idle connection")

// canRetry is the retry policy: a request may be sent again on another
// connection only when the one it was sent on was reused from the pool
// and failed before any response byte (errRetry: the backend had closed
// it while idle), its method is idempotent and it has no body (a body
// read from the client cannot be read again). The pool checks idle
// connections before handing them out, so this is the rare race of a
// backend closing one at that very moment.
func canRetry(reused bool, method string, hasBody bool, err error) bool {
	return reused && !hasBody && idempotentMethod(method) && errors.Is(err, errRetry)
}

// idempotentMethod reports whether a request with this method may be sent
// again on a fresh connection after a reused one failed (errRetry).
func idempotentMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// maxAttempts bounds the tries on pooled connections; the last is on a
// freshly dialled one.
const maxAttempts = 8

// forward proxies r to b. db is r's body with its read deadline, nil when
// the request has none.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, b *backend, db *deadlineBody) {
	ctx := r.Context()
	cw := clientWatch{ctx: ctx}
	if db != nil {
		cw.start() // the exchange has a second goroutine: no shortcut
	}
	up := upgradeType(r.Header)
	var (
		bc   *backendConn
		res  *http.Response
		sent *bodySender
		err  error
	)
	for attempt := 0; ; attempt++ {
		var reused bool
		bc, reused, err = b.pool.get(ctx, attempt >= maxAttempts-1, time.Now())
		if err != nil {
			cw.stop()
			s.backendError(w, r, db, b.addr, err)
			return
		}
		cw.use(bc)
		res, sent, err = s.exchange(&cw, bc, r, up, db)
		if err == nil {
			break
		}
		bc.c.Close()
		sent.wait(db)
		if canRetry(reused, r.Method, db != nil, err) && ctx.Err() == nil {
			continue
		}
		cw.stop()
		s.backendError(w, r, db, b.addr, err)
		return
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		cw.stop()
		sent.wait(db) // it has finished: the backend switched after the whole request
		s.switchProtocols(w, r, bc, res, up)
		return
	}

	copyResponseHeader(w.Header(), res)
	w.WriteHeader(res.StatusCode)
	if res.Body != http.NoBody && (res.ContentLength < 0 || int64(bc.br.Buffered()) < res.ContentLength) {
		cw.start() // the body may be long in coming
	}
	copyErr := s.copyBody(w, res)
	res.Body.Close()
	if !cw.stop() {
		copyErr = errors.Join(copyErr, ctx.Err())
	}
	// A backend may answer before it has read the whole request body
	// (413, 401): the rest is not sent, and the connection not reused.
	bodyDone := sent.done()
	if !bodyDone {
		bc.c.Close()
		sent.wait(db)
	}
	if copyErr != nil {
		bc.c.Close()
		// The status line is out: all that is left is to abort the
		// response, as httputil.ReverseProxy does.
		panic(http.ErrAbortHandler)
	}
	for k, vv := range res.Trailer {
		w.Header()[k] = vv
	}
	// Bytes already read past the response are unsolicited (see get).
	// After a response that has no body by definition the connection is
	// not reused at all: a backend that sends one anyway may send it a
	// moment later, after the next request went out on the connection,
	// and the next visitor would read it as their response.
	if !bodyDone || sent.failed() || res.Close || bc.br.Buffered() > 0 || bodyless(r.Method, res.StatusCode) {
		bc.c.Close()
	} else {
		bc.dl = time.Time{} // this path sets deadlines of its own
		b.pool.put(bc, time.Now())
	}
}

// exchange writes r to bc and reads the response headers, for at most
// BackendTimeout after the whole request was sent (http.Transport's
// ResponseHeaderTimeout, nginx's proxy_read_timeout). A request body is
// sent by a goroutine (the bodySender returned, nil without a body) while
// the response is awaited: a backend may answer before reading it all.
func (s *Server) exchange(cw *clientWatch, bc *backendConn, r *http.Request, up string, db *deadlineBody) (*http.Response, *bodySender, error) {
	ctx := cw.ctx
	writeHead(bc.bw, r, up, db != nil)
	var (
		sent   *bodySender
		sentAt time.Time
	)
	if db == nil {
		if err := bc.bw.Flush(); err != nil {
			return nil, nil, retryable(err, true)
		}
		sentAt = time.Now()
		// Most answers come within quickWait: the client watch is only
		// set up for a backend that takes longer.
		setReadDeadline(ctx, bc, sentAt.Add(min(quickWait, s.opts.BackendTimeout)))
	} else {
		// No deadline until the body is sent (a connection the fast
		// path used last may still have one).
		setReadDeadline(ctx, bc, time.Time{})
		sent = s.sendBody(ctx, bc, r)
	}
	defer func() {
		sent.stopDeadline()
		setReadDeadline(ctx, bc, time.Time{})
	}()
	// waitLong makes the rest of the wait the whole BackendTimeout, with
	// the client watched.
	long := db != nil
	waitLong := func() {
		if !long {
			long = true
			cw.start()
			setReadDeadline(ctx, bc, sentAt.Add(s.opts.BackendTimeout))
		}
	}
	// Peek first, so an idle connection the backend closed (EOF before
	// any byte) is told apart from a truncated response.
	_, err := bc.br.Peek(1)
	if err != nil && !long && isTimeout(err) && ctx.Err() == nil && quickWait < s.opts.BackendTimeout {
		waitLong()
		_, err = bc.br.Peek(1)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, sent, ctx.Err()
		}
		return nil, sent, retryable(err, false)
	}
	for {
		if !long && !headBuffered(bc.br) {
			waitLong() // the rest of the head is on its way
		}
		res, err := http.ReadResponse(bc.br, r)
		if err != nil {
			if ctx.Err() != nil {
				return nil, sent, ctx.Err()
			}
			return nil, sent, err
		}
		switch {
		case res.StatusCode == http.StatusSwitchingProtocols:
			if got := upgradeType(res.Header); up == "" || !strings.EqualFold(got, up) {
				res.Body.Close()
				return nil, sent, fmt.Errorf("backend %s switched protocols to %q; the request asked for %q", bc.c.RemoteAddr(), got, up)
			}
		case res.StatusCode >= 100 && res.StatusCode < 200:
			continue // informational (100 Continue, 103 Early Hints): not forwarded
		}
		if err := checkResponse(res); err != nil {
			res.Body.Close()
			return nil, sent, fmt.Errorf("backend %s: %w", bc.c.RemoteAddr(), err)
		}
		return res, sent, nil
	}
}

// quickWait is how long a body-less request waits for its answer's first
// byte before the client watch is set up (see clientWatch).
const quickWait = 5 * time.Millisecond

// headBuffered reports whether br holds a whole response head (up to the
// empty line), so reading it cannot block.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// clientWatch ends the wait on the backend connection in use when the
// client goes away (its request's context is done), so that a silent
// backend does not hold the handler. Registering the hook costs
// allocations and a lock on the context, so it is done only when a wait
// may be long: a request body to send, no answer within quickWait, a
// response body not yet all read. A shorter wait ends on its own.
type clientWatch struct {
	ctx  context.Context
	bc   *backendConn
	hook *watchHook // nil until start
}

type watchHook struct {
	cur  atomic.Pointer[backendConn]
	stop func() bool
}

// start sets the hook up, once.
func (cw *clientWatch) start() {
	if cw.hook != nil {
		return
	}
	h := &watchHook{}
	h.cur.Store(cw.bc)
	h.stop = context.AfterFunc(cw.ctx, func() {
		if bc := h.cur.Load(); bc != nil {
			bc.c.SetDeadline(aLongTimeAgo)
		}
	})
	cw.hook = h
}

// use makes bc the connection in use.
func (cw *clientWatch) use(bc *backendConn) {
	cw.bc = bc
	if cw.hook != nil {
		cw.hook.cur.Store(bc)
		if cw.ctx.Err() != nil { // cancelled before cur was set
			bc.c.SetDeadline(aLongTimeAgo)
		}
	}
}

// stop removes the hook; it returns false when the hook has run (the
// client went away while it watched).
func (cw *clientWatch) stop() bool {
	if cw.hook == nil {
		return true
	}
	return cw.hook.stop()
}

// bodyless reports whether a response to method with this status has no
// body whatever its headers say (RFC 9112 §6.3).
func bodyless(method string, status int) bool {
	return method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified
}

// setReadDeadline sets bc's read deadline unless ctx is done: the
// cancellation hook of forward sets a past deadline, which must stay.
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

// upgradeType returns the protocol a request or response asks to switch
// to ("websocket"), or "" when its Connection header does not list
// Upgrade.
func upgradeType(h http.Header) string {
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "upgrade") {
				return h.Get("Upgrade")
			}
		}
	}
	return ""
}

// writeHead writes r's head as an origin-form HTTP/1.1 request: the
// request's end-to-end headers, never a hop-by-hop one (cleanRequest has
// removed those its Connection header named), X-Forwarded-* set as
// httputil.ProxyRequest.SetXForwarded does (the client is the direct peer;
// a client-supplied X-Forwarded-For or Forwarded is not trusted), the
// body's framing (Content-Length, or chunked when the length is unknown
// or there are trailers) and Upgrade when up is set. Expect is not passed
// on: net/http answers 100 Continue itself when the body is first read,
// as nginx does.
func writeHead(bw *bufio.Writer, r *http.Request, up string, hasBody bool) {
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
	for k, vv := range r.Header {
		switch k {
		case "Host", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "Content-Length", "Expect":
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
	switch {
	case hasBody && (r.ContentLength < 0 || len(r.Trailer) > 0):
		bw.WriteString("Transfer-Encoding: chunked\r\n")
		if len(r.Trailer) > 0 {
			bw.WriteString("Trailer: ")
			i := 0
			for k := range r.Trailer {
				if i++; i > 1 {
					bw.WriteString(", ")
				}
				bw.WriteString(k)
			}
			bw.WriteString("\r\n")
		}
	case hasBody && r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), r.ContentLength, 10))
		bw.WriteString("\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n") // as http.Transport: some servers want it
	}
	if up != "" {
		bw.WriteString("Connection: Upgrade\r\nUpgrade: ")
		bw.WriteString(up)
		bw.WriteString("\r\n")
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
}

// copyResponseHeader copies res's end-to-end headers to h: no hop-by-hop
// header, none its Connection header names (checkResponse capped their
// number), and a Trailer header announcing res's trailers. A response
// without Content-Type stays without one: net/http's server would sniff
// one from the body (httputil.ReverseProxy lets it), while nginx and the
// fast path pass the backend's headers as they are, and a proxy guessing
// text/html for a body it did not make is how uploads become pages.
func copyResponseHeader(h http.Header, res *http.Response) {
	eachResponseHeader(res, func(k string, vv []string) { h[k] = vv })
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // present: no sniffing; nil: not written
	}
}

// eachResponseHeader calls fn with each of res's end-to-end headers (the
// rules of copyResponseHeader), for both request paths.
func eachResponseHeader(res *http.Response, fn func(k string, vv []string)) {
	var conn map[string]bool
	if len(res.Header["Connection"]) > 0 {
		conn, _ = connectionSet(res.Header["Connection"])
	}
	for k, vv := range res.Header {
		if isHop(k) || conn[k] {
			continue
		}
		fn(k, vv)
	}
	if len(res.Trailer) > 0 {
		names := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			names = append(names, k)
		}
		fn("Trailer", []string{strings.Join(names, ", ")})
	}
}

// bodySender sends a request body to a backend from its own goroutine.
// Its methods accept a nil receiver: a request without a body.
type bodySender struct {
	ch  chan struct{} // closed when sending has ended
	err error         // set before ch is closed

	mu          sync.Mutex
	headersRead bool // the response's head has arrived (or the wait failed)
}

// sendBody streams r's body to bc after its head (buffered in bc.bw):
// with Content-Length as is, otherwise chunked, followed by r's trailers.
// Every read of the body is flushed: the head leaves with the first bytes
// of the body, and a streaming upload streams. When the body is sent, the
// wait for the response starts (BackendTimeout). On an error the backend
// connection is closed, which ends that wait.
func (s *Server) sendBody(ctx context.Context, bc *backendConn, r *http.Request) *bodySender {
	bs := &bodySender{ch: make(chan struct{})}
	go func() {
		defer close(bs.ch)
		buf := s.bufs.Get()
		defer s.bufs.Put(buf)
		var (
			dst io.Writer = bc.bw
			cw  io.WriteCloser
			err error
		)
		chunked := r.ContentLength < 0 || len(r.Trailer) > 0
		if chunked {
			cw = httputil.NewChunkedWriter(bc.bw)
			dst = cw
		}
		for err == nil {
			n, rerr := r.Body.Read(buf)
			if n > 0 {
				if _, err = dst.Write(buf[:n]); err == nil {
					err = bc.bw.Flush()
				}
			}
			if rerr == io.EOF {
				break
			}
			if rerr != nil && err == nil {
				err = rerr
			}
		}
		if err == nil && chunked {
			err = cw.Close() // the last chunk; trailers follow
			if err == nil {
				err = r.Trailer.Write(bc.bw)
			}
			if err == nil {
				_, err = bc.bw.WriteString("\r\n")
			}
		}
		if err == nil {
			err = bc.bw.Flush()
		}
		if err != nil {
			bs.err = err
			bc.c.Close()
			return
		}
		bs.mu.Lock()
		if !bs.headersRead {
			setReadDeadline(ctx, bc, time.Now().Add(s.opts.BackendTimeout))
		}
		bs.mu.Unlock()
	}()
	return bs
}

// stopDeadline tells the sender the wait for the response headers is
// over: a response streamed while the body is still sent is not cut off
// by BackendTimeout.
func (bs *bodySender) stopDeadline() {
	if bs != nil {
		bs.mu.Lock()
		bs.headersRead = true
		bs.mu.Unlock()
	}
}

// done reports whether the whole body was sent (or there was none).
func (bs *bodySender) done() bool {
	if bs == nil {
		return true
	}
	select {
	case <-bs.ch:
		return true
	default:
		return false
	}
}

// failed reports whether sending ended with an error.
func (bs *bodySender) failed() bool { return bs != nil && bs.done() && bs.err != nil }

// wait stops reading the client's body and waits for the sender to end,
// so that nothing reads the request after its handler returns.
func (bs *bodySender) wait(db *deadlineBody) {
	if bs == nil || bs.done() {
		return
	}
	db.abort()
	<-bs.ch
}

// switchProtocols completes an upgrade the backend accepted (res is its
// 101): it takes the client connection over from net/http, passes the 101
// on and relays bytes both ways until either side closes.
func (s *Server) switchProtocols(w http.ResponseWriter, r *http.Request, bc *backendConn, res *http.Response, up string) {
	defer bc.c.Close()
	// The relay needs no deadline: it ends when either side closes.
	bc.c.SetDeadline(time.Time{})
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.backendError(w, r, nil, bc.c.RemoteAddr().String(), fmt.Errorf("upgrade to %s: %w", up, err))
		return
	}
	defer client.Close()
	h := http.Header{}
	copyResponseHeader(h, res)
	h["Connection"] = []string{"Upgrade"}
	h["Upgrade"] = []string{up}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	h.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	relay := func(dst io.Writer, src io.Reader) {
		defer wg.Done()
		buf := s.bufs.Get()
		defer s.bufs.Put(buf)
		io.CopyBuffer(dst, src, buf)
		done <- struct{}{}
	}
	// The readers hold what each side sent after its head.
	go relay(bc.c, brw.Reader)
	go relay(client, bc.br)
	<-done // one side is finished: so is the relay
	client.Close()
	bc.c.Close()
	wg.Wait()
}

// copyBody streams the response body. A body of unknown length (chunked,
// server-sent events, long polls) is flushed after every read, as
// httputil.ReverseProxy does.
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
// 408 when the client's body (db, nil for none) did, or 499 when the
// client went away.
func (s *Server) backendError(w http.ResponseWriter, r *http.Request, db *deadlineBody, addr string, err error) {
	// First: a body read that timed out also cancels the request's
	// context (net/http does on any read error), from inside the read.
	if db != nil && errors.Is(err, context.Canceled) {
		db.settle()
	}
	if db != nil && (db.timedOut.Load() || errors.Is(err, context.Canceled) && db.overdue(time.Now())) {
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
