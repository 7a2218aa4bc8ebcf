// Package conf renders coLinux 0.7 configuration files from a
// driver.Spec (TINYCORE.md §6).
//
// The format is plain text (the XML of coLinux ≤0.6 is rejected):
// whitespace-separated tokens, "#" comments, "quoted" values with the
// quotes stripped. Tokens that are configuration keys (kernel=, initrd=,
// mem=, cobdN=, ethN=, cofsN=, ...) configure the daemon; every other
// token goes to the guest kernel command line, and a key given twice is an
// error. Render is a pure function; the colinuxd package runs the daemon.
package conf

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Limits of coLinux 0.7 (CO src/colinux/user/config.c).
const (
	MaxCOBD = 32 // cobd0..cobd31
	MaxETH  = 16 // eth0..eth15
	MaxCOFS = 32 // cofs0..cofs31; cofs31 is the initrd's directory
)

// InitrdFile is the name, in Spec.Dir, of the single initrd the runner
// writes when the spec has several (coLinux takes one initrd=).
const InitrdFile = "initrd.img"

// keyRE matches the tokens coLinux takes as configuration keys.
var keyRE = regexp.MustCompile(`^(kernel|initrd|mem|cocon|(cobd|hd[a-z]|scsi|cofs|eth|ttys|exec)[0-9]*)=`)

// Render returns the coLinux 0.7 configuration text for spec:
//
//   - kernel= Spec.Kernel (it must be the coLinux ELF vmlinux; the runner
//     checks the file), initrd= the one initrd (Spec.Dir\initrd.img when
//     there are several, concatenated by the runner), mem= in MiB
//     (rounded up; omitted when 0: coLinux's default).
//   - cobdN="PATH" for Spec.Disks in order, N 0..31. Read-only disks are
//     refused: cobd has no read-only switch.
//   - eth0=slirp,MAC,tcp:HOST:GUEST/... for user networking (Net.Mode ""
//     or "user"), always with a MAC (Net.MAC, else MAC(name)) so the NIC
//     keeps its name. Mode "bridge" renders eth0=tuntap,"Net.Bridge",MAC
//     (Net.Bridge names the Windows TAP adapter); "none" renders no NIC.
//     coLinux's slirp has no bind address: Forward.HostAddr must be empty,
//     127.0.0.1 or 0.0.0.0.
//   - cofsN="DIR" for Spec.Shares: a Tag "N" or "cofsN" picks the index,
//     other shares take the lowest free ones; cofs31 is taken when there is
//     an initrd.
//   - the kernel command line: tce=cobd0 for a frugal guest with a disk and
//     root=/dev/cobd0 for a scatter one (unless given), nozswap and nortc
//     (coLinux has neither zram nor an RTC: tc-config would wait forever),
//     then Spec.Bootcodes, where /dev/vdX and vdX device names of tce=,
//     home=, opt=, restore= and root= become cobdN.
//
// Bootcodes that coLinux would read as configuration keys are an error.
func Render(spec driver.Spec) (string, error) {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	var b strings.Builder
	fmt.Fprintf(&b, "# coLinux 0.7 configuration of guest %s (rendered by tinyfarm)\n", spec.Name)

	if spec.Kernel == "" {
		bad("kernel: required (the coLinux ELF vmlinux)")
	}
	kv(&b, "kernel", spec.Kernel, false, bad)
	initrd := ""
	switch len(spec.Initrds) {
	case 0:
	case 1:
		initrd = spec.Initrds[0]
	default:
		if spec.Dir == "" {
			bad("initrds: several need Dir to concatenate them into")
		}
		initrd = winJoin(spec.Dir, InitrdFile)
	}
	if initrd != "" {
		kv(&b, "initrd", initrd, false, bad)
	}
	switch {
	case spec.MemBytes < 0:
		bad("memory %d bytes: must not be negative", spec.MemBytes)
	case spec.MemBytes > 0:
		fmt.Fprintf(&b, "mem=%d\n", (spec.MemBytes+1<<20-1)>>20)
	}

	if len(spec.Disks) > MaxCOBD {
		bad("disks: %d, coLinux has cobd0..cobd%d", len(spec.Disks), MaxCOBD-1)
	}
	for i, d := range spec.Disks {
		switch {
		case d.Path == "":
			bad("disk %d: empty path", i)
		case d.ReadOnly:
			bad("disk %d: %w", i, driver.Unsupported("colinux", "read-only disk", "cobd devices are always writable"))
		}
		kv(&b, "cobd"+strconv.Itoa(i), d.Path, true, bad)
	}

	switch spec.Net.Mode {
	case "", "user":
		mac := spec.Net.MAC
		if mac == "" {
			mac = MAC(spec.Name)
		}
		if _, err := net.ParseMAC(mac); err != nil {
			bad("mac %q: %v", mac, err)
		}
		val := "slirp," + mac
		var redirs []string
		for i, f := range spec.Net.Forwards {
			r, err := redir(f)
			if err != nil {
				bad("forward %d: %v", i, err)
				continue
			}
			redirs = append(redirs, r)
		}
		if len(redirs) > 0 {
			val += "," + strings.Join(redirs, "/")
		}
		fmt.Fprintf(&b, "eth0=%s\n", val)
	case "bridge":
		mac := spec.Net.MAC
		if mac == "" {
			mac = MAC(spec.Name)
		}
		if spec.Net.Bridge == "" || strings.ContainsAny(spec.Net.Bridge, "\"\r\n") {
			bad("bridge %q: want the name of a Windows TAP adapter", spec.Net.Bridge)
		}
		if len(spec.Net.Forwards) > 0 {
			bad("forwards: only with user (slirp) networking")
		}
		fmt.Fprintf(&b, "eth0=tuntap,%q,%s\n", spec.Net.Bridge, mac)
	case "none":
	default:
		bad("net mode %q: want user, bridge or none", spec.Net.Mode)
	}

	cofs, err := cofsIndexes(spec.Shares, initrd != "")
	if err != nil {
		errs = append(errs, err)
	}
	for i, s := range spec.Shares {
		if s.HostPath == "" {
			bad("share %d: empty host path", i)
		}
		if i < len(cofs) {
			kv(&b, "cofs"+strconv.Itoa(cofs[i]), s.HostPath, true, bad)
		}
	}

	line, err := Cmdline(spec)
	if err != nil {
		errs = append(errs, err)
	}
	b.WriteString(line + "\n")
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("colinux conf %s: %w", spec.Name, err)
	}
	return b.String(), nil
}

// Cmdline is the guest kernel command line part of the configuration.
func Cmdline(spec driver.Spec) (string, error) {
	var errs []error
	var user []string
	for _, w := range strings.Fields(spec.Bootcodes) {
		if keyRE.MatchString(w) {
			k, _, _ := strings.Cut(w, "=")
			errs = append(errs, fmt.Errorf("bootcode %q: %s= is a coLinux configuration key (set it in the spec; a duplicate key is an error)", w, k))
			continue
		}
		if c := w[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.') || strings.ContainsAny(w, `"#`) {
			errs = append(errs, fmt.Errorf("bootcode %q: coLinux tokens start with [A-Za-z0-9.] and hold no quote or #", w))
			continue
		}
		user = append(user, devWord(w))
	}
	has := func(prefix string) bool {
		for _, w := range user {
			if w == prefix || strings.HasPrefix(w, prefix+"=") {
				return true
			}
		}
		return false
	}
	var pre []string
	if len(spec.Disks) > 0 {
		switch spec.Layout {
		case driver.Frugal:
			if !has("tce") {
				pre = append(pre, "tce=cobd0")
			}
		case driver.Scatter:
			if !has("root") {
				pre = append(pre, "root=/dev/cobd0")
			}
		}
	}
	for _, w := range []string{"nozswap", "nortc"} {
		if !has(w) {
			pre = append(pre, w)
		}
	}
	return strings.Join(append(pre, user...), " "), errors.Join(errs...)
}

var vdRE = regexp.MustCompile(`^(tce|home|opt|restore|root)=(/dev/)?vd([a-z])(\d*)(/.*)?$`)

// devWord maps QEMU's virtio disk names to coLinux's: vda → cobd0,
// vdb1 → cobd1 (cobd devices have no partitions; a partition number is
// dropped with the disk's index kept).
func devWord(w string) string {
	m := vdRE.FindStringSubmatch(w)
	if m == nil {
		return w
	}
	return m[1] + "=" + m[2] + "cobd" + strconv.Itoa(int(m[3][0]-'a')) + m[5]
}

// cofsIndexes assigns a cofs index to each share.
func cofsIndexes(shares []driver.Share, initrd bool) ([]int, error) {
	idx := make([]int, len(shares))
	used := map[int]int{} // index -> share
	var errs []error
	limit := MaxCOFS
	if initrd {
		limit-- // cofs31 maps the initrd's directory
	}
	for i, s := range shares {
		idx[i] = -1
		n, err := strconv.Atoi(strings.TrimPrefix(s.Tag, "cofs"))
		if err != nil || s.Tag == "" {
			continue
		}
		switch {
		case n < 0 || n >= MaxCOFS:
			errs = append(errs, fmt.Errorf("share %d: cofs%d out of range 0..%d", i, n, MaxCOFS-1))
		case n >= limit:
			errs = append(errs, fmt.Errorf("share %d: cofs%d is taken by the initrd's directory", i, n))
		default:
			if j, dup := used[n]; dup {
				errs = append(errs, fmt.Errorf("share %d: duplicate index cofs%d (share %d has it)", i, n, j))
			}
			used[n] = i
		}
		idx[i] = n
	}
	next := 0
	for i := range shares {
		if idx[i] >= 0 {
			continue
		}
		for containsIdx(used, next) {
			next++
		}
		if next >= limit {
			errs = append(errs, fmt.Errorf("share %d: no free cofs index (0..%d)", i, limit-1))
			return idx[:i], errors.Join(errs...)
		}
		idx[i] = next
		used[next] = i
	}
	return idx, errors.Join(errs...)
}

func containsIdx(m map[int]int, k int) bool { _, ok := m[k]; return ok }

// redir renders one slirp redirection: tcp:HOST:GUEST.
func redir(f driver.Forward) (string, error) {
	proto := f.Proto
	if proto == "" {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return "", fmt.Errorf("proto %q: want tcp or udp", f.Proto)
	}
	switch f.HostAddr {
	case "", "127.0.0.1", "0.0.0.0":
	default:
		return "", fmt.Errorf("host address %s: coLinux slirp redirections have no bind address", f.HostAddr)
	}
	if f.HostPort < 1 || f.HostPort > 65535 || f.GuestPort < 1 || f.GuestPort > 65535 {
		return "", fmt.Errorf("ports %d->%d: want 1..65535", f.HostPort, f.GuestPort)
	}
	return fmt.Sprintf("%s:%d:%d", proto, f.HostPort, f.GuestPort), nil
}

// kv writes key=value; quoted forces quotes (Windows paths), otherwise the
// value is quoted only when it holds whitespace.
func kv(b *strings.Builder, key, val string, quoted bool, bad func(string, ...any)) {
	if strings.ContainsAny(val, "\"\r\n") {
		bad("%s: %q holds a quote or newline, which coLinux cannot read", key, val)
		return
	}
	if quoted || strings.ContainsAny(val, " \t#") {
		val = `"` + val + `"`
	}
	b.WriteString(key + "=" + val + "\n")
}

// winJoin joins a directory and a file name with the directory's own
// separator (backslash for Windows paths).
func winJoin(dir, name string) string {
	if strings.Contains(dir, `\`) {
		return strings.TrimRight(dir, `\`) + `\` + name
	}
	return path.Join(dir, name)
}

// MAC is the fixed MAC address a guest gets when Spec.Net.MAC is empty: a
// locally administered address (02:...) from a hash of the guest name.
// coLinux would otherwise pick a random one per start and udev would
// rename the NIC (TINYCORE.md §7, pain point 9).
func MAC(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	s := h.Sum32()
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", byte(s>>16), byte(s>>8), byte(s))
}
