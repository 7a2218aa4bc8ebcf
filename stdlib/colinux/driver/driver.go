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
	"os"
	"path/filepath"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/ready"
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
	// Subnet is the farm's subnet ("10.77.0.0/24"). KeptGateway is set
	// for a guest whose IP is not of it, kept from another farm by a live
	// move: the gateway of the IP's own subnet, which the bridge answers
	// for (see farmnet.TapSpec).
	Subnet, KeptGateway string
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

// ConsoleLog is where a guest's console (serial or init output) is
// written, unless its backend is a ConsoleReader.
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
// it; the colinux module then makes one SSH handshake. (Declared in
// internal/ready, which the image builder shares.)
const ReadyMarker = ready.Marker

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
	// OOMKills counts the processes the kernel killed in the guest for
	// want of memory (its cgroup's oom_kill count): the guest lives on,
	// one of its processes did not. 0 where the driver cannot tell.
	OOMKills int `json:"oom_kills,omitempty"`
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

// The interfaces below are the optional abilities the colinux module asks
// a backend for, by type assertion, never by its name. Those on Runner
// are facts about every guest of the backend (asked even of a guest that
// does not run); those on Guest are abilities of a started guest's
// handle (what Start, Attach, Restore and StartIncoming return).

// SpecChecker is an optional Runner interface: the backend's own
// constraints on a spec, checked when a guest is defined, before anything
// runs. Errors name the field and the fix; an ability the backend lacks
// wraps ErrUnsupported (see Unsupported).
type SpecChecker interface {
	CheckSpec(spec Spec) error
}

// Defaults are what a backend picks for what a guest definition leaves
// unset.
type Defaults struct {
	// Net is the network mode ("bridge", "user"). Default "user".
	Net string
	// UserNS: run the guest in a user namespace where the platform allows.
	UserNS bool
}

// Defaulter is an optional Runner interface: the backend's Defaults for a
// guest of layout. Without it a guest gets the zero Defaults.
type Defaulter interface {
	Defaults(layout Layout) Defaults
}

// HostChecker is an optional Runner interface: whether the backend can
// run guests on this host as this user (nil) or why not. The module's
// default driver is the first registered one that can; a Runner without
// it can everywhere.
type HostChecker interface {
	CheckHost() error
}

// Explainer is an optional Runner interface: why the backend lacks an
// ability (named as in Unsupported: "checkpoint", "live migration"), with
// the way out, for the error the module returns. "" when it has nothing
// to add.
type Explainer interface {
	WhyUnsupported(ctx context.Context, ability string) string
}

// Sharer is an optional Runner interface: the backend shows Spec.Shares
// inside its guests. ShareMethod says how, for reports ("bind mount at
// guest start").
type Sharer interface {
	ShareMethod() string
}

// InitrdBooter is an optional Runner interface for backends that boot a
// frugal guest's core as an initrd of a kernel. ReleaseKernel says whether
// that kernel is the Tiny Core release's own (vmlinuz64); when false the
// backend's guests bring their own (coLinux's vmlinux).
type InitrdBooter interface {
	ReleaseKernel() bool
}

// Restorer is an optional Runner interface: it starts a guest from a
// state file a Checkpointer of the same backend wrote. CheckState is
// cheap (a header): it says whether file is such a state. The guest
// returned resumes in the run state it was saved in once WaitReady
// returns; it is a Suspender.
type Restorer interface {
	CheckState(file string) error
	Restore(ctx context.Context, spec Spec, file string) (Guest, error)
}

// LiveStats says what a live migration (LiveSource.MigrateLive) did.
type LiveStats struct {
	// Paused is when the source guest was found stopped for the
	// switchover (the switchover hook runs then).
	Paused time.Time
	// Completed is when the backend reported the migration completed.
	Completed time.Time
	// BackendDowntime is the source backend's own downtime figure (stop to
	// completion on its side, without the switchover hook's wait).
	BackendDowntime time.Duration
	// Total is the backend's total migration time.
	Total time.Duration
	// RAMBytes is the memory sent (including re-sent dirty pages).
	RAMBytes int64
}

// LiveSource is an optional Guest interface: the running guest sends its
// memory and device state to uri while it runs ("unix:/path/sock"), and
// calls switchover once it is stopped for the last part (its disk is
// stable then). It stays paused afterwards: the caller stops it once the
// far side runs, or resumes it. A LiveSource is a Suspender.
type LiveSource interface {
	MigrateLive(ctx context.Context, uri string, switchover func(context.Context) error) (LiveStats, error)
}

// LiveTarget is an optional Runner interface: it starts a guest waiting
// for a live migration stream on uri, with the spec the source runs;
// WaitReady returns once the stream is loaded. The guest returned is a
// Suspender (a stream of a paused guest leaves it paused).
type LiveTarget interface {
	StartIncoming(ctx context.Context, spec Spec, uri string) (Guest, error)
}

// Announcer is an optional Guest interface: the guest tells the network
// where it is now (gratuitous ARPs from its NICs), after it moved.
type Announcer interface {
	Announce(ctx context.Context) error
}

// FSFreezer is an optional Guest interface for guests whose disk the host
// kernel mounts (namespace guests): FreezeFS flushes and freezes the
// file system of the guest's first disk so a copy of the image is
// consistent; thaw undoes it. Guests that are VMs need no such step: a
// suspended VM's writes are in the host page cache already. ThawFS
// undoes a freeze whose freezer was killed (a frozen file system stays
// frozen when the process that froze it dies); not frozen is fine.
type FSFreezer interface {
	FreezeFS(ctx context.Context) (thaw func(), err error)
	ThawFS(ctx context.Context) error
}

// OwnKernel is an optional Guest interface for guests that run a kernel
// of their own (VMs). Their clean shutdown is their own poweroff, and
// data they wrote may sit in their own page cache: before Stop (or a
// kill) the module runs poweroff or sync in the guest over SSH.
type OwnKernel interface {
	OwnKernel()
}

// ConsoleReader is an optional Runner interface for backends whose
// guests' console is not the file Spec.ConsoleLog() (a guest on another
// host): ReadConsole returns all of it. Without it the module reads that
// file.
type ConsoleReader interface {
	ReadConsole(spec Spec) ([]byte, error)
}

// ReadConsole is a guest's console as its backend r keeps it: through
// ConsoleReader, else the file Spec.ConsoleLog() ("" before the guest
// ever ran).
func ReadConsole(r Runner, spec Spec) ([]byte, error) {
	if cr, ok := r.(ConsoleReader); ok {
		return cr.ReadConsole(spec)
	}
	b, err := os.ReadFile(spec.ConsoleLog())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// ShareMounter is an optional Guest interface for backends whose shares
// the guest mounts itself once it runs (qemu's virtio-9p): MountShares
// mounts, through run (a root shell in the guest, over SSH), each share
// not mounted yet. A share the running guest has no device for (defined
// after it started) is left for its next start.
type ShareMounter interface {
	MountShares(ctx context.Context, shares []Share, run func(ctx context.Context, cmd string) (ExecResult, error)) error
}

// Overheader is an optional Runner interface: the host memory a guest of
// the backend costs beyond its memory quota (its monitor, kernel
// objects), as measured, which memory plans count per guest.
type Overheader interface {
	GuestOverhead() int64
}

// CheckVMSpec is what every VM backend (qemu, colinux) requires of a
// spec: a kernel to boot, no net_raw, which is about a shared kernel, and
// no base, a read-only root the host kernel mounts under the guest's layer.
func CheckVMSpec(driver string, s Spec) error {
	if s.Base != "" {
		return fmt.Errorf("base (a shared read-only root under the guest's own layer) is for guests the host kernel mounts (ns): remove base")
	}
	if s.Kernel == "" {
		return fmt.Errorf("the %s driver needs kernel = a kernel image", driver)
	}
	if s.NetRaw {
		return fmt.Errorf("net_raw is for ns guests (a %s guest's own kernel always allows raw sockets; the farm bridge filters its frames either way): remove net_raw", driver)
	}
	return nil
}

// Limiter is an optional Guest interface: it changes a running guest's
// memory quota and CPU share in place (ns: its cgroups), so a
// redefinition applies them without a restart. cpus 0 lifts the CPU limit.
type Limiter interface {
	SetLimits(ctx context.Context, memBytes int64, cpus float64) error
}
