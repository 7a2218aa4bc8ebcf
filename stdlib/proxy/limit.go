package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Connection limits (issue 20: 20,000 idle connections from one machine
// used to exhaust the file descriptors and lock every new client out).
// connLimiter wraps the listener and keeps, as nginx does, a list of the
// connections that are not serving a request (new ones still waiting for
// their first request head, and idle keep-alive ones), longest idle first:
// at MaxConns the longest idle one is closed to make room for a new
// client. A client address over MaxConnsPerIP gets 503. Its connections
// also bound every write (WriteTimeout), so a client that stops reading a
// response cannot hold its connection and a backend connection forever.

type connLimiter struct {
	net.Listener
	max, perIP   int
	writeTimeout time.Duration
	log          *slog.Logger
	lastLog      atomic.Int64 // unix second of the last refusal logged

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int
	idle  idleList // longest idle first
}

func newConnLimiter(ln net.Listener, o *Options) *connLimiter {
	return &connLimiter{Listener: ln, max: o.MaxConns, perIP: o.MaxConnsPerIP, writeTimeout: o.WriteTimeout, log: o.Logger, byIP: map[netip.Addr]int{}}
}

// limitedConn is a client connection counted by its limiter.
type limitedConn struct {
	net.Conn
	l          *connLimiter
	ip         netip.Addr
	inIdle     bool         // in l.idle while not serving a request; these three guarded by l.mu
	prev, next *limitedConn // l.idle's links
	closed     bool         // guarded by l.mu
	wset       time.Time    // when Write last set the write deadline
	pre        []byte       // read before the hand-off from the fast path, not yet served
	raw        *sysConn     // set while on the fast path: Write goes through it
}

// Read returns the bytes the fast path read and did not serve first.
func (c *limitedConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

func remoteAddr(c net.Conn) netip.Addr {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// tooBusy is written to a connection refused by a limit.
const tooBusy = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: 40\r\n\r\nToo many connections; try again later.\r\n"

// refuse answers 503 and closes c; it logs why at most once a second.
func (l *connLimiter) refuse(c net.Conn, ip netip.Addr, why string) {
	l.logRefusal(ip, why)
	// The socket is new, its send buffer empty: the write does not block.
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	io.WriteString(c, tooBusy)
	c.Close()
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteAddr(c)
		lc, victim, why := l.admit(c, ip)
		if lc == nil {
			l.refuse(c, ip, why)
			continue
		}
		if victim != nil {
			victim.Close() // its count is released there
		}
		return lc, nil
	}
}

// admit counts a new connection c from ip: it returns it as a
// limitedConn, and the idle connection to close to make room (victim),
// or nil and why it is refused.
func (l *connLimiter) admit(c net.Conn, ip netip.Addr) (lc, victim *limitedConn, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byIP[ip] >= l.perIP {
		return nil, nil, "MaxConnsPerIP reached"
	}
	if l.total >= l.max {
		victim = l.idle.head
		if victim == nil {
			return nil, nil, "MaxConns reached and no connection idle"
		}
		l.idle.remove(victim)
	}
	l.total++
	l.byIP[ip]++
	return &limitedConn{Conn: c, l: l, ip: ip}, victim, ""
}

// logRefusal logs a refused connection, at most once a second.
func (l *connLimiter) logRefusal(ip netip.Addr, why string) {
	if now := time.Now().Unix(); l.lastLog.Swap(now) != now {
		l.log.Warn("proxy: connection refused (503)", "client", ip, "reason", why)
	}
}

// state is the http.Server's ConnState hook: it keeps the idle list.
// A connection becomes reclaimable when new or idle, and stops being so
// once net/http has read a request head on it (active) or handed it over
// (hijacked: a WebSocket).
func (l *connLimiter) state(c net.Conn, st http.ConnState) {
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.closed {
		return
	}
	if lc.inIdle {
		l.idle.remove(lc)
	}
	if st == http.StateNew || st == http.StateIdle {
		l.idle.pushBack(lc)
	}
}

func (c *limitedConn) Close() error {
	c.release()
	c.l.mu.Lock()
	conn := c.Conn
	c.l.mu.Unlock()
	return conn.Close()
}

// release gives c's counts back to its limiter (once).
func (c *limitedConn) release() {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if c.inIdle {
		l.idle.remove(c)
	}
	l.total--
	if n := l.byIP[c.ip] - 1; n > 0 {
		l.byIP[c.ip] = n
	} else {
		delete(l.byIP, c.ip)
	}
}

// swapConn makes nc the connection c counts (the event loop's hand-off
// of its socket to a goroutine): false when c was closed meanwhile (an
// idle connection closed to make room), and nc is not taken.
func (c *limitedConn) swapConn(nc net.Conn) bool {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.closed {
		return false
	}
	c.Conn = nc
	return true
}

// Write fails when the client takes more than WriteTimeout to accept any
// of p (nginx's send_timeout: between two successive writes).
// The deadline is moved only when a quarter of the timeout has passed
// since it was last set (setting one costs a runtime timer update per
// write), so a write may fail after 3/4 of WriteTimeout at the earliest.
func (c *limitedConn) Write(p []byte) (int, error) {
	if wt := c.l.writeTimeout; wt > 0 {
		if now := time.Now(); now.Sub(c.wset) > wt/4 {
			c.wset = now
			c.Conn.SetWriteDeadline(now.Add(wt))
		}
	}
	if c.raw != nil {
		return c.raw.Write(p)
	}
	return c.Conn.Write(p)
}

// CloseWrite lets net/http half-close before closing after an error
// response, so the client reads the response rather than a reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// idleList is the limiter's list of reclaimable connections, linked
// through the connections themselves: a connection moves in and out of it
// twice per request, without an allocation. Guarded by the limiter's mu.
type idleList struct{ head, tail *limitedConn }

func (l *idleList) pushBack(c *limitedConn) {
	c.prev, c.next, c.inIdle = l.tail, nil, true
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *idleList) remove(c *limitedConn) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next, c.inIdle = nil, nil, false
}
