package farmnet_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/procwait"
)

func TestMain(m *testing.M) {
	farmnet.Main() // the test binary doubles as the DHCP server
	os.Exit(m.Run())
}

// TestTapLifecycle: AttachTap makes the bridge, the tap on it and starts
// the DHCP server once (a second guest shares it); DetachTap of the last
// tap leaves neither tap nor server.
func TestTapLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("taps and bridges need root")
	}
	const bridge = "tftest8"
	ctx := context.Background()
	leases := filepath.Join(t.TempDir(), "guests")
	t.Cleanup(func() {
		if pid := farmnet.DHCPPID(leases, bridge); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		farmnet.DeleteLink(farmnet.TapName("lc1"))
		farmnet.DeleteLink(farmnet.TapName("lc2"))
		farmnet.DeleteBridge(bridge)
	})
	spec := farmnet.TapSpec{Guest: "lc1", Bridge: bridge, IP: "10.77.248.2/24", Gateway: "10.77.248.1", MAC: "02:74:66:00:f8:02", Leases: leases}
	if _, err := farmnet.AttachTap(ctx, spec); err != nil {
		t.Fatal(err)
	}
	pid := farmnet.DHCPPID(leases, bridge)
	if !farmnet.LinkExists(farmnet.TapName("lc1")) || pid == 0 {
		t.Fatalf("after attach: tap %v, dhcp pid %d", farmnet.LinkExists(farmnet.TapName("lc1")), pid)
	}
	spec.Guest, spec.IP, spec.MAC = "lc2", "10.77.248.3/24", "02:74:66:00:f8:03"
	if _, err := farmnet.AttachTap(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if p := farmnet.DHCPPID(leases, bridge); p != pid {
		t.Errorf("second guest: dhcp pid %d, want the running %d", p, pid)
	}
	if err := farmnet.DetachTap(ctx, "lc1", bridge, leases); err != nil {
		t.Fatal(err)
	}
	if farmnet.LinkExists(farmnet.TapName("lc1")) || !farmnet.DHCPRunning(leases, bridge) {
		t.Errorf("after detaching lc1: its tap is left, or the server of lc2 is gone")
	}
	if err := farmnet.DetachTap(ctx, "lc2", bridge, leases); err != nil {
		t.Fatal(err)
	}
	if farmnet.LinkExists(farmnet.TapName("lc2")) || farmnet.DHCPRunning(leases, bridge) || !procwait.Ended(pid, 5*time.Second) {
		t.Errorf("after detaching the last tap: tap or dhcp server (pid %d) left", pid)
	}
}
