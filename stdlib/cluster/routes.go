package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
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
	emit := func() {
		out := make([]Route, 0, len(routes))
		for _, r := range routes {
			out = append(out, r)
		}
		sort.Slice(out, func(i, j int) bool { return out[i].VHost < out[j].VHost })
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
			for _, kv := range r.Kvs {
				var rt Route
				if json.Unmarshal(kv.Value, &rt) == nil {
					routes[rt.VHost] = rt
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
		emit()
		wch := c.etcd.Watch(clientv3.WithRequireLeader(ctx), Prefix+"routes/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for wr := range wch {
			if wr.Err() != nil {
				break // compacted or leader lost: list again
			}
			for _, ev := range wr.Events {
				vh := strings.TrimPrefix(string(ev.Kv.Key), Prefix+"routes/")
				if ev.Type == clientv3.EventTypeDelete {
					delete(routes, vh)
					continue
				}
				var rt Route
				if json.Unmarshal(ev.Kv.Value, &rt) == nil {
					routes[vh] = rt
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
	sort.Slice(t.VHosts, func(i, j int) bool { return t.VHosts[i].Host < t.VHosts[j].Host })
	return t
}
