//go:build linux

package farm_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
)

// TestFarmNetwork: a state dir keeps its farm's bridge and subnet; every
// Farm opened on it uses them; bad values, a change under defined guests
// and a subnet the host already uses are refused, changing nothing.
func TestFarmNetwork(t *testing.T) {
	state := t.TempDir()
	fm := farm.New(state, farm.Options{})
	if n := fm.Network(); n.Bridge != farm.DefaultBridge || n.Subnet != farm.DefaultSubnet {
		t.Fatalf("fresh farm network %+v", n)
	}
	for _, bad := range []farm.Network{
		{Bridge: "a-bridge-name-too-long", Subnet: "10.77.9.0/24"},
		{Bridge: "tf0", Subnet: "10.77.9.1/24"},    // host bits
		{Bridge: "tf0", Subnet: "10.77.9.0/30"},    // too small
		{Bridge: "tf0", Subnet: "8.8.8.0/24"},      // not private
		{Bridge: "tf0", Subnet: "fd00::/64"},       // not IPv4
		{Bridge: "0tf", Subnet: "10.77.9.0/24"},    // not an interface name
		{Bridge: "tf0;rm", Subnet: "10.77.9.0/24"}, // nor this
	} {
		if _, err := fm.SetNetwork(bad, farm.ChangeOptions{}); !errors.Is(err, farm.ErrInvalid) {
			t.Errorf("SetNetwork(%+v): %v, want invalid", bad, err)
		}
	}
	if _, err := fm.SetNetwork(farm.Network{Bridge: "tf0", Subnet: "fd00:77::/64"}, farm.ChangeOptions{}); err == nil || !strings.Contains(err.Error(), "IPv6 farm networks are not supported") {
		t.Errorf("an IPv6 prefix: %v, want a clear refusal", err)
	}
	want := farm.Network{Bridge: "tfnet9", Subnet: "10.77.209.0/24"}
	res, err := fm.SetNetwork(want, farm.ChangeOptions{Check: true})
	if err != nil || !res.Changed || !strings.Contains(res.Diff, "10.77.209.0/24") {
		t.Fatalf("dry run: %+v %v", res, err)
	}
	if _, err := os.Stat(filepath.Join(state, "network.json")); !errors.Is(err, os.ErrNotExist) || fm.Network() == want {
		t.Fatalf("a dry run changed the farm: %v %+v", err, fm.Network())
	}
	if res, err = fm.SetNetwork(want, farm.ChangeOptions{}); err != nil || !res.Changed {
		t.Fatalf("set: %+v %v", res, err)
	}
	if res, err = fm.SetNetwork(want, farm.ChangeOptions{}); err != nil || res.Changed {
		t.Errorf("set again: %+v %v, want unchanged", res, err)
	}
	// Another process opening the state dir gets the same network, and
	// guests get addresses from it.
	other := farm.New(state, farm.Options{})
	if other.Network() != want || other.Gateway() != "10.77.209.1" {
		t.Fatalf("reopened: %+v gateway %s", other.Network(), other.Gateway())
	}
	os.WriteFile(filepath.Join(state, "none.img"), nil, 0o644)
	d, err := other.Define(farm.Definition{Name: "web1", Driver: "ns", Disk: filepath.Join(state, "none.img"), MemBytes: 64 << 20}, farm.ChangeOptions{})
	if err != nil || d.Def.IP != "10.77.209.2/24" {
		t.Fatalf("define: %+v %v", d.Def, err)
	}
	if _, err := other.SetNetwork(farm.Network{Bridge: "tfnet9", Subnet: "10.77.210.0/24"}, farm.ChangeOptions{}); !errors.Is(err, farm.ErrExists) || !strings.Contains(err.Error(), "web1") {
		t.Errorf("change under a defined guest: %v", err)
	}
	if farm.New(state, farm.Options{}).Network() != want {
		t.Error("a refused change was saved")
	}
	// A broken network.json stops definitions with a clear error.
	os.WriteFile(filepath.Join(state, "network.json"), []byte(`{"bridge": "tfnet9", "subnet": "nonsense"}`), 0o644)
	if _, err := farm.New(state, farm.Options{}).Define(farm.Definition{Name: "web2", Driver: "ns", Disk: "/x.img"}, farm.ChangeOptions{}); err == nil || !strings.Contains(err.Error(), "network.json") {
		t.Errorf("define with a broken network.json: %v", err)
	}
}

// TestFarmNetworkOverlap: a subnet that an interface of the host has
// already (here a bridge this test makes) is refused, but for the farm's
// own bridge.
func TestFarmNetworkOverlap(t *testing.T) {
	guesttest.NeedRoot(t)
	const br = "tfnettest0"
	if _, err := farmnet.EnsureBridge(br, "10.77.214.1/24"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { farmnet.DeleteBridge(br) })
	fm := farm.New(t.TempDir(), farm.Options{})
	_, err := fm.SetNetwork(farm.Network{Bridge: "tfnet8", Subnet: "10.77.214.0/24"}, farm.ChangeOptions{})
	if !errors.Is(err, farm.ErrExists) || !strings.Contains(err.Error(), br) {
		t.Errorf("subnet of another bridge: %v", err)
	}
	if _, err := fm.SetNetwork(farm.Network{Bridge: "tfnet8", Subnet: "10.77.0.0/16"}, farm.ChangeOptions{}); !errors.Is(err, farm.ErrExists) {
		t.Errorf("subnet containing another bridge's: %v", err)
	}
	if _, err := fm.SetNetwork(farm.Network{Bridge: br, Subnet: "10.77.214.0/24"}, farm.ChangeOptions{}); err != nil {
		t.Errorf("the farm's own bridge: %v", err)
	}
}
