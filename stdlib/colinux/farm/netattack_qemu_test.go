//go:build linux

package farm_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
)

// TestNetAttacksFromQemuGuestOnBridge runs the network attack suite
// (guesttest.NetAttackSuite) from a qemu guest (TCG) with net = "bridge":
// its root always has raw sockets (its own kernel), so every forged frame
// leaves the guest and must die at its tap's filter. The victim is an ns
// guest on the same bridge.
func TestNetAttacksFromQemuGuestOnBridge(t *testing.T) {
	guesttest.NeedVM(t)
	const bridge = "tfsec2"
	ctx := context.Background()
	state := t.TempDir()
	t.Cleanup(func() {
		guesttest.KillDHCP(state, bridge) // the server this test started
		farmnet.DeleteBridge(bridge)
	})
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers(), Bridge: bridge, Subnet: "10.77.242.0/24"})
	disk := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state,
		Bootlocal: "mkdir -p /opt/www; echo VICTIM-PAGE > /opt/www/index.html; httpd -p 80 -h /opt/www"})
	res, err := fm.Define(farm.Definition{Name: "secvictim", Driver: "ns", Net: "bridge", Disk: disk.Path,
		HostKey: disk.HostKey, User: "root", MemBytes: 64 << 20}, farm.ChangeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	victim, err := fm.Guest(ctx, "secvictim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Destroy(context.Background(), false) })
	if _, err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := victim.WaitReady(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	victimIP, _, _ := strings.Cut(res.Def.IP, "/")
	suite := guesttest.NewNetAttackSuite(t, bridge, fm.Gateway(), victimIP, res.Def.MAC)

	g, boot := guesttest.QemuGuest(t, fm, state, farm.Definition{Name: "secvm", Net: "bridge", MemBytes: 192 << 20})
	t.Logf("qemu attacker on the bridge: boot -> SSH-ready in %v", boot)
	ip, _, _ := strings.Cut(g.Def.IP, "/")
	suite.Run(t, guesttest.Attacker{Tag: " (qemu)", IP: ip, MAC: g.Def.MAC, Raw: true,
		Exec: func(cmd string, stdin io.Reader) (string, int, error) {
			r, err := g.Exec(ctx, []string{"sh", "-c", cmd}, driver.ExecOptions{Stdin: stdin})
			return string(r.Stdout) + string(r.Stderr), r.Code, err
		}})
	suite.Log(t)
}
