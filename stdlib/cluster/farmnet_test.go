package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// bridgedFarm is a farm in a temp state dir with one bridged guest
// defined (never started) when guest is not "".
func bridgedFarm(t *testing.T, guest string) *farm.Farm {
	t.Helper()
	home := t.TempDir()
	fm := farm.New(home, farm.Options{})
	t.Cleanup(func() { fm.Close() })
	if guest != "" {
		disk := filepath.Join(home, guest+".img")
		os.WriteFile(disk, make([]byte, 1<<20), 0o644)
		if _, err := fm.Define(farm.Definition{Name: guest, Driver: "ns", Net: "bridge", Disk: disk, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return fm
}

// TestGiveFarmSubnet: a host's farm gets its cluster subnet (its
// network.json, what colinux.network sets), or keeps the one its guests
// are on; a second farm whose guests are on the same subnet is refused,
// by GiveFarmSubnet and by Join before the host becomes a member, naming
// the guests and the fix.
func TestGiveFarmSubnet(t *testing.T) {
	a := hostConfig(t, "a", "127.0.0.1")
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, a, ServeOptions{})
	ctx, c := ctxT(t), connect(t, a)

	// The first server, full: its guests stay on the farm default.
	full := bridgedFarm(t, "web1")
	p, changed, err := GiveFarmSubnet(ctx, c, "a", full)
	if err != nil || p.String() != farm.DefaultSubnet || changed != true || full.Network().Subnet != farm.DefaultSubnet {
		t.Fatalf("a keeps its guests' subnet: %s changed=%v %v (farm on %s)", p, changed, err, full.Network().Subnet)
	}
	if _, changed, err := GiveFarmSubnet(ctx, c, "a", full); err != nil || changed {
		t.Fatalf("again: changed=%v %v", changed, err)
	}
	// An empty farm: the first subnet of the cluster range.
	empty := bridgedFarm(t, "")
	if p, _, err := GiveFarmSubnet(ctx, c, "b", empty); err != nil || p.String() != "10.80.0.0/24" || empty.Network().Subnet != "10.80.0.0/24" {
		t.Fatalf("b: %s %v (farm on %s)", p, err, empty.Network().Subnet)
	}
	// Guests on the subnet a has: refused, nothing changed.
	clash := bridgedFarm(t, "db1")
	_, _, err = GiveFarmSubnet(ctx, c, "x", clash)
	if !errors.Is(err, ErrTaken) || !strings.Contains(err.Error(), "host x: its farm's guests db1 are on tfbr0 10.77.0.0/24") ||
		!strings.Contains(err.Error(), "overlaps 10.77.0.0/24, a's farm subnet") || !strings.Contains(err.Error(), "destroy them first") {
		t.Fatalf("a clashing farm: %v", err)
	}

	// The same by join: refused before the host is a member, the token
	// still good.
	ca0, err := LoadCA(a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.NewToken(ctx, a.joinAddr(), ca0.Fingerprint(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	x := hostConfig(t, "x", "127.0.0.1")
	x.FarmSubnet = farm.DefaultSubnet
	if err := Join(ctx, x, tok); !errors.Is(err, ErrTaken) || !strings.Contains(err.Error(), "this host's farm subnet 10.77.0.0/24") {
		t.Fatalf("join with a clashing farm: %v", err)
	}
	ml, err := c.etcd.MemberList(ctx)
	if err != nil || len(ml.Members) != 1 {
		t.Fatalf("members after a refused join: %v %v", ml, err)
	}
	x.FarmSubnet = "10.77.9.0/24"
	if err := Join(ctx, x, tok); err != nil {
		t.Fatalf("join with the token again, another farm subnet: %v", err)
	}
	if p, err := c.HostSubnet(ctx, "x"); err != nil || p.String() != "10.77.9.0/24" {
		t.Fatalf("x's subnet: %s %v", p, err)
	}
}
