package farm_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/golden"
)

// TestShareRendersConf: a share lands in the coLinux conf as cofsN= (a
// golden file) and in the qemu command line as a virtio-9p device.
func TestShareRendersConf(t *testing.T) {
	ctx := context.Background()
	fm := farm.New(t.TempDir(), farm.Options{Drivers: farm.DefaultDrivers()})
	host1, host2 := t.TempDir(), t.TempDir()
	kernel := filepath.Join(t.TempDir(), "vmlinux")
	os.WriteFile(kernel, append([]byte("\x7fELF"), make([]byte, 60)...), 0o644)
	for _, drv := range []string{"colinux", "qemu"} {
		disk := filepath.Join(t.TempDir(), "disk.img")
		os.WriteFile(disk, nil, 0o644)
		k := "/srv/tf/vmlinux"
		if drv == "qemu" {
			k = kernel
		}
		if _, err := fm.Define(farm.Definition{Name: "r-" + drv, Driver: drv, Disk: disk, Kernel: k,
			MemBytes: 64 << 20, Forwards: nil}, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
		g, _ := fm.Guest(ctx, "r-"+drv)
		for _, s := range []farm.ShareOptions{{HostPath: host1, GuestPath: "/mnt/src", ReadOnly: true}, {HostPath: host2, GuestPath: "/mnt/data"}} {
			if _, err := g.Share(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		conf, err := g.Conf(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conf = strings.NewReplacer(host1, "HOST1", host2, "HOST2").Replace(conf)
		switch drv {
		case "colinux":
			conf = regexp.MustCompile(`(?m)^.*(cobd|eth)[0-9]*=.*$\n?`).ReplaceAllString(conf, "")
			golden.Check(t, "share_colinux.golden", conf)
		case "qemu":
			for _, w := range []string{"-fsdev local,id=fs0,path=HOST1,security_model=mapped-xattr,readonly=on", "mount_tag=share0", "mount_tag=share1"} {
				if !strings.Contains(conf, w) {
					t.Errorf("qemu command line lacks %q:\n%s", w, conf)
				}
			}
		}
	}
}

// TestShareRefusesSystemDirs: a share over a directory the guest needs to
// boot is refused when defined (its path cleaned first), and the
// definition is unchanged; a share below one is fine.
func TestShareRefusesSystemDirs(t *testing.T) {
	ctx := context.Background()
	fm := farm.New(t.TempDir(), farm.Options{Drivers: farm.DefaultDrivers()})
	disk := filepath.Join(t.TempDir(), "disk.img")
	os.WriteFile(disk, nil, 0o644)
	if _, err := fm.Define(farm.Definition{Name: "sys", Driver: "ns", Disk: disk, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	g, _ := fm.Guest(ctx, "sys")
	host := t.TempDir()
	for _, p := range []string{"/etc", "/mnt/../etc", "/etc/", "//usr", "/bin", "/lib", "/sbin", "/dev", "/proc", "/sys", "/dev/shm", "/usr/bin"} {
		_, err := g.Share(ctx, farm.ShareOptions{HostPath: host, GuestPath: p})
		if !errors.Is(err, farm.ErrInvalid) {
			t.Errorf("share over %s: %v, want refused as invalid", p, err)
		}
	}
	if d, _ := fm.Get("sys"); len(d.Shares) != 0 {
		t.Errorf("refused shares defined: %+v", d.Shares)
	}
	if _, err := g.Share(ctx, farm.ShareOptions{HostPath: host, GuestPath: "/etc/myapp"}); err != nil {
		t.Errorf("share below /etc: %v", err)
	}
}
