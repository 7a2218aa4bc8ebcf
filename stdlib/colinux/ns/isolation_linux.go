package ns

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// Isolation is what stands between a guest's root and the host, recorded
// in runtime.json and shown by g:status() / `tinyfarm guests`.
const Isolation = "namespaces+cgroups+caps+seccomp (guest root is host uid 0 without dangerous capabilities)"

// IsolationUserNS is Isolation for a guest in a user namespace.
const IsolationUserNS = "userns+namespaces+cgroups+caps+seccomp"

// isolationUserNSFmt is a running user-namespace guest's isolation, with
// the host uid its root is.
const isolationUserNSFmt = IsolationUserNS + " (guest root is host uid %d)"

// keptCaps are the capabilities a guest's root keeps: what busybox init,
// dropbear, nginx, su and sudo need, and no more (Docker's default set
// minus MKNOD and NET_RAW, plus SYS_BOOT, which in a PID namespace only
// ends the guest's own init). Dropped, among others: SYS_ADMIN (mount,
// namespaces), SYS_MODULE, SYS_RAWIO, SYS_TIME, NET_ADMIN (a guest cannot
// re-address itself to impersonate another), NET_RAW (no raw or packet
// sockets to forge frames with; ping works without it, see guestSysctls;
// a guest with net_raw = true keeps it), MKNOD, SYS_PTRACE, SYSLOG, BPF.
var keptCaps = map[int]bool{
	unix.CAP_CHOWN: true, unix.CAP_DAC_OVERRIDE: true, unix.CAP_FSETID: true, unix.CAP_FOWNER: true,
	unix.CAP_SETGID: true, unix.CAP_SETUID: true, unix.CAP_SETFCAP: true,
	unix.CAP_SETPCAP: true, unix.CAP_NET_BIND_SERVICE: true, unix.CAP_SYS_CHROOT: true, unix.CAP_KILL: true,
	unix.CAP_AUDIT_WRITE: true, unix.CAP_SYS_BOOT: true,
}

// netRawEnv tells the exec helper that the guest kept CAP_NET_RAW.
const netRawEnv = "_TINYFARM_NS_NETRAW"

// dropCaps removes every other capability (and NET_RAW unless netRaw)
// from the bounding set, so the guest's init (uid 0) and everything it
// starts can never hold them.
func dropCaps(netRaw bool) error {
	for c := 0; c <= unix.CAP_LAST_CAP; c++ {
		if keptCaps[c] || netRaw && c == unix.CAP_NET_RAW {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			return fmt.Errorf("drop capability %d: %w", c, err)
		}
	}
	return unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
}

// maskedProc are /proc files that leak host kernel state or reach host
// hardware: a guest sees /dev/null there. interrupts holds the host's
// per-device interrupt counts, a timing side channel on other tenants'
// input and network activity (Diao et al., "No Pardon for the
// Interruption", IEEE S&P 2016; Android closed it to apps since 8.0).
// Masking it also spares every SSH session 60 us: dropbear reads it (and
// timer_list) to reseed its random pool in each session's child.
var maskedProc = []string{"kcore", "kallsyms", "keys", "key-users", "timer_list", "sched_debug",
	"latency_stats", "sysrq-trigger", "kmsg", "kpagecount", "kpageflags", "kpagecgroup", "config.gz", "modules", "vmallocinfo",
	"interrupts"}

// maskedDirs become empty read-only tmpfs.
var maskedDirs = []string{"proc/acpi", "proc/scsi", "proc/asound", "proc/driver", "sys/firmware", "sys/kernel/debug", "sys/kernel/security"}

// readOnlyProc are /proc trees the guest may read but never write (the
// host-wide sysctls, IRQ affinity, bus settings).
var readOnlyProc = []string{"proc/sys", "proc/irq", "proc/bus", "proc/fs"}

func maskProc(newRoot string) error {
	for _, f := range maskedProc {
		p := filepath.Join(newRoot, "proc", f)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := unix.Mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mask /proc/%s: %w", f, err)
		}
	}
	for _, d := range maskedDirs {
		p := filepath.Join(newRoot, d)
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			continue
		}
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0"); err != nil {
			return fmt.Errorf("mask /%s: %w", d, err)
		}
	}
	for _, d := range readOnlyProc {
		p := filepath.Join(newRoot, d)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("read-only /%s: %w", d, err)
		}
		if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("read-only /%s: %w", d, err)
		}
	}
	return nil
}

// blockedSyscalls fail with EPERM in a guest: loading kernel code, kernel
// keyrings, raw I/O ports, clocks, swap, mounts and new namespaces (which
// would hand the guest fresh capabilities in a user namespace), BPF and
// perf, and open_by_handle_at (the classic container escape). The
// capability drop already forbids most of them; this is defence in depth
// against kernel bugs reachable without a capability check.
var blockedSyscalls = []string{
	"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"open_by_handle_at", "name_to_handle_at", "bpf", "perf_event_open", "userfaultfd",
	"add_key", "request_key", "keyctl", "acct", "swapon", "swapoff", "quotactl",
	"iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
	"syslog", "lookup_dcookie", "uselib", "personality",
	"mount", "umount2", "pivot_root", "move_mount", "fsopen", "fsmount", "fsconfig", "fspick",
	"open_tree", "mount_setattr", "unshare", "setns",
}

// cloneNewUser is CLONE_NEWUSER: clone() with it is refused too.
const cloneNewUser = unix.CLONE_NEWUSER

func loadSeccomp() error {
	f := seccomp.Filter{
		NoNewPrivs: false, // a guest's su and sudo are setuid programs
		Flag:       seccomp.FilterFlagTSync,
		Policy: seccomp.Policy{
			DefaultAction: seccomp.ActionAllow,
			Syscalls: []seccomp.SyscallGroup{
				{Action: seccomp.ActionErrno, Names: blockedSyscalls},
				{Action: seccomp.ActionErrno, NamesWithCondtions: []seccomp.NameWithConditions{{
					Name:       "clone",
					Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: cloneNewUser}},
				}}},
			},
		},
	}
	if err := seccomp.LoadFilter(f); err != nil {
		return fmt.Errorf("seccomp: %w", err)
	}
	return nil
}
