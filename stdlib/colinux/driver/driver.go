// Package driver is the contract between the colinux module and the
// backends that run guests: ns (Linux namespaces + cgroups), qemu (a full
// VM under TCG or KVM) and colinux (coLinux 0.7 on a Windows host).
//
// A backend is a Runner. What every backend can do is on Guest (three
// methods); extra abilities are separate interfaces found by type
// assertion, and a missing one is ErrUnsupported.
package driver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// ErrUnsupported is wrapped by errors for abilities a backend lacks.
var ErrUnsupported = errors.ErrUnsupported

// Unsupported names the missing ability and the backend.
func Unsupported(driver, ability, why string) error {
	if why != "" {
		why = ": " + why
	}
	return fmt.Errorf("%s driver: %s is not supported%s: %w", driver, ability, why, ErrUnsupported)
}

// Layout is how a guest's disk holds Tiny Core.
type Layout string

const (
	// Scatter: core extracted into the disk root; boots with root=/dev/vda.
	Scatter Layout = "scatter"
	// Frugal: core boots as an initramfs; the disk holds tce/, home/, opt/.
	Frugal Layout = "frugal"
)

// Disk is one block device of a guest, in order (vda, vdb, ... / cobd0, ...).
type Disk struct {
	Path     string // raw image file
	ReadOnly bool
}

// Forward maps a host port to a guest port (qemu user-mode net, coLinux slirp).
type Forward struct {
	Proto     string // "tcp" (default) or "udp"
	HostAddr  string // default 127.0.0.1
	HostPort  int
	GuestPort int
}

// Share is a host directory visible inside the guest.
type Share struct {
	Tag       string // mount tag / cofs index name
	HostPath  string
	GuestPath string
	ReadOnly  bool
}

// Net is a guest's network identity.
type Net struct {
	// Mode: "bridge" (ns veth or qemu tap on the farm bridge, root only) or
	// "user" (qemu/coLinux user-mode networking with Forwards; no root).
	Mode     string
	IP       string // guest address with prefix, e.g. "10.77.0.5/24" (bridge mode)
	Gateway  string // e.g. "10.77.0.1"
	Bridge   string // host bridge name, e.g. "tfbr0"
	MAC      string // fixed per guest, so guest NIC names stay stable
	Forwards []Forward
	// Leases is the directory of guest definitions (<state>/guests) the
	// farm's DHCP server answers from (qemu bridge mode; see farmnet).
	Leases string
}

// Spec is everything a backend needs to run one guest. It is plain data:
// backends render it (qemu argv, coLinux conf, ns attributes) with pure
// functions and keep the executing part thin.
type Spec struct {
	Name      string  // guest name, [a-z0-9-], at most 32 chars
	Dir       string  // the guest's runtime directory in the state dir: logs, sockets, pid files
	MemBytes  int64   // memory quota
	CPUs      float64 // CPU share in cores (ns: cpu quota; qemu: -smp rounded up)
	Kernel    string  // qemu/colinux: kernel image (PVH vmlinux or bzImage; coLinux ELF vmlinux)
	Initrds   []string
	Bootcodes string // kernel command line words for Tiny Core (host=, tce=, nozswap ...)
	Layout    Layout
	Core      string // Tiny Core initramfs (core.gz); frugal ns guests extract it
	Disks     []Disk
	Net       Net
	Shares    []Share
	Accel     string // qemu: "tcg" (default) or "kvm"; never inferred from /dev/kvm
	// Base (ns scatter) is a read-only root image shared by guests built
	// from the same core and extensions: the guest's root is an overlay of
	// Base (mounted once per host, so its page cache is shared) and
	// Disks[0], the guest's own layer (upper/ and work/; made if missing).
	Base    string
	UserNS  bool   // ns: run in a user namespace (guest root = an unprivileged host uid)
	NetRaw  bool   // ns: the guest keeps CAP_NET_RAW (raw and packet sockets); the farm bridge still filters its frames
	Machine string // qemu: "microvm" (default with a PVH kernel) or "pc"
}

// ConsoleLog is where a guest's console (serial or init output) is written.
func (s Spec) ConsoleLog() string { return s.Dir + "/console.log" }

// Instance names this guest among every guest on the host: its name plus
// a hash of its runtime directory. Host-wide objects of a guest (cgroups,
// veth and tap devices, work directories under /run) are named after it,
// so two farms (state dirs) on one host may each have a guest "web1"
// without sharing a cgroup or deleting each other's network device.
func (s Spec) Instance() string {
	dir, err := filepath.Abs(s.Dir)
	if err != nil {
		dir = s.Dir
	}
	h := sha256.Sum256([]byte(filepath.Clean(dir)))
	return s.Name + "-" + hex.EncodeToString(h[:4])
}

// ReadyMarker is the line Tiny Core guests built by tinyfarm print on their
// console once boot (bootsync, bootlocal started) is done. Backends wait for
// it; the colinux module then makes one SSH handshake.
const ReadyMarker = "tinyfarm: guest ready"

// State of a guest.
type State string

const (
	Running   State = "running"
	Suspended State = "suspended"
	Stopped   State = "stopped" // exited cleanly (poweroff / stop)
	Crashed   State = "crashed" // exited otherwise; Status.Reason says how
)

// Status is what a backend knows about a guest right now.
type Status struct {
	State  State     `json:"state"`
	Reason string    `json:"reason,omitempty"` // e.g. "init killed by signal 9", "exit status 1"
	PID    int       `json:"pid,omitempty"`    // host PID of the guest's init / qemu process
	Since  time.Time `json:"since,omitempty"`
	// Isolation says what separates the guest from the host, e.g.
	// "namespaces+cgroups+caps+seccomp" (ns) or "full VM (tcg, microvm)"
	// (qemu; with a bzImage kernel "full VM (tcg, pc: …)", saying why not
	// microvm).
	Isolation string `json:"isolation,omitempty"`
}

// Runner starts guests of one backend and re-adopts running ones.
type Runner interface {
	// Start boots the guest and returns once its process runs (not once it
	// is ready: see Guest.WaitReady).
	Start(ctx context.Context, spec Spec) (Guest, error)
	// Attach re-adopts a guest started earlier, possibly by another
	// tinyfarm process, from the runtime files in spec.Dir. A guest that is
	// no longer running is returned with a Stopped or Crashed status.
	Attach(ctx context.Context, spec Spec) (Guest, error)
}

// Guest is one started guest.
type Guest interface {
	Status(ctx context.Context) (Status, error)
	// Stop asks the guest to shut down cleanly and kills it after grace.
	// Resources (cgroups, mounts, veths, sockets) are released either way.
	Stop(ctx context.Context, grace time.Duration) error
	// WaitReady blocks until the guest printed ReadyMarker (or its backend's
	// own readiness signal), the guest died, or ctx ends.
	WaitReady(ctx context.Context) error
}

// Execer runs a command inside the guest without SSH (ns: entering its
// namespaces).
type Execer interface {
	Exec(ctx context.Context, argv []string, opts ExecOptions) (ExecResult, error)
}

// ExecOptions tune Exec.
type ExecOptions struct {
	Stdin  io.Reader
	Env    []string // KEY=VALUE
	Dir    string   // working directory in the guest; default /
	Stdout io.Writer
	Stderr io.Writer
	// Timeout bounds the command (0: only ctx does); when it passes the
	// command is killed and the error wraps context.DeadlineExceeded.
	Timeout time.Duration
}

// ExecResult is a finished Exec.
type ExecResult struct {
	Code   int
	Stdout []byte
	Stderr []byte
}

// Suspender freezes and thaws a guest (ns: cgroup freezer; qemu: QMP stop/cont).
type Suspender interface {
	Suspend(ctx context.Context) error
	Resume(ctx context.Context) error
}

// Checkpointer saves a guest's state to a file and restores from one.
type Checkpointer interface {
	Checkpoint(ctx context.Context, file string) error
}

// Configurer renders the backend's own configuration text for a guest
// (coLinux conf, qemu command line), for g:conf().
type Configurer interface {
	Config(spec Spec) (string, error)
}
