package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// Route is a vhost of the cluster: every host's proxy serves it, the
// owning host to the guest, the others to the owning host's proxy.
type Route struct {
	// VHost is the host name ("web1.example.com").
	VHost string `json:"vhost"`
	// Host is the cluster host the guest runs on.
	Host string `json:"host"`
	// Guest is the guest's name (informational).
	Guest string `json:"guest,omitempty"`
	// Addr is "ip:port" of the guest's site as its own host reaches it.
	Addr string `json:"addr"`
}

// SetRoute publishes a route (replacing the vhost's previous one).
func (c *Client) SetRoute(ctx context.Context, r Route) error {
	r.VHost = strings.ToLower(r.VHost)
	if r.VHost == "" || r.Host == "" {
		return fmt.Errorf("cluster route: want a vhost and the host its guest runs on: %w", ErrInvalid)
	}
	if _, _, err := net.SplitHostPort(r.Addr); err != nil {
		return fmt.Errorf("cluster route %s: addr %q: want ip:port: %w", r.VHost, r.Addr, ErrInvalid)
	}
	b, _ := json.Marshal(r)
	return c.call(ctx, "cluster route "+r.VHost, func(ctx context.Context) error {
		_, err := c.etcd.Put(ctx, Prefix+"routes/"+r.VHost, string(b))
		return err
	})
}

// RemoveRoute deletes a vhost's route.
func (c *Client) RemoveRoute(ctx context.Context, vhost string) error {
	return c.call(ctx, "cluster route remove "+vhost, func(ctx context.Context) error {
		_, err := c.etcd.Delete(ctx, Prefix+"routes/"+strings.ToLower(vhost))
		return err
	})
}

// Routes lists the cluster's routes by vhost.
func (c *Client) Routes(ctx context.Context) ([]Route, error) {
	var out []Route
	err := c.call(ctx, "cluster routes", func(ctx context.Context) error {
		r, err := c.etcd.Get(ctx, Prefix+"routes/", clientv3.WithPrefix())
		if err != nil {
			return err
		}
		for _, kv := range r.Kvs {
			var rt Route
			if err := json.Unmarshal(kv.Value, &rt); err != nil {
				return fmt.Errorf("route %s: %w", kv.Key, err)
			}
			out = append(out, rt)
		}
		return nil
	})
	return out, err
}

// RouteUpdate is a change of the cluster's routes. Full: Routes is the
// whole set (the first update, and after the watch had to list again);
// otherwise Routes were added or changed and Removed (vhosts) deleted.
type RouteUpdate struct {
	Full    bool
	Routes  []Route
	Removed []string
}

// WatchRoutes calls fn with the whole set of routes now, then with each
// change, until ctx ends. fn runs on one goroutine, never concurrently.
// Changes come as they are, not as a new whole set: with 10,000 routes
// copying the set on every change cost more than applying it.
func (c *Client) WatchRoutes(ctx context.Context, fn func(RouteUpdate)) error {
	for ctx.Err() == nil {
		var rev int64
		var all []Route
		err := c.call(ctx, "cluster routes", func(ctx context.Context) error {
			r, err := c.etcd.Get(ctx, Prefix+"routes/", clientv3.WithPrefix())
			if err != nil {
				return err
			}
			all = all[:0]
			for _, kv := range r.Kvs {
				var rt Route
				if json.Unmarshal(kv.Value, &rt) == nil {
					all = append(all, rt)
				}
			}
			rev = r.Header.Revision
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			continue // keep the last table; try again (the call waited its timeout)
		}
		fn(RouteUpdate{Full: true, Routes: all})
		wch := c.etcd.Watch(clientv3.WithRequireLeader(ctx), Prefix+"routes/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for wr := range wch {
			if wr.Err() != nil {
				break // compacted or leader lost: list again
			}
			var u RouteUpdate
			for _, ev := range wr.Events {
				vh := strings.TrimPrefix(string(ev.Kv.Key), Prefix+"routes/")
				var rt Route
				if ev.Type == clientv3.EventTypeDelete || json.Unmarshal(ev.Kv.Value, &rt) != nil {
					u.Removed = append(u.Removed, vh)
				} else {
					u.Routes = append(u.Routes, rt)
				}
			}
			fn(u)
		}
	}
	return nil
}

// ProxyTable turns the cluster's routes into host's proxy table: vhosts
// whose guest runs on host go to the guest, the others to the owning
// host's proxy (proxies keep the Host header, so the owner routes them by
// name). Routes of hosts with no proxy address are left out. local wins
// over the cluster for a vhost both have.
func ProxyTable(host string, routes []Route, proxyAddr map[string]string, local proxy.Table) proxy.Table {
	t := proxy.Table{VHosts: append([]proxy.VHost(nil), local.VHosts...), Forwards: local.Forwards}
	have := map[string]bool{}
	for _, v := range local.VHosts {
		have[v.Host] = true
	}
	for _, r := range routes {
		if have[r.VHost] {
			continue
		}
		if v, ok := proxyVHost(host, r, proxyAddr); ok {
			t.VHosts = append(t.VHosts, v)
		}
	}
	// routes sorted by vhost and no local routes: sorted already, checked
	// in one pass.
	byHost := func(a, b proxy.VHost) int { return strings.Compare(a.Host, b.Host) }
	if !slices.IsSortedFunc(t.VHosts, byHost) {
		slices.SortFunc(t.VHosts, byHost)
	}
	return t
}

// proxyVHost is r as host's proxy serves it: to the guest when it runs on
// host, else to the owning host's proxy; ok is false when that host has
// no proxy address or r's address is not ip:port.
func proxyVHost(host string, r Route, proxyAddr map[string]string) (proxy.VHost, bool) {
	target := r.Addr
	if r.Host != host {
		if target = proxyAddr[r.Host]; target == "" {
			return proxy.VHost{}, false
		}
	}
	h, p, err := net.SplitHostPort(target)
	port, _ := strconv.Atoi(p)
	if err != nil || port <= 0 {
		return proxy.VHost{}, false
	}
	return proxy.VHost{Host: r.VHost, To: target, Addr: h, Port: port}, true
}
