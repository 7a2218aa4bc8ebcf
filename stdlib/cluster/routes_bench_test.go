package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkRoutePropagation10k is BenchmarkRoutePropagation with 10,000
// routes in the cluster already: a route added until every host's proxy
// serves it, p50 and p99.
//
//	go test -run '^$' -bench RoutePropagation10k -benchtime 100x ./stdlib/cluster
func BenchmarkRoutePropagation10k(b *testing.B) {
	site := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	b.Cleanup(site.Close)
	cfgs, c := threeHosts(b)
	ctx := ctxT(b)
	const n = 10000
	for i := 0; i < n; {
		var ops []clientv3.Op
		for ; len(ops) < 100 && i < n; i++ { // etcd takes at most 128 a transaction
			r := Route{VHost: fmt.Sprintf("pre%d.bench.test", i), Host: "b", Addr: site.Listener.Addr().String()}
			v, _ := json.Marshal(r)
			ops = append(ops, clientv3.OpPut(Prefix+"routes/"+r.VHost, string(v)))
		}
		if _, err := c.etcd.Txn(ctx).Then(ops...).Commit(); err != nil {
			b.Fatal(err)
		}
	}
	last := fmt.Sprintf("pre%d.bench.test", n-1)
	for _, cfg := range cfgs {
		deadline := time.Now().Add(60 * time.Second)
		for {
			if code, _, err := get(cfg.ProxyAddr, last); err == nil && code == 200 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s not served by %s after 60s", last, cfg.Host)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	measurePropagation(ctx, b, c, cfgs, site.Listener.Addr().String())
}
