package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// benchTable writes a registry of n vhosts v0..vn-1.bench.test in dir.
func benchTable(tb testing.TB, dir string, n int) {
	tb.Helper()
	var t Table
	for i := 0; i < n; i++ {
		t.VHosts = append(t.VHosts, VHost{Host: fmt.Sprintf("v%d.bench.test", i), To: "127.0.0.1:9", Addr: "127.0.0.1", Port: 9})
	}
	t.sort()
	data, _ := json.Marshal(t)
	if err := os.WriteFile(filepath.Join(dir, RoutesFile), data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkRouteChange10k re-points one vhost of a 10,000-vhost registry
// and waits until a Server watching it serves the new backend: the whole
// path of a route change (registry write, notification, table swap).
func BenchmarkRouteChange10k(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	benchTable(b, dir, 10000)
	reg := NewRegistry(dir, nil)
	s, err := NewServer(Options{RoutesFile: reg.Path()})
	if err != nil {
		b.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ln := mustListen(b)
		s.Serve(sctx, ln)
	}()
	targets := []string{"127.0.0.1:10", "127.0.0.1:11"}
	var api time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		to := targets[i%2]
		t0 := time.Now()
		if _, err := reg.VHost(ctx, VHostSpec{Host: "v1.bench.test", To: to, Replace: true}, ChangeOptions{}); err != nil {
			b.Fatal(err)
		}
		api += time.Since(t0)
		for {
			if be := s.routes.Load().lookup("v1.bench.test"); be != nil && be.addr == to {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(api.Microseconds())/float64(b.N)/1000, "api-ms/op")
	cancel()
	<-done
}

func mustListen(tb testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}
