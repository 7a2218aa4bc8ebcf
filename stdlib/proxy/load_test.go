package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLoadAttackersDontStarveNormalClient is issue 20's load test: while
// 20,000 idle connections, 200 slowloris connections and 8 connections
// sending 8,000-field heads at 246 KiB/s run against the proxy (with its
// default limits), a normal client is still served, and its p99 latency
// stays within loadP99Bound of its p99 without the attack. All on
// loopback; the attackers come from other 127.x addresses than the
// client, as from other machines.
//
// The two sides are measured in alternating rounds (quiet, attack, quiet,
// attack...), each quiet round starting from a proxy with no attacker
// connection left, and each side's p99 is the median of its rounds'
// p99s. The machine is shared: a burst of load from elsewhere falls on
// one round, not on a whole side, while an attack that slows the proxy
// slows every attack round. The 20,000 idle connections are opened in the
// first attack round only: each connection holds a netfilter conntrack
// entry, for 2 minutes after a normal close (TIME_WAIT), and a few runs of
// 60,000 filled the host's table (262,144; "nf_conntrack: table full,
// dropping packet"), which dropped SYNs for every test on the machine.
// So the helpers close them with a reset (the entry then goes after 10 s,
// nf_conntrack_tcp_timeout_close), and the test skips, saying so, when
// the table has no room for them (loadConntrackRoom).
//
// The idle connections outnumber the proxy's file descriptors (the
// machine's limit is 20,000): without the connection cap and its reclaim
// of idle connections the proxy runs out of descriptors and accepts no
// new client at all (the finding 3).
func TestLoadAttackersDontStarveNormalClient(t *testing.T) {
	if testing.Short() {
		t.Skip("load test: about 25s")
	}
	const (
		rounds   = 3
		requests = 500 // per side and round
	)
	if lim := fdLimit(); lim < 12000 {
		t.Skipf("file-descriptor limit %d is too low for the load test", lim)
	}
	if err := loadConntrackRoom(); err != nil {
		t.Skipf("load test skipped: %v", err)
	}
	be := newNamedBackend(t, "A")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	reg := NewRegistry(t.TempDir(), StaticResolver{})
	mustVHost(t, reg, "a.test", hostPort(be.Server))
	addr := startProxyOn(t, cl, reg, Options{})

	// The normal client: keep-alive, and every 10th request from a new
	// connection, a new visitor. From 127.0.0.1. It paces its requests
	// (loadPace apart) so that a round spans a few cycles of the flood
	// connections (a head every ~0.3s each) rather than a fraction of one.
	client := func(fresh bool) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: fresh,
			DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext,
		}}
	}
	keep, fresh := client(false), client(true)
	var quietLat, attackLat []time.Duration
	var quietP99, attackP99 []time.Duration // per round
	failed := map[string]int{}
	measure := func(name string, lat *[]time.Duration) {
		for i := 0; i < requests; i++ {
			c := keep
			if i%10 == 0 {
				c = fresh
			}
			start := time.Now()
			code, body, err := get(c, addr, "a.test")
			*lat = append(*lat, time.Since(start))
			if err != nil || code != 200 || !strings.Contains(body, "backend=A") {
				if failed[name]++; failed[name] <= 3 {
					t.Logf("%s: request %d: %d %v", name, i, code, err)
				}
			}
			time.Sleep(loadPace)
		}
	}
	var total loadAttack
	for r := 0; r < rounds; r++ {
		// Quiet: only the normal client's keep-alive connection (and a
		// fresh one being closed) may be open.
		eventually(t, "the attackers' connections closed by the proxy", func() error {
			if n := cl.open.Load(); n > 2 {
				return fmt.Errorf("%d connections open", n)
			}
			return nil
		})
		measure("quiet", &quietLat)
		a := startLoadAttack(t, addr, r == 0)
		measure("under attack", &attackLat)
		a.stop()
		total.add(a)
		quietP99 = append(quietP99, p99(quietLat[r*requests:]))
		attackP99 = append(attackP99, p99(attackLat[r*requests:]))
	}
	base, attack := median(quietP99), median(attackP99)
	t.Logf("normal client p99 (median of %d rounds of %d requests): %v quiet, %v under attack (%.2fx); rounds: %v quiet, %v under attack; over all requests: %v quiet, %v under attack",
		rounds, requests, base, attack, float64(attack)/float64(base), quietP99, attackP99, p99(quietLat), p99(attackLat))
	t.Logf("idle connections opened %d (errors %d); per round: slowloris connections %d, flood heads answered %d (%d with 400/431)",
		total.dialed, total.dialErrs, total.slowConns/rounds, total.quadAnswers/rounds, total.quadOK/rounds)
	if failed["quiet"] > 0 {
		t.Errorf("quiet: %d of %d requests failed", failed["quiet"], len(quietLat))
	}
	if failed["under attack"] > 0 {
		t.Errorf("under attack: %d of %d normal requests failed", failed["under attack"], len(attackLat))
	}
	switch bound := loadP99Bound(base); {
	case raceEnabled:
		// The race detector slows every goroutine, the attackers' included,
		// 5-20x: a latency bound means nothing there.
		t.Logf("race detector on: p99 bound %v not checked", bound)
	case attack > bound:
		t.Errorf("normal client p99 under attack %v > %v (2x the quiet %v, at least +%v)", attack, bound, base, loadP99Slack)
	}
	if total.quadAnswers > 0 && total.quadOK != total.quadAnswers {
		t.Errorf("flood heads: %d of %d answered with something else than 400/431", total.quadAnswers-total.quadOK, total.quadAnswers)
	}
	if total.dialed < loadIdle/2 {
		t.Errorf("only %d of %d idle connections were opened: the attack did not happen", total.dialed, loadIdle)
	}
}

// loadP99Slack is the least headroom the load test allows over the quiet
// p99, which is 0.3-3 ms on loopback. The flood heads cost the proxy
// about 4% of a core (1.4 ms of parsing per 63 KB head, 2 MB/s of them),
// in slices that hold one of the process's two Ps: on a machine saturated
// by other work that measured up to +4 ms at p99 (2.5x), in every round,
// and once 3.7x while a benchmark ran beside it. A starved client (the
// issue's 0.55 s per flood head) is off by 100x: 25 ms still catches it
// 20 times over, and no busy neighbour fails the test.
const loadP99Slack = 25 * time.Millisecond

// loadP99Bound is the p99 the normal client must stay under while
// attacked: 2x the quiet p99, or the quiet p99 plus loadP99Slack.
func loadP99Bound(base time.Duration) time.Duration {
	return max(2*base, base+loadP99Slack)
}

func p99(lat []time.Duration) time.Duration {
	s := slices.Clone(lat)
	slices.Sort(s)
	return s[len(s)*99/100]
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// countingListener counts the proxy's open client connections.
type countingListener struct {
	net.Listener
	open atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.open.Add(1)
	return &countedConn{Conn: c, l: l}, nil
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.open.Add(-1) })
	return c.Conn.Close()
}

// CloseWrite keeps the half-close net/http does before closing.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// The load test's attack, per round.
const (
	loadPace      = 2 * time.Millisecond // between the normal client's requests
	loadIdle      = 20000                // idle connections, from two helper processes
	loadSlowloris = 200
	loadQuadratic = 8
)

// loadAttack is one round of the load test's attack; its counters are
// final after stop.
type loadAttack struct {
	dialed, dialErrs, slowConns, quadAnswers, quadOK int64

	counters [5]atomic.Int64 // the above, while running
	halt     chan struct{}
	wg       sync.WaitGroup
	helpers  []func()
}

func (a *loadAttack) add(b *loadAttack) {
	a.dialed += b.dialed
	a.dialErrs += b.dialErrs
	a.slowConns += b.slowConns
	a.quadAnswers += b.quadAnswers
	a.quadOK += b.quadOK
}

// startLoadAttack starts the attackers against addr and returns once every
// idle connection was opened (or refused).
func startLoadAttack(t *testing.T, addr string, idle bool) *loadAttack {
	a := &loadAttack{halt: make(chan struct{})}
	dialed, dialErrs, slowConns, quadAnswers, quadOK := &a.counters[0], &a.counters[1], &a.counters[2], &a.counters[3], &a.counters[4]
	t.Cleanup(a.stop)
	dialFromAddr := func(ip net.IP) (net.Conn, error) {
		// The slowloris and flood connections (208) stay in this process.
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
		return d.Dial("tcp", addr)
	}
	// The idle connections come from two child processes (this test
	// binary again, see TestLoadIdleHelper), 10,000 each: one process may
	// not hold 20,000 under a limit of 20,000 descriptors.
	if idle {
		for i := 0; i < 2; i++ { // 400 per address from 50 addresses
			a.helpers = append(a.helpers, startIdleHelper(t, addr, loadIdle/2, 25*i, dialed, dialErrs))
		}
	}
	for i := 0; i < loadSlowloris; i++ { // a header line a second, reconnecting
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for {
				c, err := dialFromAddr(net.IPv4(127, 0, 2, byte(1+i%4)))
				if err != nil {
					select {
					case <-a.halt:
						return
					case <-time.After(time.Second):
						continue
					}
				}
				slowConns.Add(1)
				_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n")
				for err == nil {
					select {
					case <-a.halt:
						c.Close()
						return
					case <-time.After(time.Second):
					}
					_, err = io.WriteString(c, "X-A: b\r\n")
				}
				c.Close()
			}
		}()
	}
	head := quadraticHead("a.test")
	for i := 0; i < loadQuadratic; i++ { // 8 KiB every 32 ms: 246 KiB/s
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for {
				c, err := dialFromAddr(net.IPv4(127, 0, 3, byte(1+i)))
				if err != nil {
					select {
					case <-a.halt:
						return
					case <-time.After(100 * time.Millisecond):
						continue
					}
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				for off := 0; off < len(head) && err == nil; off += 8 << 10 {
					_, err = io.WriteString(c, head[off:min(off+8<<10, len(head))])
					select {
					case <-a.halt:
						c.Close()
						return
					case <-time.After(32 * time.Millisecond):
					}
				}
				status := make([]byte, 12)
				if _, err := io.ReadFull(c, status); err == nil {
					quadAnswers.Add(1)
					if s := string(status[9:12]); s == "431" || s == "400" {
						quadOK.Add(1)
					}
				}
				c.Close()
			}
		}()
	}
	// Measure once every idle connection was opened (or refused).
	// Measure once the attack is on: every idle connection opened (or
	// refused), every slowloris connection open, every flood connection
	// through one head.
	eventually(t, "the attack running", func() error {
		if d, e := dialed.Load(), dialErrs.Load(); idle && d+e < loadIdle {
			return fmt.Errorf("%d of %d idle connections opened, %d failed", d, loadIdle, e)
		}
		if n := slowConns.Load(); n < loadSlowloris {
			return fmt.Errorf("%d of %d slowloris connections open", n, loadSlowloris)
		}
		if n := quadAnswers.Load(); n < loadQuadratic {
			return fmt.Errorf("%d of %d flood heads answered", n, loadQuadratic)
		}
		return nil
	})
	return a
}

// stop ends the attack and closes its connections; idempotent.
func (a *loadAttack) stop() {
	select {
	case <-a.halt:
		return
	default:
	}
	close(a.halt)
	a.wg.Wait()
	for _, stop := range a.helpers {
		stop()
	}
	a.dialed, a.dialErrs, a.slowConns, a.quadAnswers, a.quadOK =
		a.counters[0].Load(), a.counters[1].Load(), a.counters[2].Load(), a.counters[3].Load(), a.counters[4].Load()
}

// idleHelperIP is the idle helpers' source address number i: 127.1.0.1,
// 127.1.0.2...
func idleHelperIP(i int) net.IP { return net.IPv4(127, 1, byte(i/250), byte(1+i%250)) }

// startIdleHelper runs TestLoadIdleHelper in a child process: n idle
// connections to addr from the 25 addresses idleHelperIP(first...). Its progress
// lines ("dialed D errors E") update the counters. The returned stop
// closes them and waits for the process to exit.
func startIdleHelper(t *testing.T, addr string, n, first int, dialed, errs *atomic.Int64) (stop func()) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoadIdleHelper$", "-test.v")
	cmd.Env = append(os.Environ(), fmt.Sprintf("TINYFARM_IDLE_HELPER=%s,%d,%d", addr, n, first))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var lastD, lastE int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var d, e int64
			if _, err := fmt.Sscanf(sc.Text(), "dialed %d errors %d", &d, &e); err == nil {
				dialed.Add(d - lastD)
				errs.Add(e - lastE)
				lastD, lastE = d, e
			}
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			stdin.Close() // the helper exits when its stdin closes
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
			}
			cmd.Wait()
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestLoadIdleHelper is the child process of startIdleHelper; it skips
// unless started by it.
func TestLoadIdleHelper(t *testing.T) {
	spec := os.Getenv("TINYFARM_IDLE_HELPER")
	if spec == "" {
		t.Skip("the load test's idle-connection helper process")
	}
	var (
		addr     string
		n, first int
	)
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		t.Fatalf("TINYFARM_IDLE_HELPER=%q", spec)
	}
	addr = parts[0]
	fmt.Sscan(parts[1], &n)
	fmt.Sscan(parts[2], &first)
	var dialed, errs atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: idleHelperIP(first + i%25)}}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					errs.Add(1)
					continue
				}
				// A reset on close: its conntrack entry goes after 10 s,
				// not 2 minutes (see the load test).
				c.(*net.TCPConn).SetLinger(0)
				dialed.Add(1)
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	report := func() { fmt.Printf("dialed %d errors %d\n", dialed.Load(), errs.Load()) }
	for running := true; running; {
		select {
		case <-finished:
			running = false
		case <-time.After(200 * time.Millisecond):
		}
		report()
	}
	io.Copy(io.Discard, os.Stdin) // hold the connections until the parent is done
	mu.Lock()
	for _, c := range conns {
		c.Close()
	}
	mu.Unlock()
}

// loadConntrackRoom returns an error naming the numbers when the host's
// netfilter connection-tracking table (if loaded) has no room for the load
// test's connections with a margin for everything else on the machine:
// when it is full, the kernel drops new connections' SYNs, for every
// process on the host.
func loadConntrackRoom() error {
	read := func(name string) (int, bool) {
		b, err := os.ReadFile("/proc/sys/net/netfilter/" + name)
		if err != nil {
			return 0, false
		}
		var n int
		_, err = fmt.Sscan(string(b), &n)
		return n, err == nil
	}
	count, ok1 := read("nf_conntrack_count")
	max, ok2 := read("nf_conntrack_max")
	if !ok1 || !ok2 || max == 0 {
		return nil // no conntrack: nothing to fill
	}
	need := 2*(loadIdle+loadSlowloris+loadQuadratic) + 10000
	if max-count < need {
		return fmt.Errorf("the conntrack table has %d of %d entries in use (nf_conntrack_count/nf_conntrack_max) and the test needs about %d free; "+
			"wait for entries to expire or raise net.netfilter.nf_conntrack_max", count, max, need)
	}
	return nil
}
