package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Facts are what a host publishes about itself; placement decides by them.
type Facts struct {
	// Name is the host's name in the cluster.
	Name string `json:"name"`
	// Mem is the host's memory (MemTotal), in bytes.
	Mem int64 `json:"mem"`
	// Committed is the memory promised to the host's guests, in bytes.
	Committed int64 `json:"committed"`
	// CPUs is the number of CPUs.
	CPUs int `json:"cpus"`
	// Drivers are the guest drivers that work on the host ("ns", "qemu").
	Drivers []string `json:"drivers"`
	// Version is the host's tinyfarm version.
	Version string `json:"version"`
	// SSHHostKey is the host's SSH host key (authorized_keys format), so a
	// controller pins it instead of trusting on first use.
	SSHHostKey string `json:"ssh_host_key,omitempty"`
	// SSHAddr is where the host's sshd serves controllers and the other
	// hosts ("10.0.0.2:22"). ClusterKey is the public key the host logs in
	// to the others with for migrations (its cluster SSH key, hostssh.go).
	SSHAddr    string `json:"ssh_addr,omitempty"`
	ClusterKey string `json:"cluster_key,omitempty"`
	// ProxyAddr is where the host's proxy serves the other hosts.
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// Binary and StateDir are the tinyfarm a controller runs there
	// (`tinyfarm machine`) and its TINYFARM_HOME. See HostRemote.
	Binary   string `json:"binary,omitempty"`
	StateDir string `json:"state_dir,omitempty"`
	// Updated is when the facts were last written.
	Updated time.Time `json:"updated"`
}

// HostState is a host's membership state.
type HostState string

const (
	HostUp   HostState = "up"   // its lease is alive
	HostDown HostState = "down" // it stopped renewing: past the lease TTL
)

// Host is one host of the cluster as the others see it.
type Host struct {
	Facts
	State HostState `json:"state"`
	// Draining is "draining" while `cluster drain` moves its guests away,
	// "drained" after (until `cluster undrain`): placement skips it.
	Draining string `json:"draining,omitempty"`
}

// Free is the memory a host has left for guests.
func (h Host) Free() int64 { return h.Mem - h.Committed }

// Presence is a host's lease, kept alive until Stop (or the process dies:
// then the lease expires after its TTL and the host is down).
type Presence struct {
	c      *Client
	lease  clientv3.LeaseID
	cancel context.CancelFunc
	done   chan struct{}
}

// Register publishes the host's facts and keeps its lease alive: the host
// is up until the lease runs out. Facts are kept (without a lease) so a
// down host is still listed, as down.
func (c *Client) Register(ctx context.Context, f Facts) (*Presence, error) {
	f.Name = c.host
	if f.Name == "" {
		return nil, fmt.Errorf("cluster register: no host name: %w", ErrInvalid)
	}
	f.Updated = time.Now().UTC()
	b, _ := json.Marshal(f)
	var lease clientv3.LeaseID
	err := c.call(ctx, "cluster register "+f.Name, func(ctx context.Context) error {
		g, err := c.etcd.Grant(ctx, c.ttl)
		if err != nil {
			return err
		}
		lease = g.ID
		_, err = c.etcd.Txn(ctx).Then(
			clientv3.OpPut(Prefix+"hosts/"+f.Name, string(b)),
			clientv3.OpPut(Prefix+"alive/"+f.Name, time.Now().UTC().Format(time.RFC3339), clientv3.WithLease(lease)),
		).Commit()
		return err
	})
	if err != nil {
		return nil, err
	}
	kctx, cancel := context.WithCancel(context.Background())
	p := &Presence{c: c, lease: lease, cancel: cancel, done: make(chan struct{})}
	ka, err := c.etcd.KeepAlive(kctx, lease)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cluster register %s: keep alive: %w", f.Name, err)
	}
	go func() {
		defer close(p.done)
		for range ka { // drain: the client renews at a third of the TTL
		}
	}()
	return p, nil
}

// Lost is closed when the lease can no longer be kept alive (it expired
// while etcd was unreachable, or Stop was called): register again.
func (p *Presence) Lost() <-chan struct{} { return p.done }

// UpdateFacts rewrites the host's facts (committed memory changes).
func (p *Presence) UpdateFacts(ctx context.Context, f Facts) error {
	f.Name = p.c.host
	f.Updated = time.Now().UTC()
	b, _ := json.Marshal(f)
	return p.c.call(ctx, "cluster facts "+f.Name, func(ctx context.Context) error {
		_, err := p.c.etcd.Put(ctx, Prefix+"hosts/"+f.Name, string(b))
		return err
	})
}

// Stop ends the keep-alive and revokes the lease: the host is down at once.
func (p *Presence) Stop(ctx context.Context) error {
	p.cancel()
	<-p.done
	return p.c.call(ctx, "cluster revoke lease", func(ctx context.Context) error {
		_, err := p.c.etcd.Revoke(ctx, p.lease)
		return err
	})
}

// Hosts lists every host that ever registered, up or down, by name.
// Serializable reads answer from the local member, so a host that lost
// quorum can still show what it last knew.
func (c *Client) Hosts(ctx context.Context, opts ...clientv3.OpOption) ([]Host, error) {
	var hosts []Host
	err := c.call(ctx, "cluster hosts", func(ctx context.Context) error {
		r, err := c.etcd.Txn(ctx).Then(
			clientv3.OpGet(Prefix+"hosts/", append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...),
			clientv3.OpGet(Prefix+"alive/", append([]clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithKeysOnly()}, opts...)...),
			clientv3.OpGet(Prefix+"drain/", append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...),
		).Commit()
		if err != nil {
			return err
		}
		alive := map[string]bool{}
		for _, kv := range r.Responses[1].GetResponseRange().Kvs {
			alive[strings.TrimPrefix(string(kv.Key), Prefix+"alive/")] = true
		}
		draining := map[string]string{}
		for _, kv := range r.Responses[2].GetResponseRange().Kvs {
			var req struct{ State string }
			json.Unmarshal(kv.Value, &req)
			draining[strings.TrimPrefix(string(kv.Key), Prefix+"drain/")] = map[bool]string{true: "drained", false: "draining"}[req.State == DrainDone]
		}
		hosts = hosts[:0]
		for _, kv := range r.Responses[0].GetResponseRange().Kvs {
			var h Host
			if err := json.Unmarshal(kv.Value, &h.Facts); err != nil {
				return fmt.Errorf("host %s: %w", kv.Key, err)
			}
			h.State, h.Draining = HostDown, draining[h.Name]
			if alive[h.Name] {
				h.State = HostUp
			}
			hosts = append(hosts, h)
		}
		return nil
	})
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Name < hosts[j].Name })
	return hosts, err
}

// Forget removes a host's facts (after `cluster leave`).
func (c *Client) Forget(ctx context.Context, host string) error {
	return c.call(ctx, "cluster forget "+host, func(ctx context.Context) error {
		_, err := c.etcd.Txn(ctx).Then(
			clientv3.OpDelete(Prefix+"hosts/"+host),
			clientv3.OpDelete(Prefix+"alive/"+host),
		).Commit()
		return err
	})
}
