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
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backend connections: a pool of keep-alive connections per backend, the
// hop-by-hop header rules and the checks a backend's response must pass.
// The request pipeline that uses them is in pipeline.go.

// idleConnTimeout closes pooled backend connections idle for longer.
const idleConnTimeout = 90 * time.Second

// backendPool is a LIFO pool of idle keep-alive connections to one backend.
type backendPool struct {
	addr   string
	dialer *net.Dialer
	max    int

	mu      sync.Mutex
	idle    []*backendConn
	closed  bool
	stopped atomic.Bool // closed, for the event loops' own pools (no lock)
}

type backendConn struct {
	c      net.Conn
	raw    *sysConn // reads and writes c (br and bw go through it)
	br     *bufio.Reader
	bw     *bufio.Writer
	peek   *peeker
	idleAt time.Time

	// Set by the fast path while it reads a response (see watchedReader).
	watch *peeker   // the client's connection
	until time.Time // the response head's deadline; zero: none
	dl    time.Time // the read deadline watchedReader set; zero: unknown
	now   time.Time // the time for the next read's deadline check; zero: read the clock
}

// watchedReader reads a backend connection for the fast path, which has
// no request context to cancel: while watch is set, a read that waits
// checks every clientPoll whether the client is still there, and fails
// with errClientGone when it has left, or with a timeout at until.
// Without watch (net/http's path) it is a plain read.
type watchedReader struct{ bc *backendConn }

func (r watchedReader) Read(p []byte) (int, error) {
	bc := r.bc
	if bc.watch == nil {
		return bc.raw.Read(p)
	}
	for {
		// The deadline set for an earlier read is kept while it is at
		// least half a clientPoll away and not past until: moving it
		// costs a runtime timer update.
		now := bc.now
		if now.IsZero() {
			now = time.Now()
		}
		bc.now = time.Time{}
		d := now.Add(clientPoll)
		if !bc.until.IsZero() && bc.until.Before(d) {
			d = bc.until
		}
		if bc.dl.IsZero() || bc.dl.After(d) || bc.dl.Before(now.Add(clientPoll/2)) {
			bc.c.SetReadDeadline(d)
			bc.dl = d
		}
		n, err := bc.raw.Read(p)
		if n > 0 || err == nil || !isTimeout(err) || !bc.until.IsZero() && !time.Now().Before(bc.until) {
			return n, err
		}
		if bc.watch.gone() {
			return 0, errClientGone
		}
	}
}

func newBackendPool(addr string, dialer *net.Dialer, max int) *backendPool {
	return &backendPool{addr: addr, dialer: dialer, max: max}
}

// get returns an idle connection (reused true) or dials a new one; now
// is the current time (to tell connections idle for too long). An
// idle connection with bytes waiting, or closed by the backend, is
// dropped: bytes nobody asked for (a body after the head of a HEAD, 204
// or 304 response, a common backend bug) would otherwise be read as the
// next visitor's response (issue 20). http.Transport and nginx close such
// connections too.
func (p *backendPool) get(ctx context.Context, fresh bool, now time.Time) (*backendConn, bool, error) {
	for !fresh {
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
		if now.Sub(bc.idleAt) > idleConnTimeout || bc.peek.unsolicited() {
			bc.c.Close()
			continue
		}
		return bc, true, nil
	}
	c, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, false, err
	}
	return newBackendConn(c, nil), false, nil
}

// newBackendConn makes a pool connection of c; pre holds bytes already
// read from it (by the event loop), which its reader returns first.
func newBackendConn(c net.Conn, pre []byte) *backendConn {
	bc := &backendConn{c: c, raw: newSysConn(c), peek: newPeeker(c)}
	bc.bw = bufio.NewWriterSize(bc.raw, 4<<10)
	var r io.Reader = watchedReader{bc}
	if len(pre) > 0 {
		r = io.MultiReader(bytes.NewReader(pre), r)
	}
	bc.br = bufio.NewReaderSize(r, 16<<10)
	return bc
}

// put returns a connection whose last response was read to the end, at
// now.
func (p *backendPool) put(bc *backendConn, now time.Time) {
	bc.idleAt = now
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
		p.stopped.Store(true)
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
// many names. The client gets 502.
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
