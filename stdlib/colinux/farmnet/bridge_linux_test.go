package farmnet_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

// TestBridgeMACStaysPut: a port with a lower MAC joining the farm bridge
// does not change the bridge's address (which guests have resolved as
// their gateway's).
func TestBridgeMACStaysPut(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bridges need root")
	}
	const bridge, port = "tfmac0", "tfmac0p"
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(port); err == nil {
			netlink.LinkDel(l)
		}
		farmnet.DeleteBridge(bridge)
	})
	br, err := farmnet.EnsureBridge(bridge, "10.77.215.1/24")
	if err != nil {
		t.Fatal(err)
	}
	before := br.Attrs().HardwareAddr
	low := net.HardwareAddr{0x02, 0, 0, 0, 0, 1} // lower than any address the bridge got
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, HardwareAddr: low, MasterIndex: br.Attrs().Index}, PeerName: port + "x"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	if bytes.Compare(low, before) >= 0 {
		t.Fatalf("test setup: port MAC %s is not below the bridge's %s", low, before)
	}
	after, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after.Attrs().HardwareAddr, before) {
		t.Errorf("bridge MAC changed from %s to %s when a port joined", before, after.Attrs().HardwareAddr)
	}
	// EnsureBridge again (a later tinyfarm) keeps it too.
	again, err := farmnet.EnsureBridge(bridge, "10.77.215.1/24")
	if err != nil || !bytes.Equal(again.Attrs().HardwareAddr, before) {
		t.Errorf("EnsureBridge again: %v, MAC %s, want %s", err, again.Attrs().HardwareAddr, before)
	}
}

// TestBridgeBelongsToOneFarm: a bridge with another farm's guests on it is
// refused to a second farm, naming the first; once its ports are gone
// (or the first farm's directory is), the second farm takes it over.
func TestBridgeBelongsToOneFarm(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("bridges need root")
	}
	const bridge, port = "tfown0", "tfown0p"
	farmA, farmB := t.TempDir(), t.TempDir()
	delPort := func() {
		if l, err := netlink.LinkByName(port); err == nil {
			netlink.LinkDel(l)
		}
	}
	t.Cleanup(func() { delPort(); farmnet.DeleteBridge(bridge) })
	br, err := farmnet.EnsureFarmBridge(bridge, "10.77.216.1/24", farmA)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index}, PeerName: port + "x"}); err != nil {
		t.Fatal(err)
	}
	if _, err := farmnet.EnsureFarmBridge(bridge, "10.77.216.1/24", farmA); err != nil {
		t.Errorf("the same farm again: %v", err)
	}
	_, err = farmnet.EnsureFarmBridge(bridge, "10.77.216.1/24", farmB)
	if err == nil || !strings.Contains(err.Error(), filepath.Dir(farmA)) || !strings.Contains(err.Error(), "colinux.network") {
		t.Errorf("a second farm on a bridge with the first one's guests: %v", err)
	}
	if o := farmnet.BridgeOwner(bridge); o != farmA {
		t.Errorf("owner after a refused claim: %q, want %q", o, farmA)
	}
	delPort()
	if _, err := farmnet.EnsureFarmBridge(bridge, "10.77.216.1/24", farmB); err != nil || farmnet.BridgeOwner(bridge) != farmB {
		t.Errorf("taking over a bridge without ports: %v, owner %q", err, farmnet.BridgeOwner(bridge))
	}
}
