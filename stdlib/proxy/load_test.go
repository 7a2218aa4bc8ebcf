package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
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
// stays within loadP99Bound of the p99 measured just before, in the same
// test. All on loopback; the attackers come from other 127.x addresses
// than the client, as from other machines.
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
		slowloris = 200
		quadratic = 8
		requests  = 1500 // per phase
	)
	// The idle connections come from two child processes (this test
	// binary again, see TestLoadIdleHelper), 10,000 each: one process may
	// not hold 20,000 under a limit of 20,000 descriptors.
	idle := 20000
	if lim := fdLimit(); lim < 12000 {
		t.Skipf("file-descriptor limit %d is too low for the load test", lim)
	}
	be := newNamedBackend(t, "A")
	addr := startProxy(t, Options{}, "a.test", hostPort(be.Server))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stop); wg.Wait() })

	var dialed, dialErrs, slowConns, quadAnswers, quadOK atomic.Int64
	// The normal client: keep-alive, and every 10th request from a new
	// connection, a new visitor. From 127.0.0.1.
	client := func(fresh bool) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: fresh,
			DialContext:       (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}).DialContext,
		}}
	}
	keep, fresh := client(false), client(true)
	phase := func(name string) (p99 time.Duration, failed int) {
		lat := make([]time.Duration, 0, requests)
		for i := 0; i < requests; i++ {
			c := keep
			if i%10 == 0 {
				c = fresh
			}
			start := time.Now()
			code, body, err := get(c, addr, "a.test")
			lat = append(lat, time.Since(start))
			if err != nil || code != 200 || !strings.Contains(body, "backend=A") {
				failed++
				if failed <= 3 {
					t.Logf("%s: request %d: %d %v", name, i, code, err)
				}
			}
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		return lat[len(lat)*99/100], failed
	}
	base, failed := phase("baseline")
	if failed > 0 {
		t.Fatalf("baseline: %d of %d requests failed", failed, requests)
	}

	// Attackers.
	dialFromAddr := func(ip net.IP) (net.Conn, error) {
		// The slowloris and flood connections (208) stay in this process.
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: ip}}
		return d.Dial("tcp", addr)
	}
	for i := 0; i < 2; i++ { // 400 per address from 127.0.1.1-50
		startIdleHelper(t, addr, idle/2, 25*i, &dialed, &dialErrs)
	}
	for i := 0; i < slowloris; i++ { // a header line a second, reconnecting
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := dialFromAddr(net.IPv4(127, 0, 2, byte(1+i%4)))
				if err != nil {
					select {
					case <-stop:
						return
					case <-time.After(time.Second):
						continue
					}
				}
				slowConns.Add(1)
				_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n")
				for err == nil {
					select {
					case <-stop:
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
	for i := 0; i < quadratic; i++ { // 8 KiB every 32 ms: 246 KiB/s
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := dialFromAddr(net.IPv4(127, 0, 3, byte(1+i)))
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				for off := 0; off < len(head) && err == nil; off += 8 << 10 {
					_, err = io.WriteString(c, head[off:min(off+8<<10, len(head))])
					time.Sleep(32 * time.Millisecond)
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
	for deadline := time.Now().Add(60 * time.Second); dialed.Load()+dialErrs.Load() < int64(idle) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	attack, failed := phase("under attack")
	t.Logf("normal client p99: %v baseline, %v under attack (%.2fx); idle connections opened %d (errors %d), slowloris connections %d, flood heads answered %d (%d with 400/431)",
		base, attack, float64(attack)/float64(base), dialed.Load(), dialErrs.Load(), slowConns.Load(), quadAnswers.Load(), quadOK.Load())
	if failed > 0 {
		t.Errorf("under attack: %d of %d normal requests failed", failed, requests)
	}
	if bound := loadP99Bound(base); attack > bound {
		t.Errorf("normal client p99 under attack %v > %v (2x the baseline %v, at least +%v)", attack, bound, base, loadP99Slack)
	}
	if quadAnswers.Load() > 0 && quadOK.Load() != quadAnswers.Load() {
		t.Errorf("flood heads: %d of %d answered with something else than 400/431", quadAnswers.Load()-quadOK.Load(), quadAnswers.Load())
	}
	if dialed.Load() < int64(idle)/2 {
		t.Errorf("only %d of %d idle connections were opened: the attack did not happen", dialed.Load(), idle)
	}
}

// loadP99Slack is the least headroom the load test allows over the
// baseline p99: on a shared 2-core machine a loopback request's p99 is
// well under a millisecond, and one scheduler hiccup of the attackers'
// own goroutines (in the same process) is worth more than 2x of that.
const loadP99Slack = 20 * time.Millisecond

// loadP99Bound is the p99 the normal client must stay under while
// attacked: 2x the baseline, or the baseline plus loadP99Slack.
func loadP99Bound(base time.Duration) time.Duration {
	return max(2*base, base+loadP99Slack)
}

// startIdleHelper runs TestLoadIdleHelper in a child process: n idle
// connections to addr from 127.0.1.(first+1)..(first+25). Its progress
// lines ("dialed D errors E") update the counters.
func startIdleHelper(t *testing.T, addr string, n, first int, dialed, errs *atomic.Int64) {
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
	t.Cleanup(func() {
		stdin.Close() // the helper exits when its stdin closes
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
		}
		cmd.Wait()
	})
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
				d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+first+i%25))}}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					errs.Add(1)
					continue
				}
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
