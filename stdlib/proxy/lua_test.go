package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// TestLua runs testdata/proxy_test.lua twice: in a normal run (TestCheck*
// functions skip) and in check mode (only TestCheck* functions run).
func TestLua(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the backend, host=%s xff=%s", r.Host, r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(backend.Close)
	be := backend.Listener.Addr().String()
	for _, check := range []bool{false, true} {
		name := map[bool]string{false: "run", true: "check"}[check]
		t.Run(name, func(t *testing.T) {
			rec := &recorder{}
			luatest.Run(t, "testdata/proxy_test.lua", engine.Options{
				Modules: []engine.Module{
					host.Module(),
					proxy.Module(func(*engine.Env) proxy.Resolver {
						// web1 is reached like a guest on user-mode networking:
						// its port 80 is the test backend's address.
						return proxy.StaticResolver{"web1:80": be, "web2": "10.77.0.3"}
					}),
					testModule(rec),
				},
				Check:    check,
				StateDir: t.TempDir(),
				Vars:     map[string]any{"backend": be},
				Reporter: engine.Tee{engine.NewHumanReporter(tlog{t}, true), rec},
			})
		})
	}
}

// TestLuaServeStopsAtClose: the proxy started by proxy.serve stops when
// the engine closes.
func TestLuaServeStopsAtClose(t *testing.T) {
	eng, err := engine.New(engine.Options{
		Modules:  []engine.Module{proxy.Module(proxy.NoGuests)},
		StateDir: t.TempDir(),
		Stdout:   tlog{t},
		Reporter: engine.NewHumanReporter(tlog{t}, false),
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := eng.Eval(context.Background(), `
local proxy = require("proxy")
local ok, e = pcall(proxy.vhost, {host = "a.test", to = "web1", port = 80})
return proxy.serve{listen = "127.0.0.1:0"}, e.kind, e.msg`, "close.lua", false)
	if err != nil {
		eng.Close()
		t.Fatal(err)
	}
	if kind, msg := out[1].String(), out[2].String(); kind != "not_found" || !strings.Contains(msg, `unknown guest "web1": define it with colinux.guest`) {
		t.Errorf("NoGuests: kind %s, msg %s", kind, msg)
	}
	addr := out[0].String()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		eng.Close()
		t.Fatalf("proxy.serve is not listening on %s: %v", addr, err)
	}
	c.Close()
	eng.Close()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the engine closed", addr)
	}
}

// recorder keeps the changes of finished calls, for proxytest.last().
type recorder struct {
	mu      sync.Mutex
	changes []engine.Change
}

func (r *recorder) Event(ev engine.Event) {
	if ev.Type != "task_end" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, ev.Changes...)
}

func (r *recorder) last() (engine.Change, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.changes) == 0 {
		return engine.Change{}, false
	}
	return r.changes[len(r.changes)-1], true
}

type fakeGuest struct{ name string }

func (g fakeGuest) GuestName() string { return g.name }

// testModule is require("proxytest"): last() -> the last reported change;
// guest(name) -> a guest object; get(addr, host) -> status, body.
func testModule(rec *recorder) engine.Module {
	return engine.ModuleFunc{ModName: "proxytest", Open: func(env *engine.Env) lua.LGFunction {
		return func(L *lua.LState) int {
			L.Push(L.SetFuncs(L.NewTable(), map[string]lua.LGFunction{
				"last": func(L *lua.LState) int {
					c, ok := rec.last()
					if !ok {
						L.Push(lua.LNil)
						return 1
					}
					L.Push(lx.FromGo(L, map[string]any{"module": c.Module, "action": c.Action, "subject": c.Subject, "status": string(c.Status), "diff": c.Diff, "detail": c.Detail}))
					return 1
				},
				"guest": func(L *lua.LState) int {
					ud := L.NewUserData()
					ud.Value = fakeGuest{L.CheckString(1)}
					L.Push(ud)
					return 1
				},
				"get": func(L *lua.LState) int {
					addr, hostName := L.CheckString(1), L.CheckString(2)
					var code int
					var body string
					err := env.Block(L, func(ctx context.Context) error {
						ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
						defer cancel()
						req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
						if err != nil {
							return err
						}
						req.Host = hostName
						tr := &http.Transport{}
						defer tr.CloseIdleConnections()
						resp, err := tr.RoundTrip(req)
						if err != nil {
							return err
						}
						defer resp.Body.Close()
						b, err := io.ReadAll(resp.Body)
						code, body = resp.StatusCode, string(b)
						return err
					})
					if err != nil {
						lx.Raise(L, err)
					}
					L.Push(lua.LNumber(code))
					L.Push(lua.LString(body))
					return 2
				},
			}))
			return 1
		}
	}}
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Helper()
	defer func() { _ = recover() }() // output after the test ended
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestLuaServeLimits: proxy.serve{} takes the limits, strictly decoded.
func TestLuaServeLimits(t *testing.T) {
	eng, err := engine.New(engine.Options{
		Modules:  []engine.Module{proxy.Module(proxy.NoGuests)},
		StateDir: t.TempDir(),
		Stdout:   tlog{t},
		Reporter: engine.NewHumanReporter(tlog{t}, false),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	out, err := eng.Eval(context.Background(), `
local proxy = require("proxy")
local ok, e = pcall(proxy.serve, {listen = "127.0.0.1:0", max_con = 1})
return proxy.serve{listen = "127.0.0.1:0", max_conns_per_ip = 1, read_header_timeout = "300ms", backend_timeout = 5}, e.msg`, "limits.lua", false)
	if err != nil {
		t.Fatal(err)
	}
	if msg := out[1].String(); !strings.Contains(msg, `unknown option "max_con" (did you mean "max_conns"?`) {
		t.Errorf("misspelt limit: %s", msg)
	}
	addr := out[0].String()
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetDeadline(time.Now().Add(5 * time.Second))
	if b, _ := io.ReadAll(second); !strings.HasPrefix(string(b), "HTTP/1.1 503 ") {
		t.Errorf("second connection with max_conns_per_ip = 1: got %q, want a 503", b)
	}
	// read_header_timeout: the first, silent connection is closed soon.
	first.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := first.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("silent connection after read_header_timeout: %v, want EOF", err)
	}
}
