package farmnet_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/procwait"
)

// TestDHCPFromHelperBinary: the farm DHCP server runs from the small
// tinyfarm-guest binary (built as make build does), listens, and ends
// when the last tap leaves.
func TestDHCPFromHelperBinary(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("taps and bridges need root")
	}
	bin := filepath.Join(t.TempDir(), "tinyfarm-guest")
	build := exec.Command("go", "build", "-o", bin, "github.com/tinyfarm/tinyfarm/cmd/tinyfarm-guest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build tinyfarm-guest: %v\n%s", err, out)
	}
	const bridge = "tftest6"
	ctx := context.Background()
	leases := filepath.Join(t.TempDir(), "guests")
	t.Cleanup(func() {
		if pid := farmnet.DHCPPID(leases, bridge); pid > 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		farmnet.DeleteLink(farmnet.TapName("hb1"))
		farmnet.DeleteBridge(bridge)
	})
	spec := farmnet.TapSpec{Guest: "hb1", Bridge: bridge, IP: "10.77.239.2/24", Gateway: "10.77.239.1", MAC: "02:74:66:00:ef:02", Leases: leases, Exe: bin}
	if _, err := farmnet.AttachTap(ctx, spec); err != nil {
		t.Fatal(err) // the server said "ready" (it listens) or this fails
	}
	pid := farmnet.DHCPPID(leases, bridge)
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); pid == 0 || exe != bin {
		t.Fatalf("dhcp server pid %d runs %q, want %s", pid, exe, bin)
	}
	if err := farmnet.DetachTap(ctx, "hb1", bridge, leases); err != nil {
		t.Fatal(err)
	}
	if farmnet.DHCPRunning(leases, bridge) || !procwait.Ended(pid, 5*time.Second) {
		t.Errorf("after detaching the last tap: dhcp server (pid %d) left", pid)
	}
}
