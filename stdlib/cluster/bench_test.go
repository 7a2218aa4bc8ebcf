package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"testing"
	"time"
)

// threeHosts forms a cluster of three in-process hosts on loopback, each
// with its proxy, for the benchmarks.
func threeHosts(b *testing.B) ([]*Config, *Client) {
	var cfgs []*Config
	for i, name := range []string{"a", "b", "c"} {
		cfg := hostConfig(b, name, "127.0.0.1")
		cfg.ProxyAddr = "127.0.0.1:" + strconv.Itoa(freePort(b, "127.0.0.1"))
		if i == 0 {
			if err := Init(cfg, InitOptions{}); err != nil {
				b.Fatal(err)
			}
		} else {
			ca0, _ := LoadCA(cfgs[0].Dir)
			tok, err := connect(b, cfgs[0]).NewToken(ctxT(b), cfgs[0].joinAddr(), ca0.Fingerprint(), time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if err := Join(ctxT(b), cfg, tok); err != nil {
				b.Fatal(err)
			}
		}
		serve(b, cfg, ServeOptions{ProxyListen: cfg.ProxyAddr})
		cfgs = append(cfgs, cfg)
	}
	return cfgs, connect(b, cfgs[0])
}

// BenchmarkRoutePropagation: a vhost added to etcd until every host's
// proxy serves it (the slowest of the three), p50 and p99.
//
//	go test -run '^$' -bench RoutePropagation -benchtime 200x ./stdlib/cluster
func BenchmarkRoutePropagation(b *testing.B) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	b.Cleanup(site.Close)
	cfgs, c := threeHosts(b)
	ctx := ctxT(b)
	measurePropagation(ctx, b, c, cfgs, site.Listener.Addr().String())
}

// BenchmarkClaim: one guest claim (name, IP, uid range in one etcd
// transaction) on a three-member cluster.
func BenchmarkClaim(b *testing.B) {
	_, c := threeHosts(b)
	ctx := ctxT(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.ClaimGuest(ctx, GuestSpec{Name: fmt.Sprintf("g%d", i), Host: "b", Mem: 1 << 20}); err != nil {
			b.Fatal(err)
		}
	}
}

// measurePropagation adds b.N vhosts routed to addr and reports how long
// each took until every proxy of cfgs served it (p50, p99).
func measurePropagation(ctx context.Context, b *testing.B, c *Client, cfgs []*Config, addr string) {
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		vh := fmt.Sprintf("v%d.bench.test", i)
		start := time.Now()
		if err := c.SetRoute(ctx, Route{VHost: vh, Host: "a", Addr: addr}); err != nil {
			b.Fatal(err)
		}
		for _, cfg := range cfgs {
			for {
				if code, _, err := get(cfg.ProxyAddr, vh); err == nil && code == 200 {
					break
				}
				if time.Since(start) > 10*time.Second {
					b.Fatalf("%s not served by %s after 10s", vh, cfg.Host)
				}
				time.Sleep(time.Millisecond)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
