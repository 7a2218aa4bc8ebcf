package farm

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

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
