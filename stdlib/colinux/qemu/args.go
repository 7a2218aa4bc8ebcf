package qemu

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

// Options are the inputs of Args that are not part of the Spec: facts the
// thin executing part found out, and per-start choices.
type Options struct {
	// Binary is the QEMU executable. Default "qemu-system-x86_64" (looked
	// up in PATH when run).
	Binary string
	// KernelELF tells that spec.Kernel is an ELF vmlinux with a PVH entry
	// point (see KernelIsELF). It selects the microvm fast path when
	// spec.Machine is empty. Default false: a bzImage booted on "pc".
	KernelELF bool
	// TSCKHz is the host TSC frequency in kHz (see HostTSCKHz). On
	// microvm it is passed as tsc_early_khz: microvm has no HPET or PM
	// timer, and on a loaded host the kernel's PIT calibration of the TSC
	// fails and boot hangs (testdata/minicore/README.md). Default 0: not
	// passed.
	TSCKHz int
	// Incoming, when set, boots the VM from this saved state file (written
	// by Checkpoint) with -incoming "exec:cat FILE". Default "": cold boot.
	Incoming string
	// IncomingURI, when set (and Incoming is not), waits for a migration
	// stream with -incoming URI, e.g. "unix:/path/sock" (live migration).
	IncomingURI string
}

// Runtime file names inside Spec.Dir.
const (
	qmpSock   = "qmp.sock"
	pidFile   = "qemu.pid"
	initrdCat = "initrd.img" // several Spec.Initrds concatenated at start
)

// DefaultMemBytes is the guest memory when Spec.MemBytes is 0.
const DefaultMemBytes = 128 << 20

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// Args renders the qemu argv (argv[0] is the binary) for spec. It is a pure
// function: it reads no file, so the same inputs give the same argv.
//
// Machine: spec.Machine, else "microvm" when opts.KernelELF (PVH entry,
// no firmware: -M microvm,pit=on,pic=on,rtc=on and virtio-*-device) and
// "pc" otherwise (virtio-*-pci). Accelerator: spec.Accel, default "tcg".
// Several initrds are read from Dir/initrd.img, which the runner writes by
// concatenating them (gzip cpio archives concatenate). The serial console
// is appended to spec.ConsoleLog(). Guest poweroff and reboot leave QEMU
// alive in the "shutdown" run state (-action reboot=shutdown,shutdown=pause)
// so that the driver can tell a guest poweroff from a killed QEMU.
func Args(spec driver.Spec, opts Options) ([]string, error) {
	if err := validate(spec); err != nil {
		return nil, err
	}
	bin := opts.Binary
	if bin == "" {
		bin = "qemu-system-x86_64"
	}
	accel := spec.Accel
	if accel == "" {
		accel = "tcg"
	}
	if accel != "tcg" && accel != "kvm" {
		return nil, fmt.Errorf("accel %q: want tcg or kvm", spec.Accel)
	}
	machine := machineOf(spec, opts)
	var mflag, bus string
	switch machine {
	case "microvm":
		// Without the legacy timers and PIC, a PVH kernel hangs in TSC
		// calibration on microvm (PLATFORM.md §3).
		mflag, bus = "microvm,pit=on,pic=on,rtc=on", "device"
	case "pc", "q35":
		mflag, bus = machine, "pci"
	default:
		return nil, fmt.Errorf("machine %q: want microvm, pc or q35", spec.Machine)
	}
	mem := spec.MemBytes
	if mem == 0 {
		mem = DefaultMemBytes
	}
	if mem < 0 {
		return nil, fmt.Errorf("memory %d bytes: must be positive", mem)
	}
	memMiB := (mem + 1<<20 - 1) >> 20
	cpus := 1
	if spec.CPUs > 0 {
		cpus = int(math.Ceil(spec.CPUs))
	}
	if spec.CPUs < 0 {
		return nil, fmt.Errorf("cpus %v: must not be negative", spec.CPUs)
	}

	a := []string{bin,
		"-name", spec.Name,
		"-accel", accel,
		"-M", mflag,
		"-m", strconv.FormatInt(memMiB, 10),
		"-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-msg", "timestamp=on",
		"-action", "reboot=shutdown,shutdown=pause",
		"-kernel", spec.Kernel,
	}
	switch len(spec.Initrds) {
	case 0:
	case 1:
		a = append(a, "-initrd", spec.Initrds[0])
	default:
		a = append(a, "-initrd", filepath.Join(spec.Dir, initrdCat))
	}
	a = append(a, "-append", Cmdline(spec, opts))

	for i, d := range spec.Disks {
		if d.Path == "" {
			return nil, fmt.Errorf("disk %d: empty path", i)
		}
		id := "vd" + strconv.Itoa(i)
		drive := "file=" + optEscape(d.Path) + ",format=raw,if=none,id=" + id
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		a = append(a, "-drive", drive, "-device", "virtio-blk-"+bus+",drive="+id)
	}

	switch spec.Net.Mode {
	case "", "user":
		netdev := "user,id=n0"
		for i, f := range spec.Net.Forwards {
			s, err := hostfwd(f)
			if err != nil {
				return nil, fmt.Errorf("forward %d: %w", i, err)
			}
			netdev += ",hostfwd=" + s
		}
		mac, err := guestMAC(spec)
		if err != nil {
			return nil, err
		}
		a = append(a, "-netdev", netdev, "-device", "virtio-net-"+bus+",netdev=n0,mac="+mac)
	case "none":
	case "bridge":
		// A tap on the farm bridge, made by the runner (farmnet.AttachTap)
		// before QEMU starts; the guest gets its address by DHCP.
		if len(spec.Net.Forwards) > 0 {
			return nil, errors.New("net bridge: forwards are for user-mode networking; the guest is reached at its own IP")
		}
		if hasWord(strings.Fields(spec.Bootcodes), "nodhcp") {
			return nil, errors.New("net bridge: bootcode nodhcp: the guest gets its address by DHCP from the farm")
		}
		mac, err := guestMAC(spec)
		if err != nil {
			return nil, err
		}
		a = append(a, "-netdev", "tap,id=n0,ifname="+farmnet.TapName(spec.Instance())+",script=no,downscript=no",
			"-device", "virtio-net-"+bus+",netdev=n0,mac="+mac)
	default:
		return nil, fmt.Errorf("net mode %q: want user, bridge or none", spec.Net.Mode)
	}

	// Shares: QEMU's local 9p server. It resolves every path component of
	// a guest request below the export root itself (openat with
	// O_NOFOLLOW, one component at a time; no ".." past the root), and the
	// guest kernel resolves symlinks and ".." in its own namespace, so the
	// guest cannot reach a host file outside the directory. Read-only
	// shares are exported readonly=on: QEMU refuses every change.
	//
	// security_model=mapped-xattr, because QEMU runs as root here: with
	// passthrough or none, a guest's chown, chmod and symlink are carried
	// out on the host as root, so guest root could plant setuid-root
	// programs and symlinks in the host directory for host users to run
	// or follow. Mapped, what the guest creates is owned on the host by
	// QEMU's user (root) with mode 0600 (directories 0700), and the owner,
	// mode, device number and symlink target the guest sees are kept in
	// user.virtfs.* extended attributes: on the host, the guest's symlinks
	// and device nodes are plain files and nothing is setuid. Files the
	// host puts into the share show in the guest with their host owner
	// and mode; host symlinks inside the share do not resolve in the guest
	// (ELOOP). A rw share needs a host file system with user extended
	// attributes (ext4, xfs, btrfs; tmpfs from Linux 6.6).
	for i, s := range spec.Shares {
		if s.Tag == "" || s.HostPath == "" {
			return nil, fmt.Errorf("share %d: tag and host path are required", i)
		}
		id := "fs" + strconv.Itoa(i)
		fsdev := "local,id=" + id + ",path=" + optEscape(s.HostPath) + ",security_model=mapped-xattr"
		if s.ReadOnly {
			fsdev += ",readonly=on"
		}
		a = append(a, "-fsdev", fsdev, "-device", "virtio-9p-"+bus+",fsdev="+id+",mount_tag="+optEscape(s.Tag))
	}

	a = append(a,
		"-chardev", "null,id=con0,logfile="+optEscape(spec.ConsoleLog())+",logappend=on",
		"-serial", "chardev:con0",
		"-qmp", "unix:"+optEscape(fsutil.SocketArg(spec.Dir, qmpSock))+",server=on,wait=off", // QEMU runs in spec.Dir
		"-pidfile", filepath.Join(spec.Dir, pidFile),
	)
	if opts.Incoming != "" {
		a = append(a, "-incoming", "exec:cat "+shellQuote(opts.Incoming))
	} else if opts.IncomingURI != "" {
		a = append(a, "-incoming", opts.IncomingURI)
	}
	return a, nil
}

func machineOf(spec driver.Spec, opts Options) string {
	switch {
	case spec.Machine != "":
		return spec.Machine
	case opts.KernelELF:
		return "microvm"
	}
	return "pc"
}

// Cmdline is the guest kernel command line: the serial console, quiet,
// reboot at once on panic, tsc_early_khz on microvm (when opts.TSCKHz is
// set), root=/dev/vda for a scatter layout (unless the bootcodes name a
// root), then the bootcodes.
func Cmdline(spec driver.Spec, opts Options) string {
	w := []string{"console=ttyS0", "quiet", "panic=-1"}
	if machineOf(spec, opts) == "microvm" && opts.TSCKHz > 0 {
		w = append(w, "tsc_early_khz="+strconv.Itoa(opts.TSCKHz))
	}
	codes := strings.Fields(spec.Bootcodes)
	if spec.Layout == driver.Scatter && !hasWord(codes, "root=") {
		w = append(w, "root=/dev/vda")
	}
	return strings.Join(append(w, codes...), " ")
}

func hasWord(words []string, prefix string) bool {
	for _, w := range words {
		if strings.HasPrefix(w, prefix) {
			return true
		}
	}
	return false
}

func validate(spec driver.Spec) error {
	var errs []error
	if !nameRE.MatchString(spec.Name) {
		errs = append(errs, fmt.Errorf("name %q: want [a-z0-9-], at most 32 characters", spec.Name))
	}
	if spec.Dir == "" {
		errs = append(errs, errors.New("dir: required"))
	}
	if spec.Kernel == "" {
		errs = append(errs, errors.New("kernel: required"))
	}
	return errors.Join(errs...)
}

func hostfwd(f driver.Forward) (string, error) {
	proto := f.Proto
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return "", fmt.Errorf("proto %q: want tcp or udp", f.Proto)
	}
	addr := f.HostAddr
	if addr == "" {
		addr = "127.0.0.1"
	}
	if net.ParseIP(addr) == nil {
		return "", fmt.Errorf("host address %q: not an IP address", addr)
	}
	if f.HostPort < 1 || f.HostPort > 65535 || f.GuestPort < 1 || f.GuestPort > 65535 {
		return "", fmt.Errorf("ports %d->%d: want 1..65535", f.HostPort, f.GuestPort)
	}
	return fmt.Sprintf("%s:%s:%d-:%d", proto, addr, f.HostPort, f.GuestPort), nil
}

// guestMAC is the MAC of spec's NIC: the one it names, or MAC(name).
func guestMAC(spec driver.Spec) (string, error) {
	mac := spec.Net.MAC
	if mac == "" {
		mac = MAC(spec.Name)
	}
	if _, err := net.ParseMAC(mac); err != nil {
		return "", fmt.Errorf("mac %q: %w", mac, err)
	}
	return mac, nil
}

// MAC is the fixed MAC address a guest gets when Spec.Net.MAC is empty:
// QEMU's 52:54:00 prefix and three bytes of a hash of the guest name, so
// the NIC keeps its identity across restarts.
func MAC(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", byte(s>>16), byte(s>>8), byte(s))
}

// optEscape doubles commas, QEMU's escape inside option lists.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// shellQuote quotes s for /bin/sh (exec: migration URIs run through it).
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+=:@%,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// CommandLine renders argv as one shell-quoted line (for Config and logs).
func CommandLine(argv []string) string {
	q := make([]string, len(argv))
	for i, s := range argv {
		q[i] = shellQuote(s)
	}
	return strings.Join(q, " ")
}
