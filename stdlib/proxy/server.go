package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options configures the embedded proxy.
type Options struct {
	// Listen is the HTTP listen address. Default ":80". Ignored by
	// Server.Serve, which takes a listener.
	Listen string
	// RoutesFile is the registry file to serve and watch (Registry.Path).
	// Required. A missing file is an empty table; its directory is created.
	RoutesFile string
	// AccessLog receives one line per request. Default nil: no access log.
	AccessLog io.Writer
	// Logger receives errors and reload events. Default: discarded.
	Logger *slog.Logger
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle client keep-alive connections. Default 120s.
	IdleTimeout time.Duration
	// DialTimeout bounds connecting to a backend. Default 5s.
	DialTimeout time.Duration
	// MaxHeaderBytes limits the request line plus headers; larger requests
	// get 431. Default 64 KiB.
	MaxHeaderBytes int
	// ShutdownTimeout is how long graceful shutdown waits for in-flight
	// requests and TCP forwards before closing them. Default 30s.
	ShutdownTimeout time.Duration
	// PollInterval is how often the registry file is also checked by
	// stat, in case a file-system event is missed. Default 2s.
	PollInterval time.Duration
	// MaxIdleConnsPerHost is the number of idle keep-alive connections
	// kept per backend. Default 256.
	MaxIdleConnsPerHost int
	// BodyTimeout is how long a client may take to send any byte of a
	// request body; then the request ends with 408 (or is cut off if the
	// response has started). Default 60s, nginx's client_body_timeout.
	BodyTimeout time.Duration
	// WriteTimeout closes a client connection when one write to it makes
	// no progress for this long (a client that stops reading). Default 60s,
	// nginx's send_timeout.
	WriteTimeout time.Duration
	// BackendTimeout bounds the wait for a backend's response headers
	// after the request was sent; then the client gets 504. Default 60s,
	// nginx's proxy_read_timeout.
	BackendTimeout time.Duration
	// MaxConns caps the open client connections. At the cap, the longest
	// idle connection (keep-alive, or not yet sent a whole request head) is
	// closed to make room, as nginx reclaims keep-alive connections; with
	// none idle, the new connection gets 503. Default 4096 (an idle
	// connection costs 15-35 KiB, measured: up to 140 MiB at the cap; nginx
	// on Debian takes 768 per core), or half the file-descriptor limit
	// (RLIMIT_NOFILE) if lower.
	MaxConns int
	// MaxConnsPerIP caps the open connections from one client address;
	// more get 503 and are closed. Default 512.
	MaxConnsPerIP int
	// MaxHeaders caps the header fields of a request; more get 431.
	// Default 100 (Apache's LimitRequestFields).
	MaxHeaders int
}

func (o *Options) defaults() {
	if o.Listen == "" {
		o.Listen = ":80"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 120 * time.Second
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.MaxHeaderBytes == 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 30 * time.Second
	}
	if o.PollInterval == 0 {
		o.PollInterval = 2 * time.Second
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 256
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 60 * time.Second
	}
	if o.BodyTimeout == 0 {
		o.BodyTimeout = 60 * time.Second
	}
	if o.BackendTimeout == 0 {
		o.BackendTimeout = 60 * time.Second
	}
	if o.MaxConns == 0 {
		// Half the descriptors: each proxied request may hold a backend
		// connection too.
		o.MaxConns = 4096
		if n := fdLimit() / 2; n > 0 && n < o.MaxConns {
			o.MaxConns = max(n, 16)
		}
	}
	if o.MaxConnsPerIP == 0 {
		o.MaxConnsPerIP = 512
	}
	if o.MaxHeaders == 0 {
		o.MaxHeaders = 100
	}
}

// Serve runs the embedded proxy on opts.Listen until ctx is cancelled, then
// shuts down gracefully. It returns nil after a clean shutdown.
func Serve(ctx context.Context, opts Options) error {
	s, err := NewServer(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("proxy serve %s: %w", s.opts.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Server is the embedded reverse proxy. Create it with NewServer.
type Server struct {
	opts   Options
	dialer *net.Dialer
	bufs   bufferPool
	routes atomic.Pointer[snapshot]
	log    *accessLog

	mu       sync.Mutex // guards forwards and the route state below
	forwards map[string]*forwarder
	live     liveRoutes
	conns    sync.WaitGroup // TCP-forward connections
	fwdCtx   context.Context
	stopFwd  context.CancelFunc

	fast  fastState  // the connections on the fast path
	loops *loopGroup // the event loops, while Serve runs them (nil: none)
}

// NewServer validates opts and loads the routing table.
func NewServer(opts Options) (*Server, error) {
	opts.defaults()
	if opts.RoutesFile == "" {
		return nil, fmt.Errorf("proxy serve: routes file not set: %w", ErrInvalid)
	}
	s := &Server{opts: opts, forwards: map[string]*forwarder{}}
	s.dialer = &net.Dialer{Timeout: opts.DialTimeout, KeepAlive: 30 * time.Second}
	if opts.AccessLog != nil {
		s.log = &accessLog{w: bufio.NewWriterSize(opts.AccessLog, 64<<10)}
	}
	s.routes.Store(&snapshot{exact: map[string]*backend{}, wild: map[string]*backend{}})
	return s, nil
}

// Serve accepts HTTP connections on ln and runs the TCP forwards until ctx
// is cancelled; then it stops accepting, waits up to ShutdownTimeout for
// in-flight requests and forwarded connections, and returns nil.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if err := os.MkdirAll(filepath.Dir(s.opts.RoutesFile), 0o755); err != nil {
		ln.Close()
		return fmt.Errorf("proxy serve %s: %w", s.opts.RoutesFile, err)
	}
	s.fwdCtx, s.stopFwd = context.WithCancel(context.Background())
	defer s.stopFwd()
	if err := s.reload(true); err != nil {
		s.opts.Logger.Error("proxy: initial routes", "err", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.watch(watchCtx) }()
	if s.log != nil {
		wg.Add(1)
		go func() { defer wg.Done(); s.log.flushLoop(watchCtx) }()
	}

	lim := newConnLimiter(ln, &s.opts)
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		ConnState:         lim.state,
		ErrorLog:          slog.NewLogLogger(s.opts.Logger.Handler(), slog.LevelWarn),
	}
	// Every connection starts on the fast path (fastpath.go), which hands
	// the ones it does not serve to net/http's server through hand.
	hand := newHandoffListener(ln.Addr())
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(hand) }()
	// On Linux, event loops serve the fast path's requests (evloop_linux.go)
	// and pass the goroutine fast path what they do not serve.
	loops := s.startLoops(ln, lim, hand)
	s.mu.Lock()
	s.loops = loops
	s.mu.Unlock()
	if loops == nil {
		go func() { errc <- s.acceptFast(lim, hand) }()
	}

	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	lim.Close()
	stopWatch()
	wg.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	fastDone := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		if loops != nil {
			wg.Add(1)
			go func() { defer wg.Done(); loops.shutdown(sctx) }()
		}
		s.fast.shutdown(sctx)
		wg.Wait()
		close(fastDone)
	}()
	shutdownErr := srv.Shutdown(sctx)
	<-fastDone
	s.closeForwards(sctx)
	s.routes.Load().each(func(b *backend) { b.pool.closeIdle(true) })
	if s.log != nil {
		s.log.flush()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("proxy serve %s: %w", ln.Addr(), err)
	}
	if shutdownErr != nil {
		srv.Close()
		s.opts.Logger.Warn("proxy: shutdown timed out; closed remaining connections", "err", shutdownErr)
	}
	return nil
}

// acceptFast accepts client connections and runs each on the fast loop.
// Like net/http's server, it waits a little after a temporary error
// (such as running out of file descriptors) and goes on.
func (s *Server) acceptFast(lim *connLimiter, hand *handoffListener) error {
	var wait time.Duration
	for {
		c, err := lim.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				wait = min(max(2*wait, 5*time.Millisecond), time.Second)
				s.opts.Logger.Warn("proxy: accept; retrying", "err", err, "in", wait)
				time.Sleep(wait)
				continue
			}
			return err
		}
		wait = 0
		go s.serveFast(c.(*limitedConn), lim, hand)
	}
}

// snapshot is an immutable routing table for the HTTP side.
type snapshot struct {
	exact map[string]*backend
	wild  map[string]*backend // key: suffix without "*.", e.g. "example.com"
	def   *backend
	// recent holds the exact hosts changed since exact was built (nil:
	// removed), so a change copies this small map, not exact (live.go).
	recent map[string]*backend
}

type backend struct {
	addr string
	pool *backendPool
}

// each calls fn once for every backend of the snapshot.
func (sn *snapshot) each(fn func(*backend)) {
	seen := map[*backend]bool{}
	visit := func(b *backend) {
		if b != nil && !seen[b] {
			seen[b] = true
			fn(b)
		}
	}
	for h, b := range sn.exact {
		if _, changed := sn.recent[h]; !changed {
			visit(b)
		}
	}
	for _, b := range sn.recent {
		visit(b)
	}
	for _, b := range sn.wild {
		visit(b)
	}
	visit(sn.def)
}

func (sn *snapshot) lookup(host string) *backend {
	if b, ok := sn.exactRoute(host); ok {
		return b
	}
	// Longest wildcard first: a.b.example.com tries b.example.com, then
	// example.com, then com.
	for i := strings.IndexByte(host, '.'); i >= 0; {
		if b, ok := sn.wild[host[i+1:]]; ok {
			return b
		}
		j := strings.IndexByte(host[i+1:], '.')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return sn.def
}

// canonicalHost strips the port and a trailing dot and lower-cases.
func canonicalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// ServeHTTP routes a request by its Host header. Unknown hosts get 404 and
// are never forwarded; CONNECT is refused.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var lw *logWriter
	if s.log != nil {
		lw = &logWriter{ResponseWriter: w, start: time.Now()}
		w = lw
		defer s.log.write(r, lw)
	}
	if r.Method == http.MethodConnect {
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		http.Error(w, "CONNECT is not supported: this is not a forward proxy", http.StatusMethodNotAllowed)
		return
	}
	if code, why := cleanRequest(r.Header, s.opts.MaxHeaders); code != 0 {
		w.Header().Set("Connection", "close")
		http.Error(w, why, code)
		return
	}
	host := canonicalHost(r.Host)
	b := s.routes.Load().lookup(host)
	if b == nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "<!doctype html><title>404 Not Found</title><h1>404 Not Found</h1><p>No site is configured for host %q on this server.</p>\n", html.EscapeString(host))
		return
	}
	if lw != nil {
		lw.backend = b.addr
	}
	var db *deadlineBody
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		db = &deadlineBody{ReadCloser: r.Body, rc: http.NewResponseController(w), d: s.opts.BodyTimeout}
		r.Body = db
		// Closed here, with its deadline, before net/http would read an
		// unread rest without one.
		defer db.Close()
	}
	if len(r.TransferEncoding) > 0 {
		// A request that also had a Content-Length must close the
		// connection (RFC 9112 §6.3); net/http has removed that header
		// by now, so every chunked request closes (browsers send none).
		w.Header().Set("Connection", "close")
		if err := bufferChunked(r); err != nil {
			if isTimeout(err) {
				http.Error(w, "request body timeout", http.StatusRequestTimeout)
				return
			}
			http.Error(w, "malformed chunked request body", http.StatusBadRequest)
			return
		}
	}
	s.forward(w, r, b, db)
}

// maxConnectionTokens caps the tokens of the Connection headers of a
// request or response: real ones name one to three, and each token is a
// header to remove.
const maxConnectionTokens = 32

// cleanRequest applies what must never reach a backend to a request's
// headers; a non-zero code refuses the request:
//   - more than maxFields header fields: 431 (an 8,000-field head costs
//     nothing more than its parse);
//   - more than maxConnectionTokens Connection tokens: 400;
//   - names with "_": dropped, as nginx's ignore_invalid_headers does (CGI
//     and WSGI backends map "_" and "-" alike, so X_Forwarded_For would
//     reach them as X-Forwarded-For);
//   - Forwarded: dropped, like the X-Forwarded-* the proxy sets itself
//     (the direct client is the only one the proxy vouches for);
//   - the headers the Connection header names: dropped here, once, so
//     neither path needs a lookup per header.
func cleanRequest(h http.Header, maxFields int) (int, string) {
	n := 0
	for k, vv := range h {
		n += len(vv)
		if strings.IndexByte(k, '_') >= 0 {
			delete(h, k)
		}
	}
	if n > maxFields {
		return http.StatusRequestHeaderFieldsTooLarge, "too many header fields"
	}
	delete(h, "Forwarded")
	tokens := 0
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = textproto.TrimString(f); f == "" {
				continue
			}
			if tokens++; tokens > maxConnectionTokens {
				return http.StatusBadRequest, "too many Connection tokens"
			}
			// Hop-by-hop headers (Upgrade, TE among them) are handled,
			// then removed, by each path itself.
			if k := http.CanonicalHeaderKey(f); !isHop(k) {
				delete(h, k)
			}
		}
	}
	return 0, ""
}

// deadlineBody bounds the wait for each read of a request body (a slow
// upload would otherwise hold a backend connection for as long as the
// client likes). The deadline is cleared when the body ends or is closed:
// net/http then reads the connection in the background to notice a
// client going away, and a deadline left over would cancel the request.
type deadlineBody struct {
	io.ReadCloser
	rc       *http.ResponseController
	d        time.Duration
	timedOut atomic.Bool
	until    atomic.Int64 // the deadline of the last Read (unix ns); 0: none

	mu      sync.Mutex // orders the deadlines Read and abort set
	aborted bool
	reading bool // a Read is waiting for the client
	ended   bool // a Read returned an error (io.EOF at the end): no more reads
}

// errBodyAborted ends the reads of a body after abort.
var errBodyAborted = errors.New("request body no longer read: the exchange with the backend ended")

func (b *deadlineBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.aborted {
		b.mu.Unlock()
		return 0, errBodyAborted
	}
	dl := time.Now().Add(b.d)
	b.rc.SetReadDeadline(dl)
	b.until.Store(dl.UnixNano())
	b.reading = true
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	b.reading = false
	if err != nil {
		b.ended = true
		b.until.Store(0)
		if !b.aborted {
			b.rc.SetReadDeadline(time.Time{})
			if isTimeout(err) {
				b.timedOut.Store(true)
			}
		}
	}
	b.mu.Unlock()
	return n, err
}

// settle waits, briefly, for a Read in progress to return. A body read
// that times out cancels the request's context from inside that Read
// (net/http does on any read error), so the exchange may see the context
// canceled before the Read has said it timed out: 499 instead of 408.
func (b *deadlineBody) settle() {
	for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); time.Sleep(time.Millisecond) {
		b.mu.Lock()
		reading := b.reading
		b.mu.Unlock()
		if !reading {
			return
		}
	}
}

// overdue reports whether the body has not ended and its last Read's
// deadline has passed: the client is too slow (408) even when the Read
// has not yet returned its timeout (see settle).
func (b *deadlineBody) overdue(now time.Time) bool {
	u := b.until.Load()
	return u != 0 && now.UnixNano() >= u
}

// abort ends a read in progress (in the goroutine sending the body) and
// every later one, so that nothing reads the request after its handler
// has returned.
//
// The deadline in the past is set only while a Read waits for the
// client, never once the body has ended: net/http then reads the
// connection itself, in the background (connReader.backgroundRead,
// started when the body hits EOF), and an error there cancels the
// connection's context, so every later request on the connection (a
// pipelined one, a keep-alive one) would be answered 499. A sender that
// has read the whole body and is still writing it to the backend (the
// backend's answer came first: forward's !sent.done()) must not do that.
func (b *deadlineBody) abort() {
	b.mu.Lock()
	b.aborted = true
	if b.reading && !b.ended {
		b.rc.SetReadDeadline(aLongTimeAgo)
	}
	b.mu.Unlock()
}

// Close may read: net/http discards up to 256 KiB of an unread rest, so
// that read is bounded too.
func (b *deadlineBody) Close() error {
	b.rc.SetReadDeadline(time.Now().Add(b.d))
	err := b.ReadCloser.Close()
	b.rc.SetReadDeadline(time.Time{})
	return err
}

// maxBufferedBody is how much of a chunked request body is read, and its
// chunk framing checked, before the backend is contacted (nginx reads the
// whole body first). A larger body streams, and a framing error later in
// it aborts the backend request.
const maxBufferedBody = 64 << 10

// bufferChunked reads up to maxBufferedBody of r's chunked body; a body
// that ends within it is sent on with a Content-Length.
func bufferChunked(r *http.Request) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBufferedBody+1))
	if err != nil {
		return err
	}
	if len(b) > maxBufferedBody {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
		return nil
	}
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(b))
	if len(r.Trailer) == 0 { // trailers need chunked framing to travel
		r.TransferEncoding = nil
		r.ContentLength = int64(len(b))
	}
	return nil
}

// bufferPool holds 32 KiB buffers for copying bodies.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// logWriter records the status and size of a response. It unwraps for
// http.ResponseController, so flushing and hijacking (WebSocket) work.
type logWriter struct {
	http.ResponseWriter
	status  int
	bytes   int64
	start   time.Time
	backend string
}

func (l *logWriter) WriteHeader(code int) {
	if l.status == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		l.status = code
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *logWriter) Write(p []byte) (int, error) {
	if l.status == 0 {
		l.status = http.StatusOK
	}
	n, err := l.ResponseWriter.Write(p)
	l.bytes += int64(n)
	return n, err
}

func (l *logWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

// Flush is here for code that type-asserts http.Flusher.
func (l *logWriter) Flush() { _ = http.NewResponseController(l.ResponseWriter).Flush() }

// accessLog writes one line per request, buffered and flushed every second.
// Format: remote - - [time] "METHOD URI PROTO" status bytes "host" "user-agent" seconds backend
type accessLog struct {
	mu    sync.Mutex
	w     *bufio.Writer
	buf   []byte
	sec   int64  // the second stamp is formatted for
	stamp []byte // "02/Jan/2006:15:04:05 -0700" of sec
}

func (a *accessLog) write(r *http.Request, l *logWriter) {
	status := l.status
	if status == 0 {
		status = http.StatusOK
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a.writeLine(host, r.Method, r.RequestURI, r.Proto, r.Host, r.UserAgent(), status, l.bytes, l.start, time.Now(), l.backend)
}

// writeLine appends one access log line: client is the client's address
// without port; the request took from start to now.
func (a *accessLog) writeLine(client string, method, uri, proto, host, ua string, status int, n int64, start, now time.Time, backend string) {
	if backend == "" {
		backend = "-"
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buf[:0]
	b = append(b, client...)
	b = append(b, " - - ["...)
	if sec := now.Unix(); sec != a.sec || a.stamp == nil {
		a.sec, a.stamp = sec, now.AppendFormat(a.stamp[:0], "02/Jan/2006:15:04:05 -0700")
	}
	b = append(b, a.stamp...)
	b = append(b, "] \""...)
	b = append(b, method...)
	b = append(b, ' ')
	if plainASCII(uri) {
		b = append(b, uri...)
	} else {
		n0 := len(b)
		b = strconv.AppendQuote(b, uri) // escapes '"' and control bytes
		b = append(b[:n0], b[n0+1:len(b)-1]...)
	}
	b = append(b, ' ')
	b = append(b, proto...)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, n, 10)
	b = append(b, ' ')
	b = appendQuote(b, host)
	b = append(b, ' ')
	b = appendQuote(b, ua)
	b = append(b, ' ')
	b = strconv.AppendFloat(b, now.Sub(start).Seconds(), 'f', 3, 64)
	b = append(b, ' ')
	b = append(b, backend...)
	b = append(b, '\n')
	a.buf = b
	_, _ = a.w.Write(b)
}

// appendQuote is strconv.AppendQuote, without its rune-by-rune escaping
// for the usual string that needs none (a third of the log line's cost).
func appendQuote(b []byte, s string) []byte {
	if !plainASCII(s) {
		return strconv.AppendQuote(b, s)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// plainASCII reports whether strconv.Quote would leave s's bytes as they
// are: printable ASCII, no '"' and no '\\'.
func plainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

func (a *accessLog) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	_ = a.w.Flush()
}

func (a *accessLog) flushLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.flush()
		}
	}
}

// isTemporary reports an accept error worth retrying, as net/http's
// server does.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}
