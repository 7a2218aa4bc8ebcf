//go:build unix

package proxy_test

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

const daemonPlaybook = `
local proxy = require("proxy")
proxy.vhost{ host = "site.test", to = "127.0.0.1", port = tonumber(vars.backend) }
proxy.daemon{ listen = vars.listen }
`

// daemonFarm is a state dir whose playbook routes site.test to a
// backend on loopback through a proxy daemon on listen; every daemon it
// leaves is killed (by pid) when the test ends.
func daemonFarm(t *testing.T) (run crashtest.Cmd, state, listen string) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") }))
	t.Cleanup(backend.Close)
	work, state := t.TempDir(), t.TempDir()
	pb := filepath.Join(work, "daemon.lua")
	if err := os.WriteFile(pb, []byte(daemonPlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen = ln.Addr().String()
	ln.Close()
	t.Cleanup(func() {
		for _, pid := range daemons(state) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	_, port, _ := net.SplitHostPort(backend.Listener.Addr().String())
	return crashtest.Cmd{Args: []string{"run", pb, "-e", "backend=" + port, "-e", "listen=" + listen}, Env: []string{"TINYFARM_HOME=" + state}, Dir: work}, state, listen
}

// daemons lists the proxy daemons serving the registry of state (found by
// their command line, which names its access log).
func daemons(state string) []int {
	var pids []int
	m, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range m {
		b, err := os.ReadFile(f)
		if err != nil || !strings.Contains(string(b), "proxy\x00serve") || !strings.Contains(string(b), filepath.Join(state, "proxy")+"/") {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		pids = append(pids, pid)
	}
	return pids
}

// serves checks that one daemon of state serves site.test on listen.
func serves(t *testing.T, state, listen string, r fmt.Stringer) {
	t.Helper()
	if ds := daemons(state); len(ds) != 1 {
		t.Errorf("%v: %d proxy daemons run, want 1: %v", r, len(ds), ds)
	}
	if pid, _, ok := proxy.RunningDaemon(filepath.Join(state, "proxy")); !ok || !slicesContains(daemons(state), pid) {
		t.Errorf("%v: the pid file names %d (%v), not a running daemon", r, pid, ok)
	}
	req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
	req.Host = "site.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%v: GET through the proxy: %v", r, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("%v: GET through the proxy: %s", r, resp.Status)
	}
}

func slicesContains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestCrashDaemonStart kills `tinyfarm run` at random moments of a
// playbook that routes a host and starts the proxy daemon: the rerun
// leaves exactly one daemon, named by the pid file, serving the route.
func TestCrashDaemonStart(t *testing.T) {
	run, state, listen := daemonFarm(t)
	crashtest.RunOp(t, crashtest.Op{
		Name:   "proxy.daemon{} start",
		Trials: 4, // ~1.5 s each
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			for _, pid := range daemons(state) {
				syscall.Kill(pid, syscall.SIGKILL)
				for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
					time.Sleep(10 * time.Millisecond)
				}
			}
			return run
		},
		Check: func(t *testing.T, r crashtest.Result) {
			if out, err := crashtest.Run(t, run); err != nil {
				t.Errorf("%v: rerun: %v\n%s", r, err, out)
			}
			serves(t, state, listen, r)
		},
	})
}

// TestCrashDaemonUnderLoad kills the proxy daemon with SIGKILL at random
// moments while clients send requests through it: rerunning the playbook
// (proxy.daemon{}) starts it again with its routes intact.
func TestCrashDaemonUnderLoad(t *testing.T) {
	run, state, listen := daemonFarm(t)
	crashtest.MustRun(t, run)
	routes, err := os.ReadFile(filepath.Join(state, "proxy", proxy.RoutesFile))
	if err != nil {
		t.Fatal(err)
	}
	seed := crashtest.Seed(t)
	rng := rand.New(rand.NewPCG(seed, 21))
	n := crashtest.Trials(t, 4)
	for i := 1; i <= n; i++ {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var ok atomic.Int64
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &http.Client{Timeout: 2 * time.Second}
				for {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest("GET", "http://"+listen+"/", nil)
					req.Host = "site.test"
					if resp, err := c.Do(req); err == nil {
						resp.Body.Close()
						ok.Add(1)
					}
				}
			}()
		}
		at := time.Duration(rng.Int64N(int64(500 * time.Millisecond)))
		time.Sleep(at)
		pid, _, running := proxy.RunningDaemon(filepath.Join(state, "proxy"))
		if !running {
			t.Fatalf("trial %d: no daemon runs", i)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		close(stop)
		wg.Wait()
		r := stringer(fmt.Sprintf("trial %d: daemon %d killed after %v under load (%d requests served)", i, pid, at.Round(time.Millisecond), ok.Load()))
		for j := 0; j < 100 && syscall.Kill(pid, 0) == nil; j++ {
			time.Sleep(10 * time.Millisecond)
		}
		if out, err := crashtest.Run(t, run); err != nil {
			t.Fatalf("%v: rerun: %v\n%s", r, err, out)
		}
		serves(t, state, listen, r)
		if b, _ := os.ReadFile(filepath.Join(state, "proxy", proxy.RoutesFile)); string(b) != string(routes) {
			t.Errorf("%v: routes changed:\n%s", r, b)
		}
		if t.Failed() {
			t.Logf("seed %s=%d", crashtest.EnvSeed, seed)
			break
		}
	}
	t.Logf("proxy daemon killed under load: %d trials, seed %s=%d", n, crashtest.EnvSeed, seed)
}

type stringer string

func (s stringer) String() string { return string(s) }
