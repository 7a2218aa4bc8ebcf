package farm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
)

// Default farm network: a host bridge and the subnet behind it.
const (
	DefaultBridge = "tfbr0"
	DefaultSubnet = "10.77.0.0/24"
)

// networkFile keeps a state dir's farm network, so every tinyfarm that
// opens the state dir (playbooks, the REPL, `tinyfarm guests`, the far
// side of a migration) puts guests on the same bridge and subnet.
const networkFile = "network.json"

// Network is where a farm's bridged guests live: the host bridge and the
// subnet behind it (.1 is the host, guests from .2).
type Network struct {
	Bridge string `json:"bridge"`
	Subnet string `json:"subnet"`
}

// NetworkResult says what SetNetwork did or would do.
type NetworkResult struct {
	Network Network
	Changed bool
	Diff    string // of network.json
}

var bridgeRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,14}$`)

func (n Network) validate() error {
	if !bridgeRe.MatchString(n.Bridge) {
		return fmt.Errorf("bridge %q: want 1-15 letters, digits, '-' or '_', starting with a letter (a Linux interface name): %w", n.Bridge, ErrInvalid)
	}
	ip, ipnet, err := net.ParseCIDR(n.Subnet)
	if err == nil && ip.To4() == nil {
		return fmt.Errorf("subnet %s: IPv6 farm networks are not supported: the farm bridge carries IPv4 only and drops guests' IPv6 (README, Isolation); give an IPv4 network such as 10.77.0.0/24: %w", n.Subnet, ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("subnet %q: want an IPv4 network such as 10.77.0.0/24: %w", n.Subnet, ErrInvalid)
	}
	if ones, _ := ipnet.Mask.Size(); ones < 16 || ones > 29 {
		return fmt.Errorf("subnet %s: want a prefix from /16 to /29 (a /29 holds 5 guests): %w", n.Subnet, ErrInvalid)
	}
	if !ip.Equal(ipnet.IP) {
		return fmt.Errorf("subnet %s: host bits set; did you mean %s? %w", n.Subnet, ipnet, ErrInvalid)
	}
	if !ip.IsPrivate() {
		return fmt.Errorf("subnet %s is not a private range (10/8, 172.16/12, 192.168/16): %w", n.Subnet, ErrInvalid)
	}
	return nil
}

// readNetwork is the state dir's saved network, or ok=false.
func readNetwork(stateDir string) (n Network, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(stateDir, networkFile))
	if errors.Is(err, fs.ErrNotExist) {
		return Network{}, false, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &n)
	}
	if err == nil {
		err = n.validate()
	}
	if err != nil {
		return Network{}, false, fmt.Errorf("farm network %s: %w", filepath.Join(stateDir, networkFile), err)
	}
	return n, true, nil
}

// Network is the farm's bridge and subnet.
func (f *Farm) Network() Network { return Network{Bridge: f.opts.Bridge, Subnet: f.opts.Subnet} }

// SetNetwork moves the farm to another bridge and subnet (kept in the
// state dir). The network cannot change under defined bridged guests
// (their addresses come from it); a subnet that overlaps an address the
// host already has on another interface (another farm, the LAN) is
// refused, or guests would be unreachable or shadow it.
func (f *Farm) SetNetwork(n Network, o ChangeOptions) (NetworkResult, error) {
	fail := func(err error) (NetworkResult, error) {
		return NetworkResult{}, fmt.Errorf("farm network %s %s: %w", n.Bridge, n.Subnet, err)
	}
	if n.Bridge == "" {
		n.Bridge = f.opts.Bridge
	}
	if n.Subnet == "" {
		n.Subnet = f.opts.Subnet
	}
	if err := n.validate(); err != nil {
		return fail(err)
	}
	unlock, err := f.Lock()
	if err != nil {
		return fail(err)
	}
	defer unlock()
	old := f.Network()
	path := filepath.Join(filepath.Dir(f.dir), networkFile)
	prev, _ := os.ReadFile(path)
	b, _ := json.MarshalIndent(n, "", "  ")
	b = append(b, '\n')
	res := NetworkResult{Network: n, Changed: string(prev) != string(b)}
	if !res.Changed {
		return res, nil
	}
	res.Diff = fsutil.Diff(networkFile, prev, b)
	if n != old {
		all, err := f.List()
		if err != nil {
			return fail(err)
		}
		var on []string
		for _, d := range all {
			if d.Net == "bridge" {
				on = append(on, d.Name)
			}
		}
		if len(on) > 0 {
			sort.Strings(on)
			return fail(fmt.Errorf("guests %s are on %s %s: destroy them first, or use another state dir: %w",
				strings.Join(on, ", "), old.Bridge, old.Subnet, ErrExists))
		}
		if err := subnetFree(n); err != nil {
			return fail(err)
		}
	}
	if o.Check {
		return res, nil
	}
	if err := fsutil.WriteFileAtomic(path, b, 0o644); err != nil {
		return fail(err)
	}
	f.opts.Bridge, f.opts.Subnet = n.Bridge, n.Subnet
	return res, nil
}

// subnetFree checks that no host interface but the farm's own bridge has
// an address inside n's subnet, nor a network containing it.
func subnetFree(n Network) error {
	_, want, _ := net.ParseCIDR(n.Subnet)
	ifs, err := net.Interfaces()
	if err != nil {
		return nil // no view of the host's interfaces (not Linux?): nothing to compare
	}
	for _, ifc := range ifs {
		if ifc.Name == n.Bridge {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			if want.Contains(ipn.IP) || ipn.Contains(want.IP) {
				return fmt.Errorf("subnet %s overlaps %s on %s (another farm's bridge or the host's own network): pick another subnet: %w",
					n.Subnet, ipn, ifc.Name, ErrExists)
			}
		}
	}
	return nil
}

// RemoveNetwork takes the farm's network off the host: its bridge, the
// host's guard chains for it and its port filters (network.json stays, so
// the farm keeps its bridge name and subnet for the next guest it
// starts). Refused while guests run on the bridge; nothing to remove
// reports no change.
func (f *Farm) RemoveNetwork(o ChangeOptions) (NetworkResult, error) {
	n := f.Network()
	res := NetworkResult{Network: n}
	if o.Check {
		res.Changed = farmnet.LinkExists(n.Bridge)
		return res, nil
	}
	changed, err := farmnet.RemoveFarmBridge(n.Bridge, f.dir)
	if err != nil {
		return res, fmt.Errorf("farm network %s %s: remove: %w", n.Bridge, n.Subnet, err)
	}
	res.Changed = changed
	return res, nil
}
