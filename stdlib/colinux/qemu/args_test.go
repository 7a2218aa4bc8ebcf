package qemu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/golden"
)

// oneArgPerLine makes golden files diff well: a flag and its value per line.
func oneArgPerLine(argv []string) string {
	var b strings.Builder
	b.WriteString(argv[0])
	for _, a := range argv[1:] {
		if strings.HasPrefix(a, "-") {
			b.WriteString("\n" + a)
		} else {
			b.WriteString(" " + shellQuote(a))
		}
	}
	return b.String() + "\n"
}

func frugalSpec() driver.Spec {
	return driver.Spec{
		Name:      "web1",
		Dir:       "/var/lib/tinyfarm/guests/web1",
		MemBytes:  128 << 20,
		CPUs:      1,
		Kernel:    "/srv/tc/vmlinux",
		Initrds:   []string{"/srv/tc/core.gz", "/srv/tc/modules.gz"},
		Bootcodes: "host=web1 tce=vda nozswap",
		Layout:    driver.Frugal,
		Disks:     []driver.Disk{{Path: "/var/lib/tinyfarm/disks/web1.img"}},
		Net: driver.Net{Mode: "user", MAC: "52:54:00:12:34:56", Forwards: []driver.Forward{
			{HostPort: 2201, GuestPort: 22},
			{Proto: "udp", HostAddr: "127.0.0.1", HostPort: 5353, GuestPort: 53},
		}},
	}
}

func TestArgsGolden(t *testing.T) {
	cases := []struct {
		name string
		spec func() driver.Spec
		opts Options
	}{
		// The fast path: PVH vmlinux on microvm, two initrds concatenated.
		{"microvm_frugal", frugalSpec, Options{KernelELF: true, TSCKHz: 2999998}},
		// A bzImage falls back to pc with PCI virtio devices.
		{"pc_scatter_bzimage", func() driver.Spec {
			s := frugalSpec()
			s.Kernel, s.Initrds = "/srv/tc/vmlinuz", []string{"/srv/tc/modules.gz"}
			s.Layout, s.Bootcodes = driver.Scatter, "host=web1 nozswap nortc"
			s.MemBytes, s.CPUs = 200<<20+1, 1.5 // 201 MiB, 2 vCPUs
			s.Disks = append(s.Disks, driver.Disk{Path: "/srv/data,with,commas.img", ReadOnly: true})
			s.Net = driver.Net{}
			s.Shares = []driver.Share{{Tag: "src", HostPath: "/home/me/src", ReadOnly: true}}
			return s
		}, Options{Binary: "/opt/qemu/bin/qemu-system-x86_64"}},
		// Explicit machine and accelerator, restore from a saved state.
		{"kvm_pc_incoming", func() driver.Spec { // no tsc_early_khz on pc
			s := frugalSpec()
			s.Accel, s.Machine = "kvm", "pc"
			s.Initrds = nil
			s.Net.Mode = "none"
			return s
		}, Options{KernelELF: true, TSCKHz: 2999998, Incoming: "/var/lib/tinyfarm/ckpt/web1 state.bin"}},
		// A tap on the farm bridge (root): the guest's address comes by DHCP.
		{"microvm_bridge_tap", func() driver.Spec {
			s := frugalSpec()
			s.Net = driver.Net{Mode: "bridge", IP: "10.77.0.5/24", Gateway: "10.77.0.1", Bridge: "tfbr0", MAC: "02:74:66:aa:bb:cc"}
			return s
		}, Options{KernelELF: true, TSCKHz: 2999998}},
		{"pc_bridge_tap", func() driver.Spec {
			s := frugalSpec()
			s.Initrds = nil
			s.Net = driver.Net{Mode: "bridge", IP: "10.77.0.6/24", Gateway: "10.77.0.1", Bridge: "tfbr0"}
			return s
		}, Options{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			argv, err := Args(c.spec(), c.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, c.name+".golden", oneArgPerLine(argv))
		})
	}
}

func TestArgsDefaults(t *testing.T) {
	s := driver.Spec{Name: "a", Dir: "/d", Kernel: "/k"}
	argv, err := Args(s, Options{})
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(argv, " ")
	for _, want := range []string{
		"qemu-system-x86_64 ", "-accel tcg ", "-M pc ", "-m 128 ", "-smp 1 ",
		"-append console=ttyS0 quiet panic=-1 -netdev", // no root= for an unset layout
		"virtio-net-pci,netdev=n0,mac=" + MAC("a"),
	} {
		if !strings.Contains(line, want) {
			t.Errorf("argv lacks %q:\n%s", want, line)
		}
	}
	if strings.Contains(line, "-initrd") {
		t.Errorf("no initrds, but -initrd rendered: %s", line)
	}
	// The MAC is stable per name and differs between names.
	if MAC("web1") != MAC("web1") || MAC("web1") == MAC("web2") {
		t.Errorf("MAC not stable/distinct: %s %s", MAC("web1"), MAC("web2"))
	}
	// Never inferred from /dev/kvm: only the spec changes the accelerator.
	s.Accel = "kvm"
	argv, _ = Args(s, Options{})
	if !strings.Contains(strings.Join(argv, " "), "-accel kvm ") {
		t.Errorf("accel kvm not rendered: %v", argv)
	}
}

func TestArgsRootBootcode(t *testing.T) {
	s := frugalSpec()
	s.Layout, s.Bootcodes = driver.Scatter, "root=LABEL=root host=x"
	if got := Cmdline(s, Options{}); got != "console=ttyS0 quiet panic=-1 root=LABEL=root host=x" {
		t.Errorf("cmdline = %q", got)
	}
	s.Bootcodes = "host=x"
	if got := Cmdline(s, Options{}); got != "console=ttyS0 quiet panic=-1 root=/dev/vda host=x" {
		t.Errorf("cmdline = %q", got)
	}
}

func TestArgsErrors(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*driver.Spec)
		want string
	}{
		{"name", func(s *driver.Spec) { s.Name = "Web_1" }, `name "Web_1"`},
		{"dir", func(s *driver.Spec) { s.Dir = "" }, "dir: required"},
		{"kernel", func(s *driver.Spec) { s.Kernel = "" }, "kernel: required"},
		{"accel", func(s *driver.Spec) { s.Accel = "hvf" }, `accel "hvf"`},
		{"machine", func(s *driver.Spec) { s.Machine = "virt" }, `machine "virt"`},
		{"mem", func(s *driver.Spec) { s.MemBytes = -1 }, "memory -1"},
		{"port", func(s *driver.Spec) { s.Net.Forwards[0].HostPort = 0 }, "forward 0: ports 0->22"},
		{"proto", func(s *driver.Spec) { s.Net.Forwards[1].Proto = "sctp" }, `forward 1: proto "sctp"`},
		{"hostaddr", func(s *driver.Spec) { s.Net.Forwards[0].HostAddr = "localhost" }, `host address "localhost"`},
		{"mac", func(s *driver.Spec) { s.Net.MAC = "52:54" }, `mac "52:54"`},
		{"mode", func(s *driver.Spec) { s.Net.Mode = "vde" }, `net mode "vde"`},
		{"disk", func(s *driver.Spec) { s.Disks[0].Path = "" }, "disk 0: empty path"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := frugalSpec()
			c.mod(&s)
			_, err := Args(s, Options{KernelELF: true})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	for _, c := range []struct {
		name string
		mod  func(*driver.Spec)
		want string
	}{
		{"forwards", func(s *driver.Spec) {}, "forwards are for user-mode networking"},
		{"nodhcp", func(s *driver.Spec) { s.Net.Forwards = nil; s.Bootcodes += " nodhcp" }, "bootcode nodhcp"},
		{"mac", func(s *driver.Spec) { s.Net.Forwards = nil; s.Net.MAC = "x" }, `mac "x"`},
	} {
		t.Run("bridge_"+c.name, func(t *testing.T) {
			s := frugalSpec()
			s.Net.Mode = "bridge"
			c.mod(&s)
			if _, err := Args(s, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestKernelIsELF(t *testing.T) {
	dir := t.TempDir()
	elf := filepath.Join(dir, "vmlinux")
	bz := filepath.Join(dir, "vmlinuz")
	os.WriteFile(elf, []byte("\x7fELF\x02\x01\x01rest"), 0o644)
	os.WriteFile(bz, []byte("MZ\xea\x07 bzImage"), 0o644)
	os.WriteFile(filepath.Join(dir, "short"), []byte("\x7f"), 0o644)
	for path, want := range map[string]bool{elf: true, bz: false, filepath.Join(dir, "short"): false} {
		got, err := KernelIsELF(path)
		if err != nil || got != want {
			t.Errorf("KernelIsELF(%s) = %v, %v; want %v", filepath.Base(path), got, err, want)
		}
	}
	if _, err := KernelIsELF(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing kernel: err = %v", err)
	}
}

func TestCommandLineQuoting(t *testing.T) {
	got := CommandLine([]string{"qemu", "-append", "console=ttyS0 quiet", "-x", "it's", "plain/path-1.img"})
	want := `qemu -append 'console=ttyS0 quiet' -x 'it'\''s' plain/path-1.img`
	if got != want {
		t.Errorf("CommandLine = %s\nwant          %s", got, want)
	}
}
