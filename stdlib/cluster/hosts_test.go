package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestHostDownAfterTTL: a host whose keep-alive stops (its client gone
// without revoking, as when its process dies) is down after the lease TTL,
// its guests unreachable; its facts stay listed.
func TestHostDownAfterTTL(t *testing.T) {
	a := hostConfig(t, "a", "127.0.0.1")
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{})
	ctx := ctxT(t)
	c := connect(t, a)

	zc := *a
	zc.Host = "z"
	z, err := Connect(ctx, &zc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := z.Register(ctx, Facts{Mem: 2 << 30, Committed: 1 << 30, CPUs: 2, Drivers: []string{"ns", "qemu"}, Version: "v9", SSHHostKey: "ssh-ed25519 AAAAtest"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ClaimGuest(ctx, GuestSpec{Name: "zweb", Host: "z"}); err != nil {
		t.Fatal(err)
	}
	hosts, err := c.Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[1].Name != "z" || hosts[1].State != HostUp {
		t.Fatalf("hosts %+v %v", hosts, err)
	}
	zf := hosts[1]
	if zf.Mem != 2<<30 || zf.Committed != 1<<30 || zf.CPUs != 2 || strings.Join(zf.Drivers, ",") != "ns,qemu" || zf.Version != "v9" || zf.SSHHostKey != "ssh-ed25519 AAAAtest" {
		t.Fatalf("z's facts %+v", zf)
	}
	start := time.Now()
	z.Close() // no revoke: the lease runs out
	for {
		hosts, err := c.Hosts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if hosts[1].State == HostDown {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("z still %s 10s after it stopped renewing a %ds lease", hosts[1].State, fastTiming.LeaseTTL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("z down %.1fs after it stopped renewing (lease TTL %ds)", time.Since(start).Seconds(), fastTiming.LeaseTTL)
	gs, err := c.Guests(ctx)
	if err != nil || len(gs) != 1 || gs[0].State != "unreachable" {
		t.Fatalf("z's guest: %+v %v", gs, err)
	}
	// Placement skips it and says why.
	_, err = c.Place(ctx, PlaceSpec{Mem: 4 << 30})
	if !errors.Is(err, ErrNoRoom) || !strings.Contains(err.Error(), "z is down") {
		t.Fatalf("place with z down: %v", err)
	}
}

func TestChoose(t *testing.T) {
	up := func(name string, mem, committed int64, drivers ...string) Host {
		return Host{Facts: Facts{Name: name, Mem: mem << 20, Committed: committed << 20, Drivers: drivers}, State: HostUp}
	}
	hosts := []Host{
		up("a", 1024, 800, "ns"),
		up("b", 1024, 200, "ns", "qemu"),
		up("c", 2048, 1500, "ns"),
		{Facts: Facts{Name: "d", Mem: 8 << 30, Drivers: []string{"ns"}}, State: HostDown},
	}
	claims := []GuestRecord{{Name: "x", Host: "b", Mem: 300 << 20}}
	cases := []struct {
		spec PlaceSpec
		want string
		err  string
	}{
		{PlaceSpec{Mem: 128 << 20}, "b", ""},                   // spread: b has 724 free (claims count), c 548, a 224
		{PlaceSpec{Mem: 128 << 20, Strategy: "pack"}, "a", ""}, // the fullest that fits
		{PlaceSpec{Mem: 300 << 20, Strategy: "pack"}, "c", ""}, // a does not fit
		{PlaceSpec{Mem: 128 << 20, Driver: "qemu"}, "b", ""},   // only b has qemu
		{PlaceSpec{Mem: 800 << 20, Driver: "qemu"}, "", "no host has 800 MiB free with driver qemu: a has no qemu driver (it has ns); b has 724 MiB free of 1024 MiB; c has no qemu driver (it has ns); d is down"},
		{PlaceSpec{Mem: 128 << 20, Strategy: "random"}, "", `strategy "random"`},
		{PlaceSpec{}, "", "mem 0"},
	}
	for _, tc := range cases {
		h, err := Choose(hosts, claims, tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: %v, want error with %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || h.Name != tc.want {
			t.Errorf("%+v: %s %v, want %s", tc.spec, h.Name, err, tc.want)
		}
	}
}
