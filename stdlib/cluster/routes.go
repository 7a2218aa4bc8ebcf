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

// WatchRoutes calls fn with the whole set of routes now and after every
// change, until ctx ends. fn runs on one goroutine, never concurrently.
func (c *Client) WatchRoutes(ctx context.Context, fn func([]Route)) error {
	routes := map[string]Route{}
	// The vhosts in order, kept sorted as routes come and go: sorting
	// 10,000 of them on every change took longer than the rest of it.
	var keys []string
	put := func(vh string, rt Route) {
		if _, ok := routes[vh]; !ok {
			i, _ := slices.BinarySearch(keys, vh)
			keys = slices.Insert(keys, i, vh)
		}
		routes[vh] = rt
	}
	emit := func() {
		out := make([]Route, 0, len(keys))
		for _, k := range keys {
			out = append(out, routes[k])
		}
		fn(out)
	}
	for ctx.Err() == nil {
		var rev int64
		err := c.call(ctx, "cluster routes", func(ctx context.Context) error {
			r, err := c.etcd.Get(ctx, Prefix+"routes/", clientv3.WithPrefix())
			if err != nil {
				return err
			}
			clear(routes)
			keys = keys[:0]
			for _, kv := range r.Kvs {
				var rt Route
				if json.Unmarshal(kv.Value, &rt) == nil {
					routes[rt.VHost] = rt
				}
			}
			for k := range routes {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			rev = r.Header.Revision
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			continue // keep the last table; try again (the call waited its timeout)
		}
		emit()
		wch := c.etcd.Watch(clientv3.WithRequireLeader(ctx), Prefix+"routes/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for wr := range wch {
			if wr.Err() != nil {
				break // compacted or leader lost: list again
			}
			for _, ev := range wr.Events {
				vh := strings.TrimPrefix(string(ev.Kv.Key), Prefix+"routes/")
				if ev.Type == clientv3.EventTypeDelete {
					if _, ok := routes[vh]; ok {
						delete(routes, vh)
						i, _ := slices.BinarySearch(keys, vh)
						keys = slices.Delete(keys, i, i+1)
					}
					continue
				}
				var rt Route
				if json.Unmarshal(ev.Kv.Value, &rt) == nil {
					put(vh, rt)
				}
			}
			emit()
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
		target := r.Addr
		if r.Host != host {
			if target = proxyAddr[r.Host]; target == "" {
				continue
			}
		}
		h, p, err := net.SplitHostPort(target)
		port, _ := strconv.Atoi(p)
		if err != nil || port <= 0 {
			continue
		}
		t.VHosts = append(t.VHosts, proxy.VHost{Host: r.VHost, To: target, Addr: h, Port: port})
	}
	// routes come sorted (WatchRoutes): without local routes the table is
	// sorted already, checked in one pass.
	byHost := func(a, b proxy.VHost) int { return strings.Compare(a.Host, b.Host) }
	if !slices.IsSortedFunc(t.VHosts, byHost) {
		slices.SortFunc(t.VHosts, byHost)
	}
	return t
}
