package farm

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
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

// DefineResult says what Define did or would do.
type DefineResult struct {
	Changed bool
	Created bool
	Diff    string // unified diff of guest.json
	Def     *Definition
	// DefineLive only: what was applied to the running guest in place
	// ("mem 96M -> 192M"), and what differs from what it runs with that
	// only a restart applies (field names).
	Live          []string
	RestartNeeded []string
}

// ChangeOptions are the options of a change to the farm's state that has
// no options of its own (Define, SetNetwork, Unshare).
type ChangeOptions struct {
	// Check computes the same result and writes nothing (check mode).
	Check bool
}

// Define creates or updates a guest definition. Fields tinyfarm assigns
// (IP, MAC) are kept from an earlier definition, or allocated. With
// o.Check nothing is written.
func (f *Farm) Define(d Definition, o ChangeOptions) (DefineResult, error) {
	if f.netErr != nil {
		return DefineResult{}, fmt.Errorf("guest %s: %w (fix the file or remove it to use %s %s)", d.Name, f.netErr, DefaultBridge, DefaultSubnet)
	}
	if d.Driver == "" || d.MemBytes == 0 {
		f.FillDefaults(&d, &d.UserNS)
	}
	if d.Layout == "" {
		d.Layout = driver.Scatter
	}
	if d.User == "" {
		d.User = "tc"
	}
	if d.Net == "" {
		d.Net = "user"
		if df, ok := f.Backend(d.Driver).(driver.Defaulter); ok && df.Defaults(d.Layout).Net != "" {
			d.Net = df.Defaults(d.Layout).Net
		}
	}
	if d.Base != "" && d.Disk == "" {
		// The guest's layer: made at its first start, its writes only.
		d.Disk, d.DiskPlaced = filepath.Join(f.StateDir(), "disks", d.Name+".layer.img"), true
	}
	for _, p := range []*string{&d.Disk, &d.Core, &d.Kernel, &d.Base} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return DefineResult{}, err
			}
			*p = abs
		}
	}
	if err := f.Validate(&d); err != nil {
		return DefineResult{}, err
	}
	if !o.Check { // in check mode image.build has not made the disk yet
		if err := d.disksExist(); err != nil {
			return DefineResult{}, err
		}
	}
	unlock, err := f.Lock()
	if err != nil {
		return DefineResult{}, err
	}
	defer unlock()
	old, err := f.Get(d.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return DefineResult{}, err
	}
	if d.IP == "" && old != nil {
		d.IP = old.IP
	}
	if d.MAC == "" && old != nil {
		d.MAC = old.MAC
	}
	if d.HostKey == "" && old != nil {
		d.HostKey = old.HostKey
	}
	if d.Net == "bridge" && d.IP == "" {
		if d.IP, err = f.allocIP(d.Name); err != nil {
			return DefineResult{}, err
		}
	}
	if d.MAC == "" {
		h := sha256.Sum256([]byte(d.Name))
		d.MAC = fmt.Sprintf("02:74:66:%02x:%02x:%02x", h[0], h[1], h[2])
	}
	if d.Net == "user" && !hasForward(d.Forwards, 22) {
		// A guest on user-mode networking is reached through a host port
		// forward: give it one for SSH, kept like its IP.
		if old != nil && hasForward(old.Forwards, 22) {
			for _, fw := range old.Forwards {
				if fw.GuestPort == 22 {
					d.Forwards = append(d.Forwards, fw)
				}
			}
		} else {
			port, err := f.freeHostPort(d.Name, 2222)
			if err != nil {
				return DefineResult{}, err
			}
			d.Forwards = append(d.Forwards, driver.Forward{Proto: "tcp", HostPort: port, GuestPort: 22})
		}
	}
	if err := f.checkConflicts(&d); err != nil {
		return DefineResult{}, err
	}
	nb, _ := json.MarshalIndent(&d, "", "  ")
	nb = append(nb, '\n')
	var ob []byte
	if old != nil {
		ob, _ = json.MarshalIndent(old, "", "  ")
		ob = append(ob, '\n')
	}
	res := DefineResult{Def: &d, Created: old == nil, Diff: fsutil.Diff("guest "+d.Name, ob, nb)}
	res.Changed = res.Diff != ""
	if !res.Changed || o.Check {
		return res, nil
	}
	if err := os.MkdirAll(f.GuestDir(d.Name), 0o700); err != nil {
		return res, fmt.Errorf("guest %s: %w", d.Name, err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(f.GuestDir(d.Name), "guest.json"), nb, 0o600); err != nil {
		return res, fmt.Errorf("guest %s: %w", d.Name, err)
	}
	return res, nil
}

// disksExist refuses a definition whose disk images are missing, before
// anything (an IP) is allocated for it: it could only fail at start.
func (d *Definition) disksExist() error {
	paths := d.diskPaths()
	if d.Base != "" {
		// The base must exist; the guest's layer (its disk) may not yet:
		// its first start makes it.
		paths = append([]string{d.Base}, d.Disks...)
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			why := "does not exist"
			if !errors.Is(err, fs.ErrNotExist) {
				why = err.Error()
			}
			return fmt.Errorf("guest %s: disk %s %s: build it first (image.build{path = %q, ...}) or fix the path: %w", d.Name, p, why, p, ErrInvalid)
		}
	}
	return nil
}

// diskPaths are the definition's disk images, the main one first.
func (d *Definition) diskPaths() []string {
	var out []string
	if d.Disk != "" {
		out = append(out, d.Disk)
	}
	return append(out, d.Disks...)
}

// sameDisk reports whether two disk paths are one image: the same path,
// or (links, bind mounts) the same file.
func sameDisk(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// sharedDisk is the first disk of d that guest o names too, or "".
// Guests that both attach their disks read-only (disk_ro) may share.
func sharedDisk(d, o *Definition) string {
	if d.DiskRO && o.DiskRO {
		return ""
	}
	for _, a := range d.diskPaths() {
		for _, b := range o.diskPaths() {
			if sameDisk(a, b) {
				return a
			}
		}
	}
	return ""
}

// checkConflicts refuses an IP or a forwarded host port that another guest
// already has, and a disk another guest names: two guests mounting one
// ext file system read-write corrupt it, and destroy{disk = true} of
// either would delete the other's disk.
func (f *Farm) checkConflicts(d *Definition) error {
	all, err := f.List()
	if err != nil {
		return err
	}
	for _, o := range all {
		if o.Name == d.Name {
			continue
		}
		if p := sharedDisk(d, o); p != "" {
			return fmt.Errorf("guest %s: disk %s is guest %s's already (one ext file system mounted by two guests gets corrupted): give %s a disk of its own (image.build, or %s:clone{}), or set disk_ro = true on both to share it read-only: %w",
				d.Name, p, o.Name, d.Name, o.Name, ErrInvalid)
		}
		if d.IP != "" && o.IP == d.IP {
			return fmt.Errorf("guest %s: ip %s is already guest %s's: %w", d.Name, d.IP, o.Name, ErrInvalid)
		}
		for _, a := range d.Forwards {
			for _, b := range o.Forwards {
				if a.HostPort == b.HostPort && strings.EqualFold(a.Proto, b.Proto) {
					return fmt.Errorf("guest %s: host port %d is already forwarded to guest %s: %w", d.Name, a.HostPort, o.Name, ErrInvalid)
				}
			}
		}
	}
	return nil
}

// BridgeIdentityProblem says why guest name cannot have the bridge
// address ip and MAC mac here ("" when it can): the address is outside
// this farm's subnet, or another guest has the address or the MAC.
func (f *Farm) BridgeIdentityProblem(name, ip, mac string) string {
	addr, _, err := net.ParseCIDR(ip)
	if err != nil {
		return fmt.Sprintf("address %q is not an address with a prefix", ip)
	}
	if _, subnet, err := net.ParseCIDR(f.opts.Subnet); err != nil || !subnet.Contains(addr) || ip != addr.String()+"/"+strings.SplitN(f.opts.Subnet, "/", 2)[1] {
		return fmt.Sprintf("%s is not an address of this farm's subnet %s", ip, f.opts.Subnet)
	}
	all, err := f.List()
	if err != nil {
		return err.Error()
	}
	for _, o := range all {
		if o.Name == name {
			continue
		}
		if o.IP == ip {
			return fmt.Sprintf("%s is guest %s's here", ip, o.Name)
		}
		if strings.EqualFold(o.MAC, mac) {
			return fmt.Sprintf("MAC %s is guest %s's here", mac, o.Name)
		}
	}
	return ""
}

func hasForward(fs []driver.Forward, guestPort int) bool {
	for _, f := range fs {
		if f.GuestPort == guestPort {
			return true
		}
	}
	return false
}

// freeHostPort is the lowest host port from start that no other guest
// forwards and nothing listens on now. Callers hold the lock.
func (f *Farm) freeHostPort(name string, start int) (int, error) {
	used := map[int]bool{}
	all, err := f.List()
	if err != nil {
		return 0, err
	}
	for _, o := range all {
		if o.Name == name {
			continue
		}
		for _, fw := range o.Forwards {
			used[fw.HostPort] = true
		}
	}
	for p := start; p < start+1000; p++ {
		if used[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free host port from %d for guest %s's SSH forward: set forward = {[PORT] = 22}", start, name)
}

// allocIP picks the lowest free address of the farm subnet (.2 up).
// Callers hold the lock.
func (f *Farm) allocIP(name string) (string, error) {
	_, ipnet, err := net.ParseCIDR(f.opts.Subnet)
	if err != nil {
		return "", fmt.Errorf("farm subnet %q: %w", f.opts.Subnet, err)
	}
	ones, bits := ipnet.Mask.Size()
	used := map[string]bool{}
	all, err := f.List()
	if err != nil {
		return "", err
	}
	for _, o := range all {
		if o.Name != name && o.IP != "" {
			ip, _, _ := net.ParseCIDR(o.IP)
			used[ip.String()] = true
		}
	}
	base := ipnet.IP.To4()
	size := 1 << (bits - ones)
	for i := 2; i < size-1; i++ {
		ip := make(net.IP, 4)
		copy(ip, base)
		n := uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3]) + uint32(i)
		ip = net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n)).To4()
		if !used[ip.String()] {
			return fmt.Sprintf("%s/%d", ip, ones), nil
		}
	}
	return "", fmt.Errorf("farm subnet %s is full: destroy a guest, or use a state dir whose farm has a larger subnet (colinux.network{subnet = ...})", f.opts.Subnet)
}

// Gateway is the host's address on the farm bridge (.1 of the subnet).
func (f *Farm) Gateway() string {
	_, ipnet, err := net.ParseCIDR(f.opts.Subnet)
	if err != nil {
		return ""
	}
	ip := ipnet.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String()
}

// Spec renders a definition into what a driver runs.
func (f *Farm) Spec(d *Definition) driver.Spec {
	s := d.baseSpec()
	s.Dir = filepath.Join(f.GuestDir(d.Name), "run")
	s.Net.Gateway, s.Net.Bridge, s.Net.Leases = f.Gateway(), f.opts.Bridge, f.dir
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

// HostInfo is what colinux.host() reports.
type HostInfo struct {
	MemTotal     int64    `lua:"mem"`
	MemAvailable int64    `lua:"mem_available"`
	CPUs         int      `lua:"cpus"`
	Drivers      []string `lua:"drivers"`
	Reserve      int64    `lua:"reserve"`
	Committed    int64    `lua:"committed"` // memory of running guests
}

// Host reports this machine's size and the drivers usable here.
func (f *Farm) Host(ctx context.Context) (HostInfo, error) {
	total, avail, err := meminfo()
	if err != nil {
		return HostInfo{}, err
	}
	if f.opts.MemTotal > 0 {
		total, avail = f.opts.MemTotal, f.opts.MemTotal
	}
	h := HostInfo{MemTotal: total, MemAvailable: avail, CPUs: runtime.NumCPU(), Reserve: f.opts.Reserve}
	for name := range f.opts.Drivers {
		h.Drivers = append(h.Drivers, name)
	}
	sort.Strings(h.Drivers)
	committed, err := f.committed(ctx, "")
	if err != nil {
		return h, err
	}
	h.Committed = committed
	return h, nil
}

// committed is the memory of running guests other than except.
func (f *Farm) committed(ctx context.Context, except string) (int64, error) {
	all, err := f.List()
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, d := range all {
		if d.Name == except {
			continue
		}
		g := &Guest{farm: f, Def: d}
		st, err := g.Status(ctx)
		if err == nil && (st.State == driver.Running || st.State == driver.Suspended) {
			sum += d.MemBytes
		}
	}
	return sum, nil
}

// PlanResult says how a host divides into guests.
type PlanResult struct {
	Guests      int   `lua:"guests"`      // how many guests of Granularity fit
	Granularity int64 `lua:"granularity"` // memory per guest (its quota)
	Usable      int64 `lua:"usable"`      // host memory minus reserve
	MemTotal    int64 `lua:"mem"`
	Reserve     int64 `lua:"reserve"`
	// Overhead is what a guest costs the host beyond its quota (for ns
	// guests: its monitor and the kernel objects of its namespaces,
	// measured by bench/density.sh).
	Overhead int64 `lua:"overhead"`
	PerGuest int64 `lua:"per_guest"` // min(Footprint, Granularity) + Overhead
}

// PlanOptions shape Farm.PlanWith. Zero fields take the defaults noted.
type PlanOptions struct {
	Granularity int64 // each guest's quota; default 128 MiB
	Reserve     int64 // host memory kept for the host; default the farm's
	Want        int   // > 0: fail with ErrOvercommit unless this many fit
	// Footprint is what a guest really holds of its quota (its processes'
	// memory and the page cache it keeps hot). Default: all of it, so the
	// plan never overcommits. bench/density.sh measured 1.6 MiB for an ns
	// guest running init, dropbear and nginx on a shared base.
	Footprint int64
	Driver    string // whose overhead to count; default DefaultDriver()
	MemTotal  int64  // memory to plan for; default the host's
}

// Plan divides the host's memory (minus reserve) into guests of
// granularity bytes each, counting each guest's overhead beyond its
// quota; want > 0 asks for that many and fails with ErrOvercommit when
// they do not fit.
func (f *Farm) Plan(ctx context.Context, granularity, reserve int64, want int) (PlanResult, error) {
	return f.PlanWith(ctx, PlanOptions{Granularity: granularity, Reserve: reserve, Want: want})
}

// PlanWith is Plan with every option.
func (f *Farm) PlanWith(ctx context.Context, o PlanOptions) (PlanResult, error) {
	h, err := f.Host(ctx)
	if err != nil {
		return PlanResult{}, err
	}
	if o.Granularity <= 0 {
		o.Granularity = 128 << 20
	}
	if o.Reserve <= 0 {
		o.Reserve = f.opts.Reserve
	}
	if o.MemTotal > 0 {
		h.MemTotal = o.MemTotal
	}
	if o.Driver == "" {
		o.Driver = DefaultDriver()
	}
	use := o.Granularity
	if o.Footprint > 0 && o.Footprint < use {
		use = o.Footprint
	}
	p := PlanResult{Granularity: o.Granularity, MemTotal: h.MemTotal, Reserve: o.Reserve, Usable: h.MemTotal - o.Reserve}
	if oh, ok := f.Backend(o.Driver).(driver.Overheader); ok {
		p.Overhead = oh.GuestOverhead()
	}
	p.PerGuest = use + p.Overhead
	if p.Usable > 0 {
		p.Guests = int(p.Usable / p.PerGuest)
	}
	if o.Want > 0 && o.Want > p.Guests {
		return p, fmt.Errorf("plan: %d guests of %s (%s each with overhead) do not fit: %s of memory minus %s reserve holds %d; use fewer or smaller guests: %w",
			o.Want, HumanSize(o.Granularity), HumanSize(p.PerGuest), HumanSize(h.MemTotal), HumanSize(o.Reserve), p.Guests, ErrOvercommit)
	}
	return p, nil
}

// HumanSize renders bytes as 128M / 1.5G.
func HumanSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%dG", n>>30)
	case n >= 1<<30:
		return fmt.Sprintf("%.1fG", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%dM", n>>20)
	}
	return strconv.FormatInt(n, 10)
}

func meminfo() (total, avail int64, err error) {
	fh, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, 0, fmt.Errorf("host memory: %w", err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = v << 10
		case "MemAvailable:":
			avail = v << 10
		}
	}
	return total, avail, sc.Err()
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
