//go:build linux

package cluster_test

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
)

// TestInitJoinFarmSubnet: `tinyfarm cluster init` and `join` give each
// host's farm its cluster subnet (network.json, what colinux.network
// sets): an init whose range overlaps an address of the host is undone,
// naming --range; a farm with a guest keeps its subnet; a joining farm
// whose guest is on another host's subnet is refused before it becomes a
// member, naming the guest and the fix.
func TestInitJoinFarmSubnet(t *testing.T) {
	f := newFarm(t, 3)
	h1, h2, h3 := f.hosts[0], f.hosts[1], f.hosts[2]
	// h1 has an address in the default cluster range, 10.80.0.0/16.
	if out, err := exec.Command("ip", "-n", h1.ns, "addr", "add", "10.80.0.9/24", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	_, errs, err := f.tf(h1, append([]string{"cluster", "init"}, f.hostFlags(h1)...)...)
	if err == nil || !strings.Contains(errs, "overlaps 10.80.0.9/24 on lo") || !strings.Contains(errs, "cluster init --range") {
		t.Fatalf("init over an address of the host: %v\n%s", err, errs)
	}
	if _, err := os.Stat(cluster.Dir(h1.home)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused init left %s: %v", cluster.Dir(h1.home), err)
	}
	out := f.mustTF(h1, append([]string{"cluster", "init", "--range", "10.81.0.0/16"}, f.hostFlags(h1)...)...)
	if !strings.Contains(out, "farm network: tfbr0 10.81.0.0/24, this host's cluster subnet") || farmSubnet(t, h1) != "10.81.0.0/24" {
		t.Fatalf("init:\n%s", out)
	}

	// h3's farm has a guest on the farm default: it keeps that subnet.
	// h2's has one there too: refused, since h3 has it now.
	define := f.playbook("define.lua", `require("colinux").guest{ name = vars.name, driver = "ns", disk = vars.disk }`)
	for _, h := range []*netHost{h3, h2} {
		disk := filepath.Join(h.home, "db.img")
		os.WriteFile(disk, make([]byte, 1<<20), 0o644)
		f.mustTF(h, "run", define, "-e", "name=db-"+h.name, "-e", "disk="+disk)
	}
	out = f.mustTF(h3, append([]string{"cluster", "join", strings.TrimSpace(f.mustTF(h1, "cluster", "token"))}, f.hostFlags(h3)...)...)
	if !strings.Contains(out, "farm network: tfbr0 10.77.0.0/24") || farmSubnet(t, h3) != "10.77.0.0/24" {
		t.Fatalf("join of a farm with a guest:\n%s", out)
	}
	out, errs, err = f.tf(h2, append([]string{"cluster", "join", strings.TrimSpace(f.mustTF(h1, "cluster", "token"))}, f.hostFlags(h2)...)...)
	if err == nil || !strings.Contains(errs, "host h2: its farm's guests db-h2 are on tfbr0 10.77.0.0/24") ||
		!strings.Contains(errs, "overlaps 10.77.0.0/24, h3's farm subnet") || !strings.Contains(errs, "destroy them first") {
		t.Fatalf("join of a farm whose guest is on h3's subnet: %v\n%s%s", err, out, errs)
	}
	for _, h := range f.status(h1).Hosts {
		if h.Name == "h2" {
			t.Errorf("the refused h2 is listed: %+v", h)
		}
	}
}

// farmSubnet is the subnet in h's network.json.
func farmSubnet(t *testing.T, h *netHost) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.home, "network.json"))
	if err != nil {
		t.Fatal(err)
	}
	var n struct{ Subnet string }
	json.Unmarshal(b, &n)
	return n.Subnet
}
