//go:build linux

package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event loops (issue 21). The fast path of fastpath.go runs a
// goroutine per client connection, which parks on Go's poller at every
// wait: for the next request, and for the backend's response. Measured
// under wrk at 64 connections, that cost two park/wake cycles per request
// and a read that finds nothing for most waits (Go's poller forgets a
// socket's readiness before each read), and left the CPU idle between
// the hand-offs: the proxy took no more CPU per request than nginx, and
// still served fewer requests per second. nginx runs one loop per
// worker: epoll says which sockets are ready, and each is read once.
//
// These loops do the same for the requests the fast path serves (a GET
// or HEAD without a body, answered with a Content-Length or no body),
// one loop per P (GOMAXPROCS), each with its own epoll set and its own
// pool of backend connections. A loop accepts on the shared listening
// socket (EPOLLEXCLUSIVE: a new connection wakes one loop), and reads a
// socket only when epoll said it is readable and the last read did not
// drain it (a short read did: with edge-triggered epoll a later byte
// reports it again). Everything else leaves the loop with the socket
// (escape): a head the fast parser does not serve goes, with the bytes
// read, to the goroutine fast path, which hands what it does not serve
// to net/http; a response it does not parse (chunked, 1xx, a head larger
// than the buffer) is finished there too, from the bytes read, on the
// same sockets. Limits (MaxConns, MaxConnsPerIP, the idle list), the
// timeouts, the access log and graceful shutdown behave as on the
// goroutine path; the loop checks deadlines every few milliseconds
// instead of arming a runtime timer per read.
//
// TINYFARM_PROXY_LOOP=0 turns the loops off (the goroutine fast path
// serves every connection): to compare, or if they misbehave.

// loopGroup is the set of event loops serving one listener.
type loopGroup struct {
	s      *Server
	lim    *connLimiter
	hand   *handoffListener
	lnfd   int // a duplicate of the listener's socket
	loops  []*evLoop
	gen    atomic.Uint32 // the generation of the next descriptor
	lnOnce sync.Once
	done   chan struct{} // closed when every loop has returned
}

// startLoops starts the event loops on ln; nil when they do not apply
// (not a TCP listener, turned off, or epoll fails: the caller serves
// with the goroutine fast path).
func (s *Server) startLoops(ln net.Listener, lim *connLimiter, hand *handoffListener) *loopGroup {
	tl, ok := ln.(*net.TCPListener)
	if !ok || os.Getenv("TINYFARM_PROXY_LOOP") == "0" {
		return nil
	}
	rc, err := tl.SyscallConn()
	if err != nil {
		return nil
	}
	lnfd := -1
	if cerr := rc.Control(func(fd uintptr) { lnfd, err = unix.Dup(int(fd)) }); cerr != nil || err != nil {
		return nil
	}
	unix.CloseOnExec(lnfd)
	g := &loopGroup{s: s, lim: lim, hand: hand, lnfd: lnfd, done: make(chan struct{})}
	n := runtime.GOMAXPROCS(0)
	for i := 0; i < n; i++ {
		l, err := newEvLoop(g)
		if err != nil {
			s.opts.Logger.Warn("proxy: event loop; serving with goroutines", "err", err)
			for _, l := range g.loops {
				l.closeFDs()
			}
			unix.Close(lnfd)
			return nil
		}
		g.loops = append(g.loops, l)
	}
	var wg sync.WaitGroup
	for _, l := range g.loops {
		wg.Add(1)
		go func() { defer wg.Done(); l.run() }()
	}
	go func() { wg.Wait(); g.closeListener(); close(g.done) }()
	return g
}

func (g *loopGroup) closeListener() { g.lnOnce.Do(func() { unix.Close(g.lnfd) }) }

// shutdown stops accepting, closes the idle connections at once and the
// others when their request is answered, and the rest when ctx is done.
func (g *loopGroup) shutdown(ctx interface{ Done() <-chan struct{} }) {
	var wg sync.WaitGroup
	for _, l := range g.loops {
		wg.Add(1)
		if !l.post(func() { l.beginClose(); wg.Done() }) {
			wg.Done()
		}
	}
	// No loop accepts now: close the listening socket (the caller closed
	// its own descriptor), so that new connections are refused.
	wg.Wait()
	g.closeListener()
	select {
	case <-g.done:
		return
	case <-ctx.Done():
	}
	for _, l := range g.loops {
		l.post(func() { l.closeAll() })
	}
	<-g.done
}

// Client connection states.
const (
	stHead = iota // reading a request head (or idle between requests)
	stDial        // connecting to the backend
	stSend        // writing the request head to the backend
	stWait        // waiting for the response head
	stBody        // passing the body on (and flushing what is pending)
	stGone        // closed or escaped: no longer the loop's
)

// evConn is a client connection of a loop.
type evConn struct {
	fd       int
	gen      uint32
	lc       *limitedConn
	ip       string // the client's address without port
	buf      []byte
	r, w     int // unread bytes are buf[r:w]
	mayEnd   bool
	rdReady  bool // readable, as far as the loop knows
	wrReady  bool
	rdhup    bool // the client shut its side (or the socket failed)
	state    int
	deadline time.Time // of the current state; zero: none
	req      fastRequest
	res      fastResponse
	host, ua string // as fastConn keeps them
	b        *backend
	bk       *evBack
	attempt  int
	reused   bool
	start    time.Time
	status   int
	remain   int64 // body bytes still to pass on
	sent     int64 // body bytes passed on
	pend     []byte
	noReuse  bool // the backend connection is not to be pooled
}

// evBack is a backend connection of a loop.
type evBack struct {
	fd         int
	gen        uint32
	pool       *evPool
	owner      *evConn // nil while idle in the pool
	buf        []byte
	r, w       int
	out        []byte // the request head not yet written
	rdReady    bool
	wrReady    bool
	connecting bool
	idleAt     time.Time
}

// evPool is a loop's idle connections to one backend.
type evPool struct {
	b    *backend
	addr netip.AddrPort
	ok   bool // addr is an IP address and port: the loop can dial it
	idle []*evBack
}

// fdEntry is what a loop knows of one of its descriptors.
type fdEntry struct {
	gen uint32
	c   *evConn
	bk  *evBack
}

// Descriptor kinds in an epoll event's data besides connections.
const (
	tagListener = -1
	tagWake     = -2
)

// evLoop is one event loop: an epoll set, the connections in it, and
// messages from other goroutines.
type evLoop struct {
	g       *loopGroup
	s       *Server
	epfd    int
	wakefd  int
	fds     []fdEntry
	load    atomic.Int32 // client connections, and those posted to it
	pools   map[*backend]*evPool
	events  []unix.EpollEvent
	epf     *os.File        // epfd, in Go's poller
	rc      syscall.RawConn // epf's
	waitFn  func(uintptr) bool
	n       int       // waitFn's result
	err     error     // waitFn's error
	dl      time.Time // epf's read deadline
	now     time.Time
	tick    time.Duration
	sweepAt time.Time
	out     []byte
	closing bool
	stop    bool
	paused  bool // not accepting (out of descriptors) until the next sweep

	mu     sync.Mutex
	msgs   []func()
	exited bool // wakefd is closed: posts are dropped
}

func newEvLoop(g *loopGroup) (*evLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	l := &evLoop{g: g, s: g.s, epfd: epfd, wakefd: wakefd, pools: map[*backend]*evPool{}, events: make([]unix.EpollEvent, 256)}
	// Non-blocking, os.NewFile puts it in Go's poller (see epollWait).
	if err := unix.SetNonblock(epfd, true); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("epoll set: %w", err)
	}
	l.epf = os.NewFile(uintptr(epfd), "epoll")
	rc, err := l.epf.SyscallConn()
	if err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("epoll set: %w", err)
	}
	l.rc = rc
	l.waitFn = func(uintptr) bool {
		l.n, l.err = l.pollNow()
		return l.n > 0 || l.err != nil
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, wakefd, unix.EPOLLIN, tagWake, 0); err != nil {
		l.closeFDs()
		return nil, err
	}
	if err := l.ctl(unix.EPOLL_CTL_ADD, g.lnfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, tagListener, 0); err != nil {
		l.closeFDs()
		return nil, err
	}
	o := &g.s.opts
	l.tick = min(o.ReadHeaderTimeout, o.IdleTimeout, o.BackendTimeout, o.WriteTimeout, o.DialTimeout) / 16
	l.tick = max(5*time.Millisecond, min(l.tick, 100*time.Millisecond))
	return l, nil
}

func (l *evLoop) closeFDs() {
	l.mu.Lock()
	l.exited = true
	l.mu.Unlock()
	unix.Close(l.wakefd)
	if l.epf != nil {
		l.epf.Close()
	} else {
		unix.Close(l.epfd)
	}
}

// ctl registers fd; tag is the fd itself, or tagListener/tagWake.
func (l *evLoop) ctl(op, fd int, events uint32, tag int, gen uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(tag), Pad: int32(gen)}
	if err := unix.EpollCtl(l.epfd, op, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl %d: %w", fd, err)
	}
	return nil
}

// connEvents is what a connection is registered for: edge-triggered, so
// a socket is reported once per change and read only when it may have
// bytes.
const connEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET

// post runs fn on the loop (the limiter closing one of its connections,
// a connection another loop accepted, shutdown); false when the loop has
// returned.
func (l *evLoop) post(fn func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exited {
		return false
	}
	l.msgs = append(l.msgs, fn)
	one := [8]byte{1}
	unix.Write(l.wakefd, one[:])
	return true
}

// epollWait returns the events ready, waiting until the next sweep is
// due. It does not block in epoll_wait: the epoll set's own descriptor
// is in Go's poller (readable when an event is ready), and the loop's
// goroutine parks there, as a goroutine reading a socket does. A loop
// blocked in a system call instead had its P taken away by the
// runtime's monitor (sysmon), which then kept waking every 20 us to do
// so: 8% of the proxy's CPU in thread switches (perf, 64 connections).
func (l *evLoop) epollWait() (int, error) {
	if n, err := l.pollNow(); n > 0 || err != nil {
		return n, err
	}
	if !l.dl.Equal(l.sweepAt) {
		l.epf.SetReadDeadline(l.sweepAt)
		l.dl = l.sweepAt
	}
	l.n, l.err = 0, nil
	err := l.rc.Read(l.waitFn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return 0, nil
	}
	if err == nil {
		err = l.err
	}
	return l.n, err
}

// pollNow is epoll_wait without waiting, as a raw system call.
func (l *evLoop) pollNow() (int, error) {
	ev := l.events
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&ev[0])), uintptr(len(ev)), 0, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, os.NewSyscallError("epoll_pwait", e)
		}
		return int(n), nil
	}
}

func (l *evLoop) run() {
	defer l.closeFDs()
	l.now = time.Now()
	l.sweepAt = l.now.Add(l.tick)
	for !l.stop {
		n, err := l.epollWait()
		l.now = time.Now()
		if err != nil {
			l.s.opts.Logger.Error("proxy: event loop", "err", err)
			l.closeAll()
			return
		}
		// Backends first: an idle pooled connection that turned readable
		// (bytes nobody asked for, or the backend closed it) leaves the
		// pool before a client event of the same batch could reuse it.
		for i := range n {
			ev := &l.events[i]
			if fd := int(ev.Fd); fd >= 0 && fd < len(l.fds) {
				if e := &l.fds[fd]; e.bk != nil && e.gen == uint32(ev.Pad) {
					l.backendEvent(e.bk, ev.Events)
				}
			}
		}
		for i := range n {
			ev := &l.events[i]
			switch fd := int(ev.Fd); {
			case fd == tagListener:
				l.accept()
			case fd == tagWake:
				l.messages()
			case fd < len(l.fds):
				if e := &l.fds[fd]; e.c != nil && e.gen == uint32(ev.Pad) {
					l.clientEvent(e.c, ev.Events)
				}
			}
		}
		if !l.now.Before(l.sweepAt) {
			l.sweep()
			l.sweepAt = l.now.Add(l.tick)
		}
		if l.closing && l.load.Load() == 0 {
			l.stop = true
		}
	}
	l.closeAll()
}

func (l *evLoop) messages() {
	var b [8]byte
	unix.Read(l.wakefd, b[:])
	l.mu.Lock()
	msgs := l.msgs
	l.msgs = nil
	l.mu.Unlock()
	for _, fn := range msgs {
		fn()
	}
}

func (l *evLoop) entry(fd int) *fdEntry {
	if fd >= len(l.fds) {
		n := max(2*len(l.fds), fd+1, 64)
		fds := make([]fdEntry, n)
		copy(fds, l.fds)
		l.fds = fds
	}
	return &l.fds[fd]
}

// accept takes the new connections waiting (at most 64 a turn, so that
// the loop's other sockets get their turn).
func (l *evLoop) accept() {
	if l.closing || l.paused {
		return
	}
	for range 64 {
		fd, sa, err := unix.Accept4(l.g.lnfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			switch err {
			case unix.EAGAIN, unix.EINTR, unix.ECONNABORTED:
				if err == unix.EAGAIN {
					return
				}
				continue
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				// Out of descriptors: as net/http's server waits a little,
				// this loop stops accepting until its next sweep.
				l.s.opts.Logger.Warn("proxy: accept; retrying", "err", err, "in", l.tick)
				l.pause(true)
				return
			}
			l.s.opts.Logger.Error("proxy: accept", "err", err)
			return
		}
		l.admit(fd, sockaddrAddr(sa))
	}
}

// pause stops (or resumes) this loop's accepting.
func (l *evLoop) pause(on bool) {
	if on == l.paused {
		return
	}
	l.paused = on
	if on {
		l.ctl(unix.EPOLL_CTL_DEL, l.g.lnfd, 0, tagListener, 0)
	} else {
		l.ctl(unix.EPOLL_CTL_ADD, l.g.lnfd, unix.EPOLLIN|unix.EPOLLEXCLUSIVE, tagListener, 0)
	}
}

func sockaddrAddr(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// admit counts a new connection with the limiter and gives it to the
// loop with the fewest connections: the loop that accepts is the one
// epoll woke, and left to itself it would take every connection of a
// burst.
func (l *evLoop) admit(fd int, ap netip.AddrPort) {
	lim := l.g.lim
	t := l.g.pick()
	gen := l.g.gen.Add(1)
	ref := &evRef{l: t, fd: fd, gen: gen, remote: net.TCPAddrFromAddrPort(ap), local: l.g.hand.addr}
	ip := ap.Addr()
	lc, victim, why := lim.admit(ref, ip)
	if lc == nil {
		t.load.Add(-1)
		lim.logRefusal(ip, why)
		// The socket is new, its send buffer empty: the write does not block.
		unix.Write(fd, []byte(tooBusy))
		unix.Close(fd)
		return
	}
	if victim != nil {
		victim.Close()
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if t == l {
		l.adopt(fd, gen, lc, ip)
	} else if !t.post(func() { t.adopt(fd, gen, lc, ip) }) {
		t.load.Add(-1)
		unix.Close(fd)
		lc.release()
	}
}

// pick returns the loop with the fewest connections, counting the new one.
func (g *loopGroup) pick() *evLoop {
	t := g.loops[0]
	for _, l := range g.loops[1:] {
		if l.load.Load() < t.load.Load() {
			t = l
		}
	}
	t.load.Add(1)
	return t
}

// adopt adds an admitted connection to the loop.
func (l *evLoop) adopt(fd int, gen uint32, lc *limitedConn, ip netip.Addr) {
	if l.closing {
		l.load.Add(-1)
		unix.Close(fd)
		lc.release()
		return
	}
	c := &evConn{fd: fd, gen: gen, lc: lc, ip: ip.String(), state: stHead, wrReady: true, mayEnd: true}
	c.buf = make([]byte, fastBufSize)
	c.deadline = l.now.Add(l.s.opts.ReadHeaderTimeout)
	if err := l.ctl(unix.EPOLL_CTL_ADD, fd, connEvents, fd, gen); err != nil {
		l.load.Add(-1)
		unix.Close(fd)
		lc.release()
		return
	}
	*l.entry(fd) = fdEntry{gen: gen, c: c}
	l.g.lim.state(lc, http.StateNew)
}

// evRef is the net.Conn a loop's connection is counted as by the
// limiter: Close, from any goroutine (the limiter making room), asks the
// loop to close it.
type evRef struct {
	l             *evLoop
	fd            int
	gen           uint32
	remote, local net.Addr
}

func (r *evRef) Close() error {
	r.l.post(func() {
		if e := r.l.entry(r.fd); e.c != nil && e.gen == r.gen {
			r.l.closeConn(e.c)
		}
	})
	return nil
}

var errLoopConn = errors.New("proxy: a connection of an event loop is read and written by its loop")

func (r *evRef) Read([]byte) (int, error)         { return 0, errLoopConn }
func (r *evRef) Write([]byte) (int, error)        { return 0, errLoopConn }
func (r *evRef) LocalAddr() net.Addr              { return r.local }
func (r *evRef) RemoteAddr() net.Addr             { return r.remote }
func (r *evRef) SetDeadline(time.Time) error      { return nil }
func (r *evRef) SetReadDeadline(time.Time) error  { return nil }
func (r *evRef) SetWriteDeadline(time.Time) error { return nil }

// clientEvent records what epoll reported for c and moves it on.
func (l *evLoop) clientEvent(c *evConn, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.rdReady = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.wrReady = true // a write fails at once on a broken socket
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.rdhup = true
	}
	l.drive(c)
}

// backendEvent records what epoll reported for bk and moves its client
// on; an idle pooled connection that reports anything but room to write
// is closed (issue 20: bytes nobody asked for, or closed by the backend).
func (l *evLoop) backendEvent(bk *evBack, ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		bk.rdReady = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		bk.wrReady = true
	}
	c := bk.owner
	if c == nil {
		if bk.rdReady {
			l.dropIdle(bk)
		}
		return
	}
	l.drive(c)
}

// drive runs c's state machine until it waits for a socket.
func (l *evLoop) drive(c *evConn) {
	for {
		var more bool
		switch c.state {
		case stHead:
			more = l.readHead(c)
		case stDial:
			more = l.connected(c)
		case stSend:
			more = l.sendHead(c)
		case stWait:
			more = l.readResponseHead(c)
		case stBody:
			more = l.passBody(c)
		default:
			return
		}
		if !more {
			return
		}
	}
}

// readHead reads and parses a request head; true when c's state changed.
func (l *evLoop) readHead(c *evConn) bool {
	s := l.s
	limit := min(fastBufSize, s.opts.MaxHeaderBytes)
	for {
		if c.w > c.r && c.mayEnd {
			switch parseFastRequest(c.buf[c.r:c.w], s.opts.MaxHeaders, &c.req) {
			case parseOK:
				return l.dispatch(c)
			case parseSlow:
				l.escape(c, nil)
				return false
			}
			c.mayEnd = false
		}
		if c.w-c.r >= limit {
			l.escape(c, nil) // net/http answers 431, or serves a big head
			return false
		}
		if !c.rdReady {
			return false
		}
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		}
		n, err := rawRead(c.fd, c.buf[c.w:limit])
		switch {
		case err == unix.EAGAIN:
			c.rdReady = false
			return false
		case err != nil || n == 0:
			l.closeConn(c) // the client left, or reset
			return false
		}
		if c.w == c.r {
			// The first byte of a head: ReadHeaderTimeout from now.
			c.deadline = l.now.Add(s.opts.ReadHeaderTimeout)
		}
		from := max(c.r, c.w-3)
		c.w += n
		if n < limit-(c.w-n) {
			c.rdReady = false // a short read drained the socket
		}
		c.mayEnd = headEnd(c.buf[from:c.w]) || c.w-c.r >= limit
	}
}

// dispatch starts the exchange of the request parsed into c.req.
func (l *evLoop) dispatch(c *evConn) bool {
	s := l.s
	if string(c.req.host) != c.host {
		c.host = string(c.req.host)
	}
	b := s.routes.Load().lookup(canonicalHost(c.host))
	if b == nil || l.closing {
		if l.closing {
			l.closeConn(c)
		} else {
			l.escape(c, nil) // net/http's path answers 404
		}
		return false
	}
	p := l.pool(b)
	if !p.ok {
		l.escape(c, nil) // a backend named by host name: net/http's path dials it
		return false
	}
	l.g.lim.state(c.lc, http.StateActive)
	c.b, c.start, c.attempt, c.status, c.sent, c.remain, c.noReuse = b, l.now, 0, 0, 0, 0, false
	return l.connect(c, p)
}

// pool returns the loop's pool for b.
func (l *evLoop) pool(b *backend) *evPool {
	p := l.pools[b]
	if p == nil {
		p = &evPool{b: b}
		if ap, err := netip.ParseAddrPort(b.addr); err == nil {
			p.addr, p.ok = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
		}
		l.pools[b] = p
	}
	return p
}

// connect takes an idle connection to c's backend, or dials one, and
// sends the request on it.
func (l *evLoop) connect(c *evConn, p *evPool) bool {
	fresh := c.attempt >= maxAttempts-1
	for !fresh && len(p.idle) > 0 {
		bk := p.idle[len(p.idle)-1]
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		if l.now.Sub(bk.idleAt) > idleConnTimeout || bk.rdReady {
			l.closeBack(bk)
			continue
		}
		bk.owner, c.bk, c.reused = c, bk, true
		return l.startSend(c)
	}
	fd, err := l.dial(p.addr)
	if err != nil && err != unix.EINPROGRESS {
		return l.failed(c, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(p.addr), Err: os.NewSyscallError("connect", err)})
	}
	gen := l.g.gen.Add(1)
	bk := &evBack{fd: fd, gen: gen, pool: p, owner: c, buf: make([]byte, 16<<10), connecting: true}
	if cerr := l.ctl(unix.EPOLL_CTL_ADD, fd, connEvents, fd, gen); cerr != nil {
		unix.Close(fd)
		return l.failed(c, cerr)
	}
	*l.entry(fd) = fdEntry{gen: gen, bk: bk}
	c.bk, c.reused = bk, false
	c.state, c.deadline = stDial, l.now.Add(l.s.opts.DialTimeout)
	if err == nil {
		bk.connecting, bk.wrReady = false, true
	}
	return true
}

// dial starts a non-blocking connect to ap, with the options net.Dialer
// would set (no delay, keep-alive probes after 30 s).
func (l *evLoop) dial(ap netip.AddrPort) (int, error) {
	var sa unix.Sockaddr
	family := unix.AF_INET
	if ap.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30)
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	err = unix.Connect(fd, sa)
	if err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return -1, err
	}
	return fd, err
}

// connected checks a connect in progress: epoll reports it done as room
// to write (or an error).
func (l *evLoop) connected(c *evConn) bool {
	bk := c.bk
	if bk.connecting {
		if !bk.wrReady {
			return false
		}
		errno, err := unix.GetsockoptInt(bk.fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err == nil && errno != 0 {
			err = unix.Errno(errno)
		}
		if err != nil {
			return l.failed(c, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(bk.pool.addr), Err: os.NewSyscallError("connect", err)})
		}
		bk.connecting = false
	}
	return l.startSend(c)
}

// startSend writes the request head to c's backend connection.
func (l *evLoop) startSend(c *evConn) bool {
	bk := c.bk
	bk.out = appendFastHead(bk.out[:0], &c.req, c.ip)
	c.state, c.deadline = stSend, c.start.Add(l.s.opts.BackendTimeout)
	bk.r, bk.w = 0, 0
	return true
}

// sendHead writes what is left of the request head.
func (l *evLoop) sendHead(c *evConn) bool {
	bk := c.bk
	for len(bk.out) > 0 {
		if !bk.wrReady {
			return false
		}
		n, err := rawWrite(bk.fd, bk.out)
		if err == unix.EAGAIN {
			bk.wrReady = false // epoll reports room to write (EPOLLOUT)
			return false
		}
		if err != nil {
			return l.failed(c, retryable(os.NewSyscallError("write", err), true))
		}
		bk.out = bk.out[n:]
	}
	bk.out = bk.out[:0:cap(bk.out)]
	c.state = stWait
	return true
}

// readResponseHead reads the backend's response head.
func (l *evLoop) readResponseHead(c *evConn) bool {
	bk := c.bk
	for {
		if bk.w > 0 {
			switch parseFastResponse(bk.buf[:bk.w], c.req.head, &c.res) {
			case parseOK:
				return l.startBody(c)
			case parseSlow:
				l.escape(c, bk)
				return false
			}
			if bk.w == len(bk.buf) {
				l.escape(c, bk) // a head larger than the buffer
				return false
			}
		}
		if c.rdhup && l.clientGone(c) {
			l.closeBack(bk)
			c.bk = nil
			l.logRequest(c, 499)
			l.closeConn(c)
			return false
		}
		if !bk.rdReady {
			return false
		}
		n, err := rawRead(bk.fd, bk.buf[bk.w:])
		switch {
		case err == unix.EAGAIN:
			bk.rdReady = false
			return false
		case err != nil:
			if bk.w == 0 {
				return l.failed(c, retryable(os.NewSyscallError("read", err), false))
			}
			return l.failed(c, os.NewSyscallError("read", err))
		case n == 0:
			if bk.w == 0 {
				return l.failed(c, retryable(io.EOF, false))
			}
			return l.failed(c, io.ErrUnexpectedEOF)
		}
		if n < len(bk.buf)-bk.w {
			bk.rdReady = false
		}
		bk.w += n
	}
}

// clientGone reports whether the client closed its connection (bytes it
// sent on, a pipelined request, do not count), as peeker.gone does.
func (l *evLoop) clientGone(c *evConn) bool {
	var b [1]byte
	n, err := rawPeek(uintptr(c.fd), b[:])
	if err == unix.EAGAIN || err == unix.EINTR {
		c.rdhup = false
		return false
	}
	if err == nil && n > 0 {
		c.rdhup = false // bytes first; epoll reports the close again
		return false
	}
	return true
}

// startBody writes the response head with the first body bytes read.
func (l *evLoop) startBody(c *evConn) bool {
	bk, fr := c.bk, &c.res
	out := appendFastResponseHead(l.out[:0], fr, c.req.close)
	c.status = fr.status
	bk.r = fr.n
	c.remain = 0
	if !bodyless(c.req.method(), fr.status) {
		c.remain = fr.length
	}
	if fr.close {
		c.noReuse = true
	}
	take := min(int64(bk.w-bk.r), c.remain)
	out = append(out, bk.buf[bk.r:bk.r+int(take)]...)
	bk.r += int(take)
	c.remain -= take
	c.sent = take
	l.out = out[:0]
	c.state, c.deadline = stBody, time.Time{}
	if !l.send(c, out) {
		return false
	}
	return true
}

// send writes p to the client; what it cannot write now is kept (pend).
// false when the connection failed (and was closed).
func (l *evLoop) send(c *evConn, p []byte) bool {
	for len(p) > 0 && c.wrReady {
		n, err := rawWrite(c.fd, p)
		if err == unix.EAGAIN {
			c.wrReady = false
			break
		}
		if err != nil {
			l.abort(c)
			return false
		}
		p = p[n:]
	}
	if len(p) > 0 {
		c.pend = append(c.pend[:0], p...)
		c.wrReady = false
		c.deadline = l.now.Add(l.s.opts.WriteTimeout)
	}
	return true
}

// passBody passes the rest of the body on: it flushes what is pending,
// then reads from the backend and writes to the client, until the body
// is done.
func (l *evLoop) passBody(c *evConn) bool {
	for {
		if len(c.pend) > 0 {
			if !c.wrReady {
				return false
			}
			p := c.pend
			c.pend = c.pend[:0]
			if !l.send(c, p) {
				return false
			}
			if len(c.pend) > 0 {
				return false
			}
			c.deadline = time.Time{}
		}
		if c.remain == 0 {
			return l.finish(c)
		}
		bk := c.bk
		if bk.r == bk.w {
			bk.r, bk.w = 0, 0
		}
		if bk.w == 0 {
			if !bk.rdReady {
				if c.rdhup && l.clientGone(c) {
					l.abort(c)
				}
				return false
			}
			n, err := rawRead(bk.fd, bk.buf)
			switch {
			case err == unix.EAGAIN:
				bk.rdReady = false
				continue
			case err != nil || n == 0:
				// The body is cut short: so is the client's copy (its
				// Content-Length tells it).
				l.abort(c)
				return false
			}
			if n < len(bk.buf) {
				bk.rdReady = false
			}
			bk.w = n
		}
		take := int(min(int64(bk.w-bk.r), c.remain))
		p := bk.buf[bk.r : bk.r+take]
		bk.r += take
		c.remain -= int64(take)
		c.sent += int64(take)
		if !l.send(c, p) {
			return false
		}
	}
}

// failed ends an attempt that got no response: the request goes again on
// another connection when it may (a reused connection the backend had
// closed), else the client gets 502 or 504.
func (l *evLoop) failed(c *evConn, err error) bool {
	if c.bk != nil {
		l.closeBack(c.bk)
		c.bk = nil
	}
	if canRetry(c.reused, c.req.method(), false, err) && c.attempt < maxAttempts-1 {
		c.attempt++
		return l.connect(c, l.pool(c.b))
	}
	l.s.opts.Logger.Warn("proxy: backend error", "host", string(c.req.host), "backend", c.b.addr, "err", err)
	code := errorStatus(err)
	out := appendErrorResponse(l.out[:0], code, c.req.close, c.req.head)
	l.out = out[:0]
	c.status, c.sent, c.remain = code, 0, 0
	c.state, c.deadline = stBody, time.Time{}
	return l.send(c, out)
}

// finish ends a request whose response is all written: the backend
// connection goes back to the pool, the client reads its next request.
func (l *evLoop) finish(c *evConn) bool {
	l.logRequest(c, c.status)
	if bk := c.bk; bk != nil {
		c.bk = nil
		p := bk.pool
		// Bytes after the body were not asked for (issue 20): the
		// connection is not reused, as the goroutine path decides.
		if c.noReuse || bk.r != bk.w || bodyless(c.req.method(), c.status) || len(p.idle) >= l.s.opts.MaxIdleConnsPerHost || p.b.pool.stopped.Load() || l.closing {
			l.closeBack(bk)
		} else {
			bk.owner, bk.idleAt, bk.r, bk.w = nil, l.now, 0, 0
			p.idle = append(p.idle, bk)
		}
	}
	c.r += c.req.n
	if c.req.close || l.closing {
		l.closeConn(c)
		return false
	}
	l.g.lim.state(c.lc, http.StateIdle)
	if c.r == c.w {
		c.r, c.w = 0, 0
		c.deadline = l.now.Add(l.s.opts.IdleTimeout)
	} else {
		c.deadline = l.now.Add(l.s.opts.ReadHeaderTimeout)
	}
	c.state, c.mayEnd = stHead, true
	return true
}

// logRequest writes the access log line of c's request.
func (l *evLoop) logRequest(c *evConn, status int) {
	a := l.s.log
	if a == nil {
		return
	}
	fr := &c.req
	if string(fr.ua) != c.ua {
		c.ua = string(fr.ua)
	}
	addr := "-"
	if c.b != nil {
		addr = c.b.addr
	}
	a.writeLine(c.ip, fr.method(), string(fr.target), "HTTP/1.1", c.host, c.ua, status, c.sent, c.start, l.now, addr)
}

// abort closes c and its backend connection mid-response (the client
// left, or the body was cut short).
func (l *evLoop) abort(c *evConn) {
	if c.bk != nil {
		l.closeBack(c.bk)
		c.bk = nil
	}
	l.logRequest(c, c.status)
	l.closeConn(c)
}

// forget takes fd out of the loop.
func (l *evLoop) forget(fd int) {
	l.ctl(unix.EPOLL_CTL_DEL, fd, 0, fd, 0)
	l.fds[fd] = fdEntry{}
}

func (l *evLoop) closeConn(c *evConn) {
	if c.state == stGone {
		return
	}
	if c.bk != nil {
		l.closeBack(c.bk)
		c.bk = nil
	}
	c.state = stGone
	l.fds[c.fd] = fdEntry{}
	unix.Close(c.fd)
	c.lc.release()
	l.load.Add(-1)
}

func (l *evLoop) closeBack(bk *evBack) {
	if bk.fd < 0 {
		return
	}
	l.fds[bk.fd] = fdEntry{}
	unix.Close(bk.fd)
	bk.fd, bk.owner = -1, nil
}

// dropIdle closes an idle pooled connection and takes it out of its pool.
func (l *evLoop) dropIdle(bk *evBack) {
	p := bk.pool
	for i, x := range p.idle {
		if x == bk {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	l.closeBack(bk)
}

// escape hands c (and bk, when the request was sent on it) to a
// goroutine of the fast path, with the bytes read and not yet served.
func (l *evLoop) escape(c *evConn, bk *evBack) {
	s := l.s
	l.forget(c.fd)
	c.state = stGone
	l.load.Add(-1)
	fd := c.fd
	nc, err := fileConn(fd, "client")
	if err != nil || !c.lc.swapConn(nc) {
		if nc != nil {
			nc.Close()
		}
		c.lc.release()
		if bk != nil {
			l.closeBack(bk)
		}
		return
	}
	var bc *backendConn
	if bk != nil {
		l.forget(bk.fd)
		bnc, err := fileConn(bk.fd, "backend")
		bk.fd = -1
		if err != nil {
			c.lc.Close()
			return
		}
		bc = newBackendConn(bnc, append([]byte(nil), bk.buf[:bk.w]...))
	}
	pre := append([]byte(nil), c.buf[c.r:c.w]...)
	b, start, lim, hand := c.b, c.start, l.g.lim, l.g.hand
	go func() {
		fc := s.newFastConn(c.lc, lim)
		fc.w = copy(fc.buf, pre)
		if !s.fast.add(fc) {
			if bc != nil {
				bc.c.Close()
			}
			c.lc.Close()
			return
		}
		defer s.fast.remove(fc)
		var sent func() bool
		if bc != nil {
			// The same head, now in fc's buffer.
			parseFastRequest(fc.buf[:fc.w], s.opts.MaxHeaders, &fc.req)
			fc.host = string(fc.req.host)
			sent = func() bool { return fc.serveSent(b, bc, start) }
		}
		fc.run(hand, sent)
	}()
}

// fileConn makes a net.Conn of a socket the loop let go of (its own
// descriptor is closed: the net.Conn holds a duplicate).
func fileConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), name)
	nc, err := net.FileConn(f)
	f.Close()
	return nc, err
}

// sweep closes what is past its deadline and idle backend connections
// that are too old or whose backend left the table; it resumes accepting.
func (l *evLoop) sweep() {
	l.pause(false)
	for fd := range l.fds {
		c := l.fds[fd].c
		if c == nil || c.deadline.IsZero() || l.now.Before(c.deadline) {
			continue
		}
		switch c.state {
		case stHead, stBody:
			// A head not read in time, an idle connection, or a client
			// that takes no bytes for WriteTimeout.
			if c.state == stBody {
				l.abort(c)
			} else {
				l.closeConn(c)
			}
		case stDial, stSend, stWait:
			l.failed(c, os.ErrDeadlineExceeded)
			l.drive(c)
		}
	}
	for b, p := range l.pools {
		stopped := b.pool.stopped.Load()
		kept := p.idle[:0]
		for _, bk := range p.idle {
			if stopped || l.now.Sub(bk.idleAt) > idleConnTimeout {
				l.closeBack(bk)
			} else {
				kept = append(kept, bk)
			}
		}
		clear(p.idle[len(kept):])
		p.idle = kept
		if stopped && len(p.idle) == 0 {
			delete(l.pools, b)
		}
	}
}

// beginClose stops accepting and closes the connections waiting for a
// request; the others close when their response is written.
func (l *evLoop) beginClose() {
	l.closing = true
	l.pause(true)
	for fd := range l.fds {
		if c := l.fds[fd].c; c != nil && c.state == stHead {
			l.closeConn(c)
		}
	}
}

// closeAll closes every connection and stops the loop.
func (l *evLoop) closeAll() {
	l.closing, l.stop = true, true
	l.pause(true)
	for fd := range l.fds {
		e := l.fds[fd]
		if e.c != nil {
			l.closeConn(e.c)
		} else if e.bk != nil {
			l.closeBack(e.bk)
		}
	}
	l.pools = map[*backend]*evPool{}
}

// rawRead and rawWrite are read(2) and write(2) as raw system calls (see
// sysConn: the loop's thread is not handed off at each call).
func rawRead(fd int, p []byte) (int, error) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

func rawWrite(fd int, p []byte) (int, error) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}
