package cluster

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// get asks proxyAddr for vhost's page.
func get(proxyAddr, vhost string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+proxyAddr+"/", nil)
	req.Host = vhost
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// waitServed polls until proxyAddr serves vhost with a body containing want.
func waitServed(t *testing.T, proxyAddr, vhost, want string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code, body, err := get(proxyAddr, vhost)
		if err == nil && code == 200 && strings.Contains(body, want) {
			return time.Since(start)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s via %s: %d %q %v after 10s, want %q", vhost, proxyAddr, code, body, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRoutesEveryProxy: two hosts, each with its proxy; a site whose guest
// runs on a (a loopback backend standing in for it) is served by both: a
// to the guest, b through a's proxy with the Host header kept. Local
// routes of a host are served too; removing a route stops it everywhere.
func TestRoutesEveryProxy(t *testing.T) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "site on a, host=%s", r.Host)
	}))
	t.Cleanup(site.Close)
	local := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "b's own site")
	}))
	t.Cleanup(local.Close)

	a := hostConfig(t, "a", "127.0.0.1")
	a.ProxyAddr = "127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1"))
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{ProxyListen: a.ProxyAddr})
	ctx := ctxT(t)
	ca := connect(t, a)
	ca0, _ := LoadCA(a.Dir)
	tok, err := ca.NewToken(ctx, a.joinAddr(), ca0.Fingerprint(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	b := hostConfig(t, "b", "127.0.0.1")
	b.ProxyAddr = "127.0.0.1:" + strconv.Itoa(freePort(t, "127.0.0.1"))
	if err := Join(ctx, b, tok); err != nil {
		t.Fatal(err)
	}
	// b's own registry (what proxy.vhost writes) with one vhost.
	localFile := filepath.Join(t.TempDir(), "routes.json")
	lh, lp, _ := strings.Cut(local.Listener.Addr().String(), ":")
	lport, _ := strconv.Atoi(lp)
	data := fmt.Sprintf(`{"vhosts":[{"host":"own.b.test","to":"x","addr":%q,"port":%d}],"forwards":[]}`, lh, lport)
	if err := os.WriteFile(localFile, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	serve(t, b, ServeOptions{ProxyListen: b.ProxyAddr, LocalRoutes: localFile})

	if err := ca.SetRoute(ctx, Route{VHost: "Web1.Farm.Test", Host: "a", Guest: "web1", Addr: site.Listener.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	da := waitServed(t, a.ProxyAddr, "web1.farm.test", "site on a, host=web1.farm.test")
	db := waitServed(t, b.ProxyAddr, "web1.farm.test", "site on a, host=web1.farm.test")
	t.Logf("route served by a after %v, by b (through a's proxy) after %v", da, db)
	waitServed(t, b.ProxyAddr, "own.b.test", "b's own site")

	// b's table: the cluster vhost goes to a's proxy, not to the guest.
	tb, err := proxy.LoadTable(RoutesFile(b.Dir))
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.String(); !strings.Contains(got, "vhost web1.farm.test -> "+a.ProxyAddr) {
		t.Fatalf("b's table:\n%s", got)
	}

	// A cluster route for a vhost b has its own route for: b keeps its
	// own, until it drops it from its registry.
	if err := ca.SetRoute(ctx, Route{VHost: "own.b.test", Host: "a", Guest: "web1", Addr: site.Listener.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	// A later route served by b: b has seen the one before it too.
	if err := ca.SetRoute(ctx, Route{VHost: "later.farm.test", Host: "a", Guest: "web1", Addr: site.Listener.Addr().String()}); err != nil {
		t.Fatal(err)
	}
	waitServed(t, b.ProxyAddr, "later.farm.test", "site on a, host=later.farm.test")
	if code, body, err := get(b.ProxyAddr, "own.b.test"); err != nil || body != "b's own site" {
		t.Fatalf("own.b.test via b, with a cluster route for it too: %d %q %v, want b's own site", code, body, err)
	}
	if err := os.WriteFile(localFile, []byte(`{"vhosts":[],"forwards":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitServed(t, b.ProxyAddr, "own.b.test", "site on a, host=own.b.test")

	if err := ca.RemoveRoute(ctx, "web1.farm.test"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a.ProxyAddr, b.ProxyAddr} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			code, _, err := get(p, "web1.farm.test")
			if err == nil && code == 404 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("web1 via %s after removal: %d %v", p, code, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
