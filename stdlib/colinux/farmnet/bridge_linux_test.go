package farmnet_test

import (
	"bytes"
	"net"
	"os"
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
	const bridge, port = "tftest7", "tftest7p"
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
