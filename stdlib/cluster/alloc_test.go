package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// raceClaims runs controllers racing for the same guest names on two hosts
// (each controller its own etcd client), rounds times, and checks that no
// name, IP or uid range is ever handed out twice.
func raceClaims(t *testing.T, cfg *Config, controllers, guests, rounds int) {
	t.Helper()
	ctx := ctxT(t)
	clients := make([]*Client, controllers)
	for i := range clients {
		clients[i] = connect(t, cfg)
	}
	hosts := []string{"h1", "h2"}
	for round := 0; round < rounds; round++ {
		type result struct {
			rec GuestRecord
			err error
		}
		results := make([][]result, controllers)
		var wg sync.WaitGroup
		for ci, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for g := 0; g < guests; g++ {
					// Controller ci asks for the names in its own order,
					// on its own host: the same name on another host is
					// a conflict, on the same host the same claim.
					name := fmt.Sprintf("r%d-g%d", round, (g+ci*3)%guests)
					rec, err := c.ClaimGuest(ctx, GuestSpec{Name: name, Host: hosts[ci%2], Mem: 1 << 20})
					results[ci] = append(results[ci], result{rec, err})
				}
			}()
		}
		wg.Wait()
		won := map[string]GuestRecord{}
		for ci := range results {
			for _, r := range results[ci] {
				if r.err != nil {
					if !errors.Is(r.err, ErrTaken) {
						t.Fatalf("round %d controller %d: %v", round, ci, r.err)
					}
					continue
				}
				if prev, ok := won[r.rec.Name]; ok && prev != r.rec {
					t.Fatalf("round %d: %s claimed twice: %+v and %+v", round, r.rec.Name, prev, r.rec)
				}
				won[r.rec.Name] = r.rec
			}
		}
		if len(won) != guests {
			t.Fatalf("round %d: %d names claimed, want %d", round, len(won), guests)
		}
	}
	all, err := clients[0].Guests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != guests*rounds {
		t.Fatalf("%d claims stored, want %d", len(all), guests*rounds)
	}
	ips, uids := map[string]string{}, map[int]string{}
	for _, g := range all {
		if o, ok := ips[g.IP]; ok {
			t.Fatalf("IP %s given to %s and %s", g.IP, o, g.Name)
		}
		if o, ok := uids[g.UIDSlot]; ok {
			t.Fatalf("uid range %d given to %s and %s", g.UIDSlot, o, g.Name)
		}
		ips[g.IP], uids[g.UIDSlot] = g.Name, g.Name
	}
	s1, _ := clients[0].HostSubnet(ctx, "h1")
	s2, _ := clients[1].HostSubnet(ctx, "h2")
	if s1.Overlaps(s2) {
		t.Fatalf("hosts' subnets overlap: %s %s", s1, s2)
	}
	t.Logf("%d rounds of %d controllers x %d guests: %d claims, all distinct", rounds, controllers, guests, len(all))
}

// TestRacingControllers: controllers racing for names, IPs and uid ranges
// on a real embedded etcd never get duplicates.
func TestRacingControllers(t *testing.T) {
	a := hostConfig(t, "a", "127.0.0.1")
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{})
	raceClaims(t, a, 4, 12, 10)
}

// TestRacingSubnets: many hosts asking for their subnets at once each get
// their own, and asking again returns the same.
func TestRacingSubnets(t *testing.T) {
	a := hostConfig(t, "a", "127.0.0.1")
	if err := Init(a, InitOptions{Settings: Settings{Range: "10.90.0.0/20", SubnetBits: 24, UIDSlots: 100}}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{})
	ctx := ctxT(t)
	var mu sync.Mutex
	got := map[netip.Prefix]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := 0; i < 20; i++ {
		c := connect(t, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := fmt.Sprintf("h%d", i)
			p, err := c.HostSubnet(ctx, host)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if o, ok := got[p]; ok {
				errs <- fmt.Errorf("subnet %s given to %s and %s", p, o, host)
			}
			got[p] = host
		}()
	}
	wg.Wait()
	close(errs)
	var full int
	for err := range errs {
		if errors.Is(err, ErrNoRoom) && strings.Contains(err.Error(), "all 16 subnets of the cluster range 10.90.0.0/20 are taken") {
			full++
			continue
		}
		t.Fatal(err)
	}
	if len(got) != 16 || full != 4 {
		t.Fatalf("%d subnets handed out, %d hosts refused; want 16 and 4", len(got), full)
	}
	c := connect(t, a)
	for p, h := range got {
		again, err := c.HostSubnet(ctx, h)
		if err != nil || again != p {
			t.Fatalf("%s asked again: %s %v, want %s", h, again, err, p)
		}
	}
}

// TestClaimHostSubnet: a host keeps the subnet its farm's guests are on,
// even outside the cluster range, unless it overlaps another host's;
// allocation skips subnets a larger claimed one covers.
func TestClaimHostSubnet(t *testing.T) {
	a := hostConfig(t, "a", "127.0.0.1")
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{})
	ctx, c := ctxT(t), connect(t, a)
	old := netip.MustParsePrefix("10.77.0.0/24")
	if p, err := c.ClaimHostSubnet(ctx, "h1", old); err != nil || p != old {
		t.Fatalf("h1 claims its farm's %s: %s %v", old, p, err)
	}
	if p, err := c.ClaimHostSubnet(ctx, "h1", old); err != nil || p != old {
		t.Fatalf("h1 claims it again: %s %v", p, err)
	}
	if p, err := c.HostSubnet(ctx, "h1"); err != nil || p != old {
		t.Fatalf("h1's subnet: %s %v", p, err)
	}
	if _, err := c.ClaimHostSubnet(ctx, "h2", netip.MustParsePrefix("10.77.0.128/25")); !errors.Is(err, ErrTaken) || !strings.Contains(err.Error(), "overlaps 10.77.0.0/24, h1's farm subnet") {
		t.Fatalf("h2 claims a part of h1's: %v", err)
	}
	if _, err := c.ClaimHostSubnet(ctx, "h3", netip.MustParsePrefix("10.80.0.0/23")); err != nil {
		t.Fatal(err)
	}
	if p, err := c.HostSubnet(ctx, "h2"); err != nil || p.String() != "10.80.2.0/24" {
		t.Fatalf("h2 allocated %s %v, want 10.80.2.0/24 (h3's /23 covers the first two)", p, err)
	}
	if _, err := c.ClaimHostSubnet(ctx, "h2", netip.MustParsePrefix("10.99.0.0/24")); !errors.Is(err, ErrTaken) || !strings.Contains(err.Error(), "host h2 has the cluster subnet 10.80.2.0/24, not 10.99.0.0/24") {
		t.Fatalf("h2 claims another: %v", err)
	}
}

// TestClaimErrors: a name taken on another host names the owner; claiming
// again on the same host returns the same claim; release frees IP and uid.
func TestClaimErrors(t *testing.T) {
	a := hostConfig(t, "a", "127.0.0.1")
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{})
	c := connect(t, a)
	ctx := ctxT(t)
	g1, err := c.ClaimGuest(ctx, GuestSpec{Name: "web1", Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := c.ClaimGuest(ctx, GuestSpec{Name: "web1", Host: "h1"})
	if err != nil || again != g1 {
		t.Fatalf("claim again on the same host: %+v %v", again, err)
	}
	_, err = c.ClaimGuest(ctx, GuestSpec{Name: "web1", Host: "h2"})
	if !errors.Is(err, ErrTaken) || !strings.Contains(err.Error(), "guest web1 already runs on host h1") {
		t.Fatalf("claim on another host: %v", err)
	}
	if _, err := c.ClaimGuest(ctx, GuestSpec{Name: "bad name", Host: "h1"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad name: %v", err)
	}
	if err := c.SetRoute(ctx, Route{VHost: "web1.test", Host: "h1", Guest: "web1", Addr: "10.80.0.2:80"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetRoute(ctx, Route{VHost: "other.test", Host: "h1", Guest: "other", Addr: "10.80.0.9:80"}); err != nil {
		t.Fatal(err)
	}
	if err := c.ReleaseGuest(ctx, "web1"); err != nil {
		t.Fatal(err)
	}
	if rs, err := c.Routes(ctx); err != nil || len(rs) != 1 || rs[0].VHost != "other.test" {
		t.Fatalf("routes after releasing web1: %+v %v, want only other.test", rs, err)
	}
	g2, err := c.ClaimGuest(ctx, GuestSpec{Name: "web2", Host: "h1"})
	if err != nil || g2.IP != g1.IP || g2.UIDSlot != g1.UIDSlot {
		t.Fatalf("after release, web2 got %+v (%v), want web1's IP %s and uid slot %d again", g2, err, g1.IP, g1.UIDSlot)
	}
}

// TestRacingMemory: controllers racing to claim guests on one host never
// promise it more memory than it has; a release makes room again.
func TestRacingMemory(t *testing.T) {
	a := hostConfig(t, "a", "127.0.0.1")
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{Facts: func(context.Context) Facts { return Facts{Mem: 1 << 30, Committed: 256 << 20, Drivers: []string{"ns"}} }})
	ctx := ctxT(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, full := 0, 0
	for ci := 0; ci < 4; ci++ {
		c := connect(t, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for g := 0; g < 4; g++ {
				_, err := c.ClaimGuest(ctx, GuestSpec{Name: fmt.Sprintf("m%d-%d", ci, g), Host: "a", Mem: 128 << 20})
				mu.Lock()
				switch {
				case err == nil:
					won++
				case errors.Is(err, ErrNoRoom) && strings.Contains(err.Error(), "host a has 0 MiB free of 1024 MiB (1024 MiB claimed"):
					full++
				default:
					t.Error(err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if won != 8 || full != 8 {
		t.Fatalf("%d claims of 128 MiB on a 1 GiB host, %d refused; want 8 and 8", won, full)
	}
	c := connect(t, a)
	gs, _ := c.Guests(ctx)
	if err := c.ReleaseGuest(ctx, gs[0].Name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ClaimGuest(ctx, GuestSpec{Name: "after", Host: "a", Mem: 128 << 20}); err != nil {
		t.Fatalf("claim after a release: %v", err)
	}
}
