package proxy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/golden"
)

func sampleTable() Table {
	return Table{
		VHosts: []VHost{
			{Host: "web1.example.com", To: "web1", Guest: true, Addr: "10.77.0.2", Port: 80},
			{Host: "*.apps.example.com", To: "10.77.0.3", Addr: "10.77.0.3", Port: 8080},
			{Host: "www.example.com", To: "web1", Guest: true, Addr: "10.77.0.2", Port: 80},
			{Host: "v6.example.com", To: "::1", Addr: "::1", Port: 8000},
		},
		Forwards: []Forward{
			{Listen: ":2201", To: "web1", Guest: true, Addr: "10.77.0.2", Port: 22},
			{Listen: "127.0.0.1:5432", To: "10.77.0.4", Addr: "10.77.0.4", Port: 5432},
		},
	}
}

func TestRenderNginxGolden(t *testing.T) {
	httpConf, streamConf := RenderNginx(sampleTable(), NginxOptions{})
	golden.Check(t, "nginx_http.golden", httpConf)
	golden.Check(t, "nginx_stream.golden", streamConf)

	tab := sampleTable()
	tab.VHosts = append(tab.VHosts, VHost{Host: DefaultHost, To: "10.77.0.9", Addr: "10.77.0.9", Port: 80})
	tab.Forwards = nil
	httpConf, streamConf = RenderNginx(tab, NginxOptions{Listen: "127.0.0.1:8080", DefaultServer: true, Keepalive: 16})
	golden.Check(t, "nginx_http_default.golden", httpConf)
	if streamConf != "" {
		t.Errorf("no forwards, but stream rendered:\n%s", streamConf)
	}
	empty, _ := RenderNginx(Table{}, NginxOptions{DefaultServer: true})
	golden.Check(t, "nginx_http_empty.golden", empty)
}

// TestApplyNginxRefusesBadConfig: a configuration nginx rejects never
// replaces the live one, and the running nginx keeps serving.
func TestApplyNginxRefusesBadConfig(t *testing.T) {
	requireNginx(t)
	ctx := context.Background()
	tg := newTarget(t, "nginx")
	a := newNamedBackend(t, "A")
	mustVHost(t, tg.reg, "a.test", hostPort(a.Server))
	tg.apply(t)
	cl := newClient(t)
	eventually(t, "a.test", func() error {
		if code, _, err := get(cl, tg.addr, "a.test"); err != nil || code != 200 {
			return errors.New("not yet")
		}
		return nil
	})
	live, _ := os.ReadFile(tg.nginx.cfg.Path)
	tab, _ := tg.reg.Routes(ctx)
	tab.VHosts = append(tab.VHosts, VHost{Host: "b.test", Addr: "10.0.0.1", Port: 80})

	// Check mode: a diff, nothing written.
	cfg := tg.nginx.cfg
	cfg.Check = true
	ch, err := ApplyNginx(ctx, tab, cfg)
	if err != nil || !ch.Changed || !strings.Contains(ch.Diff, "+    server_name b.test;") {
		t.Fatalf("check mode: %+v %v", ch, err)
	}

	// Two default servers on one address (a hand-made table; the registry
	// holds one DefaultHost at most): nginx -t fails.
	cfg = tg.nginx.cfg
	bad := tab.clone()
	bad.VHosts = append(bad.VHosts,
		VHost{Host: DefaultHost, Addr: "10.0.0.1", Port: 80},
		VHost{Host: DefaultHost, Addr: "10.0.0.2", Port: 80})
	_, err = ApplyNginx(ctx, bad, cfg)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "nginx -t") || !strings.Contains(err.Error(), "duplicate default server") {
		t.Fatalf("bad config: %v", err)
	}
	if now, _ := os.ReadFile(tg.nginx.cfg.Path); string(now) != string(live) {
		t.Errorf("a rejected configuration replaced the live file")
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(cfg.Path), ".*.new")); len(leftovers) != 0 {
		t.Errorf("temp files left behind: %v", leftovers)
	}
	if code, _, err := get(cl, tg.addr, "a.test"); err != nil || code != 200 {
		t.Errorf("a.test after a rejected apply: %d %v", code, err)
	}

	// A file the main configuration never includes is refused.
	cfg = tg.nginx.cfg
	cfg.Path = filepath.Join(filepath.Dir(cfg.Path), "elsewhere.conf")
	if _, err := ApplyNginx(ctx, tab, cfg); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "is not included by") {
		t.Errorf("not included: %v", err)
	}
}
