package farm_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// TestKeptAddress: a bridged VM moving live keeps its address. One of
// another subnet is accepted as a kept address (with its own gateway,
// kept by a redefinition with the same address, dropped when it is of
// this farm's subnet again) unless another guest has it or its MAC, or
// its subnet overlaps the farm's; one of this farm's subnet needs it free.
func TestKeptAddress(t *testing.T) {
	fm := farm.New(t.TempDir(), farm.Options{})
	disk := filepath.Join(t.TempDir(), "x.img")
	os.WriteFile(disk, nil, 0o644)
	def := func(name, ip, gw, mac string) farm.Definition {
		return farm.Definition{Name: name, Driver: "ns", Net: "bridge", Disk: disk, DiskRO: true, MemBytes: 64 << 20, IP: ip, Gateway: gw, MAC: mac}
	}
	if why := fm.KeptAddressProblem("vm", "10.99.3.7/24", "02:74:66:00:00:07"); why != "" {
		t.Errorf("a free address of another subnet: %q", why)
	}
	if why := fm.KeptAddressProblem("vm", "10.77.0.9/24", "02:74:66:00:00:07"); why != "" {
		t.Errorf("a free address of the farm's subnet: %q", why)
	}
	if why := fm.KeptAddressProblem("vm", "10.77.0.9/16", "02:74:66:00:00:07"); why == "" {
		t.Error("a subnet overlapping the farm's: no problem")
	}
	res, err := fm.Define(def("vm", "10.99.3.7/24", "10.99.3.1", "02:74:66:00:00:07"), farm.ChangeOptions{})
	if err != nil || res.Def.Gateway != "10.99.3.1" {
		t.Fatalf("define with a kept address: %+v %v", res.Def, err)
	}
	if why := fm.KeptAddressProblem("other", "10.99.3.7/24", "02:74:66:00:00:08"); !strings.Contains(why, "guest vm's") {
		t.Errorf("an address another guest kept: %q", why)
	}
	if why := fm.KeptAddressProblem("other", "10.98.0.7/24", "02:74:66:00:00:07"); !strings.Contains(why, "MAC") {
		t.Errorf("a MAC another guest has: %q", why)
	}
	// Redefined with its address only (a playbook run again): the gateway stays.
	if res, err := fm.Define(def("vm", "10.99.3.7/24", "", ""), farm.ChangeOptions{}); err != nil || res.Def.Gateway != "10.99.3.1" {
		t.Errorf("redefined: %+v %v", res.Def, err)
	}
	for _, bad := range []farm.Definition{
		def("b1", "10.99.4.7/24", "10.99.5.1", ""), // gateway outside its subnet
		def("b2", "10.77.0.7/24", "10.77.0.9", ""), // the farm's subnet, another gateway
	} {
		if _, err := fm.Define(bad, farm.ChangeOptions{}); !errors.Is(err, farm.ErrInvalid) {
			t.Errorf("Define(%s %s gw %s) = %v, want invalid", bad.Name, bad.IP, bad.Gateway, err)
		}
	}
	// Back home: an address of the farm's subnet with the farm's gateway
	// is a native one.
	if res, err := fm.Define(def("home", "10.77.0.7/24", "10.77.0.1", ""), farm.ChangeOptions{}); err != nil || res.Def.Gateway != "" {
		t.Errorf("home again: %+v %v", res.Def, err)
	}
}
