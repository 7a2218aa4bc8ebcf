package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// KeptSubnet is the subnet a host's farm must keep in the cluster: its
// own, when bridged guests are defined on it (their addresses come from
// it); none (the zero Prefix) when the farm is free to take any.
func KeptSubnet(fm *farm.Farm) (netip.Prefix, []string, error) {
	defs, err := fm.List()
	if err != nil {
		return netip.Prefix{}, nil, err
	}
	var on []string
	for _, d := range defs {
		if d.Net == "bridge" {
			on = append(on, d.Name)
		}
	}
	if len(on) == 0 {
		return netip.Prefix{}, nil, nil
	}
	sort.Strings(on)
	p, err := netip.ParsePrefix(fm.Network().Subnet)
	if err != nil {
		return netip.Prefix{}, nil, fmt.Errorf("farm subnet %q: %w", fm.Network().Subnet, err)
	}
	return p.Masked(), on, nil
}

// GiveFarmSubnet gives host's farm (fm, this host's) its cluster subnet
// and moves the farm network to it (farm.SetNetwork, what
// colinux.network does), so no two hosts' bridges overlap: the farm's own
// subnet when bridged guests live on it (ClaimHostSubnet), else one of the
// cluster range (HostSubnet). It refuses, naming the guests and the fix,
// when those guests' subnet overlaps another host's.
func GiveFarmSubnet(ctx context.Context, c *Client, host string, fm *farm.Farm) (netip.Prefix, bool, error) {
	keep, guests, err := KeptSubnet(fm)
	if err != nil {
		return netip.Prefix{}, false, err
	}
	var p netip.Prefix
	if keep.IsValid() {
		p, err = c.ClaimHostSubnet(ctx, host, keep)
		if errors.Is(err, ErrTaken) {
			return netip.Prefix{}, false, KeptSubnetError(host, fm, guests, err)
		}
	} else {
		p, err = c.HostSubnet(ctx, host)
	}
	if err != nil {
		return netip.Prefix{}, false, err
	}
	res, err := fm.SetNetwork(farm.Network{Subnet: p.String()}, farm.ChangeOptions{})
	if err != nil {
		return p, false, fmt.Errorf("host %s: farm network to its cluster subnet %s: %w", host, p, err)
	}
	return p, res.Changed, nil
}

// KeptSubnetError is the refusal of a farm whose guests' subnet the
// cluster cannot give this host: it names them and the ways out.
func KeptSubnetError(host string, fm *farm.Farm, guests []string, err error) error {
	n := fm.Network()
	return fmt.Errorf("host %s: its farm's guests %s are on %s %s, which it cannot keep in the cluster: %w; destroy them first (tinyfarm guests lists them), or run this host's cluster from another state dir (TINYFARM_HOME)",
		host, strings.Join(guests, ", "), n.Bridge, n.Subnet, err)
}
