package farm

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/lockfile"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// Errors callers can test with errors.Is. ErrNotFound and ErrInvalid are
// made by errkind, so errors.Is(err, fs.ErrNotExist / fs.ErrInvalid) holds
// too and the Lua binding reports kinds not_found and invalid.
var (
	ErrNotFound   = errkind.NotFound("guest not found")
	ErrInvalid    = errkind.Invalid("invalid guest definition")
	ErrOvercommit = errors.New("host memory would be overcommitted")
	ErrExists     = errors.New("guest already exists")
	ErrSuspended  = errors.New("guest is suspended")
	ErrNotRunning = errors.New("guest is not running")
	ErrNoSpace    = errors.New("not enough disk space")
)

// Definition is a guest as the user declared it, plus what tinyfarm
// assigned once and keeps (IP, MAC). It is persisted as
// <state>/guests/<name>/guest.json.
type Definition struct {
	Name   string   `json:"name"`
	Driver string   `json:"driver"`          // "ns", "qemu", "colinux"
	Disk   string   `json:"disk,omitempty"`  // disk image path (absolute)
	Disks  []string `json:"disks,omitempty"` // extra disks
	// Base (ns scatter) is a read-only root image shared with other
	// guests; Disk is then the guest's own layer over it (made if missing).
	Base      string           `json:"base,omitempty"`
	Layout    driver.Layout    `json:"layout"`            // scatter (default) or frugal
	Core      string           `json:"core,omitempty"`    // frugal: the core (corepure64.gz, core.gz)
	Kernel    string           `json:"kernel,omitempty"`  // qemu/colinux
	Initrds   []string         `json:"initrds,omitempty"` // qemu/colinux extra initrds (modules)
	Bootcodes string           `json:"bootcodes,omitempty"`
	MemBytes  int64            `json:"mem"`
	CPUs      float64          `json:"cpus"`
	IP        string           `json:"ip,omitempty"` // bridge address with prefix ("10.77.0.5/24")
	MAC       string           `json:"mac,omitempty"`
	Net       string           `json:"net,omitempty"` // "bridge" (ns default; qemu as root: a tap, DHCP), "user" (qemu default)
	Forwards  []driver.Forward `json:"forwards,omitempty"`
	Shares    []driver.Share   `json:"shares,omitempty"`
	HostKey   string           `json:"host_key,omitempty"` // pinned SSH host key, authorized_keys format
	User      string           `json:"user,omitempty"`     // SSH user; default "tc"
	Accel     string           `json:"accel,omitempty"`
	UserNS    bool             `json:"userns,omitempty"`  // ns: guest root is an unprivileged host uid
	NetRaw    bool             `json:"net_raw,omitempty"` // ns: guest keeps CAP_NET_RAW (raw sockets); still filtered on the bridge
	// Gateway is set only for a bridged guest whose IP is not of this
	// farm's subnet: it kept it, moving here live from another farm (the
	// VM holds it in memory). It is the gateway of the IP's own subnet,
	// which this farm's bridge answers for (see KeptAddressProblem).
	Gateway string `json:"gateway,omitempty"`
	// DiskPlaced is true when tinyfarm chose where the disk lives (a
	// clone's, a restored or migrated guest's). Destroy keeps such a disk
	// all the same, unless asked to remove it.
	DiskPlaced bool              `json:"disk_placed,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	// DiskRO attaches the disks read-only; only guests that all say so
	// may name the same disk (see checkConflicts).
	DiskRO bool `json:"disk_ro,omitempty"`
	// Autostart: `tinyfarm boot` starts the guest, higher
	// AutostartPriority first (LXD's boot.autostart.priority); guests of
	// one priority start together, and the next group waits until they
	// are ready plus the longest AutostartDelay among them
	// (boot.autostart.delay).
	Autostart         bool          `json:"autostart,omitempty"`
	AutostartPriority int           `json:"autostart_priority,omitempty"`
	AutostartDelay    time.Duration `json:"autostart_delay,omitempty"`
}

var nameRe = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// ValidName reports whether name may name a guest: 1-32 of a-z, 0-9 and
// '-', starting with a letter.
func ValidName(name string) bool { return nameRe.MatchString(name) }

// Validate checks a definition against the registered drivers and names
// the field and the fix.
func (d *Definition) Validate() error { return d.validate(known[d.Driver], (*Farm)(nil).driverNames()) }

// Validate checks a definition against the drivers of this farm (its
// own, else the registered ones).
func (f *Farm) Validate(d *Definition) error { return d.validate(f.Backend(d.Driver), f.driverNames()) }

// validate checks d; r is its driver's backend (nil: none by that name),
// which checks what is its own (driver.SpecChecker).
func (d *Definition) validate(r driver.Runner, names string) error {
	if !nameRe.MatchString(d.Name) {
		return fmt.Errorf("guest name %q: want 1-32 of a-z, 0-9, '-', starting with a letter: %w", d.Name, ErrInvalid)
	}
	if r == nil {
		return fmt.Errorf("guest %s: driver %q: want %s: %w", d.Name, d.Driver, names, ErrInvalid)
	}
	switch d.Layout {
	case driver.Scatter:
		if d.Disk == "" {
			return fmt.Errorf("guest %s: a scatter guest needs disk = a tinycolinux disk (image.build): %w", d.Name, ErrInvalid)
		}
	case driver.Frugal:
		if d.Core == "" {
			return fmt.Errorf("guest %s: a frugal guest needs core = the Tiny Core initramfs (corepure64.gz on x86_64, core.gz on x86), or a tcz mirror to take it from: %w", d.Name, ErrInvalid)
		}
	default:
		return fmt.Errorf("guest %s: layout %q: want scatter or frugal: %w", d.Name, d.Layout, ErrInvalid)
	}
	if d.Base != "" && d.Layout != driver.Scatter {
		return fmt.Errorf("guest %s: base (a shared read-only root under the guest's own layer) is for scatter guests: remove base: %w", d.Name, ErrInvalid)
	}
	if d.MemBytes < 16<<20 {
		return fmt.Errorf("guest %s: mem %d bytes: at least 16M: %w", d.Name, d.MemBytes, ErrInvalid)
	}
	if d.CPUs < 0 || d.CPUs > 64 {
		return fmt.Errorf("guest %s: cpus %v: want 0 (no limit) to 64: %w", d.Name, d.CPUs, ErrInvalid)
	}
	switch d.Net {
	case "", "user", "none", "bridge":
	default:
		return fmt.Errorf("guest %s: net %q: want bridge, user or none: %w", d.Name, d.Net, ErrInvalid)
	}
	if d.AutostartDelay < 0 || d.AutostartDelay > time.Hour {
		return fmt.Errorf("guest %s: autostart_delay %v: want 0 to 1h: %w", d.Name, d.AutostartDelay, ErrInvalid)
	}
	if (d.AutostartPriority != 0 || d.AutostartDelay != 0) && !d.Autostart {
		return fmt.Errorf("guest %s: autostart_priority and autostart_delay order the guests `tinyfarm boot` starts: set autostart = true too: %w", d.Name, ErrInvalid)
	}
	for _, f := range d.Forwards {
		if f.HostPort < 1 || f.HostPort > 65535 || f.GuestPort < 1 || f.GuestPort > 65535 {
			return fmt.Errorf("guest %s: forward %d -> %d: ports must be 1-65535: %w", d.Name, f.HostPort, f.GuestPort, ErrInvalid)
		}
	}
	if sc, ok := r.(driver.SpecChecker); ok {
		if err := sc.CheckSpec(d.baseSpec()); err != nil {
			return fmt.Errorf("guest %s: %w: %w", d.Name, err, ErrInvalid)
		}
	}
	return nil
}

// DefaultMem is a guest's memory when its definition leaves it unset.
const DefaultMem = 128 << 20

// FillDefaults fills what a definition leaves unset, as colinux.guest{}
// does, so a Go caller gets the guest a playbook would: the driver chosen
// for this host (DefaultDriver among the farm's drivers), mem DefaultMem,
// and, with userNS nil, user namespaces where the driver and the platform
// allow them (driver.Defaulter). Define fills the first two itself; a
// bool cannot say "unset", so user namespaces are this function's.
func (f *Farm) FillDefaults(d *Definition, userNS *bool) {
	if d.Driver == "" {
		have := f.opts.Drivers
		if len(have) == 0 {
			have = nil
		}
		d.Driver = pickDriver(have)
	}
	if d.MemBytes == 0 {
		d.MemBytes = DefaultMem
	}
	if userNS != nil {
		d.UserNS = *userNS
	} else if df, ok := f.Backend(d.Driver).(driver.Defaulter); ok {
		d.UserNS = df.Defaults(d.Layout).UserNS
	}
}

// Options configure a Farm. Zero fields take the defaults noted.
type Options struct {
	// Drivers by name. Default: none (a Farm without drivers can only
	// define guests).
	Drivers map[string]driver.Runner
	// Bridge is the farm bridge for bridged guests. Default: the state
	// dir's network.json (SetNetwork), else DefaultBridge.
	Bridge string
	// Subnet is the farm network; .1 is the host. Default: the state
	// dir's network.json, else DefaultSubnet.
	Subnet string
	// Reserve is host memory kept for the host itself. Default 128 MiB.
	Reserve int64
	// MemTotal overrides the host's memory (tests). Default: /proc/meminfo.
	MemTotal int64
}

// Farm is the set of guests in one state directory.
type Farm struct {
	dir    string // <state>/guests
	opts   Options
	netErr error // a network.json that could not be read: Define reports it

	connMu sync.Mutex
	conns  map[string]*ssh.Client // one SSH connection per guest, reused
}

// New opens the farm in stateDir (created on demand).
func New(stateDir string, opts Options) *Farm {
	if abs, err := filepath.Abs(stateDir); err == nil {
		stateDir = abs // runtime paths and the bridge's owner mark outlive this cwd
	}
	saved, _, netErr := readNetwork(stateDir)
	if opts.Bridge == "" {
		opts.Bridge = cmp.Or(saved.Bridge, DefaultBridge)
	}
	if opts.Subnet == "" {
		opts.Subnet = cmp.Or(saved.Subnet, DefaultSubnet)
	}
	if opts.Reserve == 0 {
		opts.Reserve = 128 << 20
	}
	return &Farm{dir: filepath.Join(stateDir, "guests"), opts: opts, netErr: netErr, conns: map[string]*ssh.Client{}}
}

// GuestDir is guest name's directory in the state dir.
func (f *Farm) GuestDir(name string) string { return filepath.Join(f.dir, name) }

// Lock serialises changes to definitions across tinyfarm processes.
func (f *Farm) Lock() (func(), error) {
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return nil, fmt.Errorf("farm %s: %w", f.dir, err)
	}
	return lockfile.Lock(filepath.Join(f.dir, ".lock"))
}

// Get loads a definition; a missing guest is ErrNotFound.
func (f *Farm) Get(name string) (*Definition, error) {
	b, err := os.ReadFile(filepath.Join(f.GuestDir(name), "guest.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("guest %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", name, err)
	}
	var d Definition
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("guest %s: guest.json: %w", name, err)
	}
	return &d, nil
}

// List returns every defined guest, by name.
func (f *Farm) List() ([]*Definition, error) {
	ents, err := os.ReadDir(f.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("farm %s: %w", f.dir, err)
	}
	var out []*Definition
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		d, err := f.Get(e.Name())
		if err != nil {
			continue // a half-removed guest directory: not a guest
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Spec renders a definition into what a driver runs.
func (f *Farm) Spec(d *Definition) driver.Spec {
	s := d.baseSpec()
	s.Dir = filepath.Join(f.GuestDir(d.Name), "run")
	s.Net.Gateway, s.Net.Bridge, s.Net.Leases = f.Gateway(), f.opts.Bridge, f.dir
	s.Net.Subnet, s.Net.KeptGateway = f.opts.Subnet, d.Gateway
	return s
}

// baseSpec is the spec of d without what the farm adds (its runtime
// directory and network): what a driver checks (driver.SpecChecker).
func (d *Definition) baseSpec() driver.Spec {
	s := driver.Spec{
		Name: d.Name, MemBytes: d.MemBytes, CPUs: d.CPUs, Kernel: d.Kernel, Initrds: d.Initrds,
		Bootcodes: d.Bootcodes, Layout: d.Layout, Core: d.Core, Base: d.Base, Shares: d.Shares, Accel: d.Accel, UserNS: d.UserNS, NetRaw: d.NetRaw,
		Net: driver.Net{Mode: d.Net, IP: d.IP, MAC: d.MAC, Forwards: d.Forwards},
	}
	for _, x := range d.diskPaths() {
		s.Disks = append(s.Disks, driver.Disk{Path: x, ReadOnly: d.DiskRO})
	}
	return s
}

// Runner is the driver that runs d here; unsupported when this farm has
// none by its name.
func (f *Farm) Runner(d *Definition) (driver.Runner, error) {
	r, ok := f.opts.Drivers[d.Driver]
	if !ok {
		return nil, driver.Unsupported(d.Driver, "running guests", "this tinyfarm has no "+d.Driver+" driver here")
	}
	return r, nil
}

// Guest returns the handle of a running or stopped guest.
func (f *Farm) Guest(ctx context.Context, name string) (*Guest, error) {
	d, err := f.Get(name)
	if err != nil {
		return nil, err
	}
	return &Guest{farm: f, Def: d}, nil
}

// Close drops the farm's cached SSH connections.
func (f *Farm) Close() {
	f.connMu.Lock()
	defer f.connMu.Unlock()
	for name, c := range f.conns {
		c.Close()
		delete(f.conns, name)
	}
}

// StateDir is the state directory the farm lives in.
func (f *Farm) StateDir() string { return filepath.Dir(f.dir) }
