package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// GuestRecord is a guest's cluster-wide claim: its name, the host it lives
// on, and what was allocated to it. One etcd transaction creates it.
type GuestRecord struct {
	Name string `json:"name"`
	Host string `json:"host"`
	// IP is the guest's address in its host's farm subnet ("10.80.3.2/24").
	IP string `json:"ip"`
	// Gateway is the host's bridge address in that subnet.
	Gateway string `json:"gateway"`
	// UIDSlot numbers the guest's user-namespace uid range; UIDBase is
	// its first host uid (65536 uids).
	UIDSlot int `json:"uid_slot"`
	UIDBase int `json:"uid_base"`
	// Mem is the memory the guest was placed with, in bytes (0: unknown).
	Mem    int64  `json:"mem,omitempty"`
	Driver string `json:"driver,omitempty"`
	// State is filled in by Guests: "ok" while its host is up,
	// "unreachable" while it is down.
	State string `json:"state,omitempty"`
}

// uid ranges as the ns driver numbers them (stdlib/colinux/ns/userns_linux.go).
const (
	uidRange     = 65536
	uidFirstSlot = 64
)

// GuestSpec asks for a guest's claim.
type GuestSpec struct {
	Name   string
	Host   string // required: where it runs (Place picks one)
	Mem    int64
	Driver string
}

// maxRetries bounds the optimistic retries of an allocation that lost a
// race: each retry means another controller won a transaction.
const maxRetries = 64

// HostSubnet returns the farm subnet of host, allocating the first free
// one of the cluster range in one transaction if it has none yet.
func (c *Client) HostSubnet(ctx context.Context, host string) (netip.Prefix, error) {
	return c.hostSubnet(ctx, host, netip.Prefix{}, true)
}

// ClaimHostSubnet gives host the subnet want, the one its farm already
// has guests on (so they keep their addresses), unless another host's
// subnet overlaps it (ErrTaken, naming that host). want may lie outside
// the cluster range: the range is where new subnets come from, what
// matters is that no two hosts' bridges overlap. A host that has another
// subnet already keeps it (ErrTaken).
func (c *Client) ClaimHostSubnet(ctx context.Context, host string, want netip.Prefix) (netip.Prefix, error) {
	return c.hostSubnet(ctx, host, want.Masked(), true)
}

// hostSubnet is HostSubnet, or ClaimHostSubnet with want; without commit
// it only says which subnet the host has or would get now (check mode).
func (c *Client) hostSubnet(ctx context.Context, host string, want netip.Prefix, commit bool) (netip.Prefix, error) {
	op := "cluster subnet for " + host
	set, err := c.Settings(ctx)
	if err != nil {
		return netip.Prefix{}, err
	}
	rng, err := set.validate()
	if err != nil {
		return netip.Prefix{}, err
	}
	for try := 0; try < maxRetries; try++ {
		var got netip.Prefix
		var won bool
		err := c.call(ctx, op, func(ctx context.Context) error {
			r, err := c.etcd.Txn(ctx).Then(
				clientv3.OpGet(Prefix+"hostnet/"+host),
				clientv3.OpGet(Prefix+"subnets/", clientv3.WithPrefix()),
			).Commit()
			if err != nil {
				return err
			}
			if kvs := r.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				got, err = netip.ParsePrefix(string(kvs[0].Value))
				if err == nil && want.IsValid() && got != want {
					return fmt.Errorf("host %s has the cluster subnet %s, not %s: %w", host, got, want, ErrTaken)
				}
				won = true
				return err
			}
			// Subnets may differ in size (a claimed farm subnet), so a free
			// one overlaps none, not merely differs from each.
			used := map[netip.Prefix]string{}
			for _, kv := range r.Responses[1].GetResponseRange().Kvs {
				if p, err := netip.ParsePrefix(strings.TrimPrefix(string(kv.Key), Prefix+"subnets/")); err == nil {
					used[p] = string(kv.Value)
				}
			}
			overlap := func(p netip.Prefix) string {
				for u, owner := range used {
					if u.Overlaps(p) {
						return u.String() + ", " + owner + "'s"
					}
				}
				return ""
			}
			free := netip.Prefix{}
			if want.IsValid() {
				if o := overlap(want); o != "" {
					return fmt.Errorf("%s overlaps %s farm subnet: %w", want, o, ErrTaken)
				}
				free = want
			} else {
				n := 1 << (set.SubnetBits - rng.Bits())
				for i := 0; i < n && !free.IsValid(); i++ {
					if p := nthSubnet(rng, set.SubnetBits, i); overlap(p) == "" {
						free = p
					}
				}
				if !free.IsValid() {
					return fmt.Errorf("all %d subnets of the cluster range %s are taken (one per host): %w", n, rng, ErrNoRoom)
				}
			}
			if !commit {
				got, won = free, true
				return nil
			}
			// Nothing under subnets/ changed since the read: no overlapping
			// claim slipped in between.
			t, err := c.etcd.Txn(ctx).If(absent(Prefix+"hostnet/"+host),
				clientv3.Compare(clientv3.ModRevision(Prefix+"subnets/").WithPrefix(), "<", r.Header.Revision+1)).Then(
				clientv3.OpPut(Prefix+"hostnet/"+host, free.String()),
				clientv3.OpPut(Prefix+"subnets/"+free.String(), host),
			).Commit()
			if err != nil {
				return err
			}
			got, won = free, t.Succeeded
			return nil
		})
		if err != nil {
			return netip.Prefix{}, err
		}
		if won {
			return got, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%s: lost %d races in a row; try again", op, maxRetries)
}

func nthSubnet(rng netip.Prefix, bits, i int) netip.Prefix {
	a := rng.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(i) << (32 - bits)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), bits)
}

// ClaimGuest claims a guest name cluster-wide on spec.Host, with an IP in
// the host's farm subnet and a uid range, all in one transaction: two
// controllers racing never get the same name, IP or uid range. Claiming a
// name again for the same host returns the existing claim (a playbook run
// twice); for another host it fails with ErrTaken naming the owner.
func (c *Client) ClaimGuest(ctx context.Context, spec GuestSpec) (GuestRecord, error) {
	return c.claimGuest(ctx, spec, true)
}

// PreviewClaim returns the claim ClaimGuest would make now (or the
// existing one), changing nothing: what check mode shows.
func (c *Client) PreviewClaim(ctx context.Context, spec GuestSpec) (GuestRecord, error) {
	return c.claimGuest(ctx, spec, false)
}

func (c *Client) claimGuest(ctx context.Context, spec GuestSpec, commit bool) (GuestRecord, error) {
	op := "cluster claim guest " + spec.Name
	if !validName(spec.Name) || spec.Name == "" {
		return GuestRecord{}, fmt.Errorf("%s: want letters, digits, '-', '_' or '.': %w", op, ErrInvalid)
	}
	if spec.Host == "" {
		return GuestRecord{}, fmt.Errorf("%s: no host: place it first (cluster.place): %w", op, ErrInvalid)
	}
	set, err := c.Settings(ctx)
	if err != nil {
		return GuestRecord{}, err
	}
	subnet, err := c.hostSubnet(ctx, spec.Host, netip.Prefix{}, commit)
	if err != nil {
		return GuestRecord{}, err
	}
	gkey := Prefix + "guests/" + spec.Name
	for try := 0; try < maxRetries; try++ {
		var rec GuestRecord
		var won bool
		err := c.call(ctx, op, func(ctx context.Context) error {
			r, err := c.etcd.Txn(ctx).Then(
				clientv3.OpGet(gkey),
				clientv3.OpGet(Prefix+"ips/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
				clientv3.OpGet(Prefix+"uids/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
				clientv3.OpGet(Prefix+"hosts/"+spec.Host),
				clientv3.OpGet(Prefix+"hostmem/"+spec.Host),
			).Commit()
			if err != nil {
				return err
			}
			if kvs := r.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
				if err := json.Unmarshal(kvs[0].Value, &rec); err != nil {
					return err
				}
				if rec.Host != spec.Host {
					return fmt.Errorf("guest %s already runs on host %s: pick another name, or destroy it there first: %w", spec.Name, rec.Host, ErrTaken)
				}
				won = true
				return nil
			}
			usedIP := map[string]bool{}
			for _, kv := range r.Responses[1].GetResponseRange().Kvs {
				usedIP[strings.TrimPrefix(string(kv.Key), Prefix+"ips/")] = true
			}
			usedUID := map[string]bool{}
			for _, kv := range r.Responses[2].GetResponseRange().Kvs {
				usedUID[strings.TrimPrefix(string(kv.Key), Prefix+"uids/")] = true
			}
			gw := subnet.Addr().Next()
			ip := netip.Addr{}
			for a := gw.Next(); subnet.Contains(a) && subnet.Contains(a.Next()); a = a.Next() { // not the broadcast
				if !usedIP[a.String()] {
					ip = a
					break
				}
			}
			if !ip.IsValid() {
				return fmt.Errorf("host %s: every address of its farm subnet %s is taken: %w", spec.Host, subnet, ErrNoRoom)
			}
			slot := -1
			for s := 0; s < set.UIDSlots; s++ {
				if !usedUID[strconv.Itoa(s)] {
					slot = s
					break
				}
			}
			if slot < 0 {
				return fmt.Errorf("all %d uid ranges of the cluster are taken: %w", set.UIDSlots, ErrNoRoom)
			}
			// The host's claimed memory is one counter, changed only by a
			// transaction that saw its last value: two controllers placing
			// on the same host at once cannot both take its last room.
			memKey := Prefix + "hostmem/" + spec.Host
			claimed, memGuard := int64(0), absent(memKey)
			if kvs := r.Responses[4].GetResponseRange().Kvs; len(kvs) > 0 {
				claimed, _ = strconv.ParseInt(string(kvs[0].Value), 10, 64)
				memGuard = clientv3.Compare(clientv3.ModRevision(memKey), "=", kvs[0].ModRevision)
			}
			if kvs := r.Responses[3].GetResponseRange().Kvs; len(kvs) > 0 && spec.Mem > 0 {
				var f Facts
				if json.Unmarshal(kvs[0].Value, &f) == nil && f.Mem > 0 {
					if used := max(f.Committed, claimed+spec.Mem); used > f.Mem {
						return fmt.Errorf("host %s has %s free of %s (%s claimed, %s committed), %s asked: %w",
							spec.Host, mib(f.Mem-max(f.Committed, claimed)), mib(f.Mem), mib(claimed), mib(f.Committed), mib(spec.Mem), ErrNoRoom)
					}
				}
			}
			rec = GuestRecord{
				Name: spec.Name, Host: spec.Host, Mem: spec.Mem, Driver: spec.Driver,
				IP: netip.PrefixFrom(ip, subnet.Bits()).String(), Gateway: gw.String(),
				UIDSlot: slot, UIDBase: uidRange * (uidFirstSlot + slot),
			}
			if !commit {
				won = true
				return nil
			}
			b, _ := json.Marshal(rec)
			t, err := c.etcd.Txn(ctx).If(
				absent(gkey), absent(Prefix+"ips/"+ip.String()), absent(Prefix+"uids/"+strconv.Itoa(slot)),
				// The host still owns the subnet (no leave in between).
				clientv3.Compare(clientv3.Value(Prefix+"subnets/"+subnet.String()), "=", spec.Host),
				memGuard,
			).Then(
				clientv3.OpPut(gkey, string(b)),
				clientv3.OpPut(Prefix+"ips/"+ip.String(), spec.Name),
				clientv3.OpPut(Prefix+"uids/"+strconv.Itoa(slot), spec.Name),
				clientv3.OpPut(memKey, strconv.FormatInt(claimed+spec.Mem, 10)),
			).Commit()
			if err != nil {
				return err
			}
			won = t.Succeeded
			return nil
		})
		if err != nil {
			return GuestRecord{}, err
		}
		if won {
			return rec, nil
		}
	}
	return GuestRecord{}, fmt.Errorf("%s: lost %d races in a row; try again", op, maxRetries)
}

// ReleaseGuest drops a guest's claim and frees its IP, uid range and
// memory, and removes the routes to it. An unknown name is no error.
func (c *Client) ReleaseGuest(ctx context.Context, name string) error {
	op := "cluster release guest " + name
	return c.call(ctx, op, func(ctx context.Context) error {
		r, err := c.etcd.Get(ctx, Prefix+"guests/"+name)
		if err != nil {
			return err
		}
		if len(r.Kvs) == 0 {
			return nil
		}
		var rec GuestRecord
		if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil {
			return err
		}
		ip, _, _ := strings.Cut(rec.IP, "/")
		memKey := Prefix + "hostmem/" + rec.Host
		for try := 0; try < maxRetries; try++ {
			m, err := c.etcd.Get(ctx, memKey)
			if err != nil {
				return err
			}
			cmps := []clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(Prefix+"guests/"+name), "=", r.Kvs[0].ModRevision)}
			ops := []clientv3.Op{
				clientv3.OpDelete(Prefix + "guests/" + name),
				clientv3.OpDelete(Prefix + "ips/" + ip),
				clientv3.OpDelete(Prefix + "uids/" + strconv.Itoa(rec.UIDSlot)),
			}
			routes, err := c.etcd.Get(ctx, Prefix+"routes/", clientv3.WithPrefix())
			if err != nil {
				return err
			}
			for _, kv := range routes.Kvs {
				var rt Route
				if json.Unmarshal(kv.Value, &rt) == nil && rt.Guest == name && rt.Host == rec.Host {
					ops = append(ops, clientv3.OpDelete(string(kv.Key)))
				}
			}
			if len(m.Kvs) > 0 {
				claimed, _ := strconv.ParseInt(string(m.Kvs[0].Value), 10, 64)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(memKey), "=", m.Kvs[0].ModRevision))
				ops = append(ops, clientv3.OpPut(memKey, strconv.FormatInt(max(claimed-rec.Mem, 0), 10)))
			}
			t, err := c.etcd.Txn(ctx).If(cmps...).Then(ops...).Commit()
			if err != nil || t.Succeeded {
				return err
			}
			if g, err := c.etcd.Get(ctx, Prefix+"guests/"+name); err != nil || len(g.Kvs) == 0 || g.Kvs[0].ModRevision != r.Kvs[0].ModRevision {
				return errors.New("the claim changed meanwhile; try again")
			}
		}
		return fmt.Errorf("lost %d races in a row; try again", maxRetries)
	})
}

// Guests lists every claimed guest by name, "unreachable" while its host
// is down.
func (c *Client) Guests(ctx context.Context, opts ...clientv3.OpOption) ([]GuestRecord, error) {
	hosts, err := c.Hosts(ctx, opts...)
	if err != nil {
		return nil, err
	}
	up := map[string]bool{}
	for _, h := range hosts {
		up[h.Name] = h.State == HostUp
	}
	var out []GuestRecord
	err = c.call(ctx, "cluster guests", func(ctx context.Context) error {
		r, err := c.etcd.Get(ctx, Prefix+"guests/", append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, kv := range r.Kvs {
			var g GuestRecord
			if err := json.Unmarshal(kv.Value, &g); err != nil {
				return fmt.Errorf("guest %s: %w", kv.Key, err)
			}
			g.State = "ok"
			if !up[g.Host] {
				g.State = "unreachable"
			}
			out = append(out, g)
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}
