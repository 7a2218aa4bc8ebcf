package cluster

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// PlaceSpec asks for a host for a new guest.
type PlaceSpec struct {
	// Mem is the guest's memory in bytes. Required.
	Mem int64
	// Driver is the guest driver the host must have ("ns", "qemu").
	// Default: any.
	Driver string
	// Strategy is "spread" (the host with the most free memory; the
	// default) or "pack" (the fullest host that still fits).
	Strategy string
}

// Used is the memory a placement counts as taken on a host: what the host
// reports as committed to its guests, or what the cluster's claims on it
// add up to when that is more (claimed guests not started yet).
func used(h Host, claimed int64) int64 { return max(h.Committed, claimed) }

// Choose picks a host for spec among hosts, given the cluster's guest
// claims. Only up hosts with the driver and room are candidates; when none
// fits, the error lists each host's numbers.
func Choose(hosts []Host, guests []GuestRecord, spec PlaceSpec) (Host, error) {
	switch spec.Strategy {
	case "", "spread", "pack":
	default:
		return Host{}, fmt.Errorf("cluster place: strategy %q: want \"spread\" or \"pack\": %w", spec.Strategy, ErrInvalid)
	}
	if spec.Mem <= 0 {
		return Host{}, fmt.Errorf("cluster place: mem %d: want the guest's memory (mem = \"128M\"): %w", spec.Mem, ErrInvalid)
	}
	claimed := map[string]int64{}
	for _, g := range guests {
		claimed[g.Host] += g.Mem
	}
	type cand struct {
		h    Host
		free int64
	}
	var fits []cand
	var why []string
	for _, h := range hosts {
		free := h.Mem - used(h, claimed[h.Name])
		switch {
		case h.State != HostUp:
			why = append(why, fmt.Sprintf("%s is %s", h.Name, h.State))
		case h.Draining != "":
			why = append(why, fmt.Sprintf("%s is %s", h.Name, h.Draining))
		case spec.Driver != "" && !slices.Contains(h.Drivers, spec.Driver):
			why = append(why, fmt.Sprintf("%s has no %s driver (it has %s)", h.Name, spec.Driver, strings.Join(h.Drivers, ", ")))
		case free < spec.Mem:
			why = append(why, fmt.Sprintf("%s has %s free of %s", h.Name, mib(free), mib(h.Mem)))
		default:
			fits = append(fits, cand{h, free})
		}
	}
	if len(fits) == 0 {
		if len(hosts) == 0 {
			why = append(why, "the cluster has no hosts")
		}
		d := ""
		if spec.Driver != "" {
			d = " with driver " + spec.Driver
		}
		return Host{}, fmt.Errorf("cluster place: no host has %s free%s: %s: %w", mib(spec.Mem), d, strings.Join(why, "; "), ErrNoRoom)
	}
	sort.SliceStable(fits, func(i, j int) bool {
		if fits[i].free != fits[j].free {
			if spec.Strategy == "pack" {
				return fits[i].free < fits[j].free
			}
			return fits[i].free > fits[j].free
		}
		return fits[i].h.Name < fits[j].h.Name
	})
	return fits[0].h, nil
}

func mib(b int64) string { return fmt.Sprintf("%d MiB", b>>20) }

// Place picks a host for spec by the hosts' current facts and claims.
func (c *Client) Place(ctx context.Context, spec PlaceSpec) (Host, error) {
	hosts, err := c.Hosts(ctx)
	if err != nil {
		return Host{}, err
	}
	guests, err := c.Guests(ctx)
	if err != nil {
		return Host{}, err
	}
	return Choose(hosts, guests, spec)
}
