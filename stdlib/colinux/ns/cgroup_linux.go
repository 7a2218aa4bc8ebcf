package ns

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cgroups is a guest's set of control groups, v1 (one directory per
// controller) or v2 (one unified directory). Paths are absolute.
type Cgroups struct {
	V2    bool              `json:"v2"`
	Paths map[string]string `json:"paths"` // controller -> dir (v2: "unified" -> dir)
}

// v1Controllers are the controllers a guest is placed in on cgroup v1.
var v1Controllers = []string{"memory", "cpu", "pids", "freezer"}

// cgroupRoot is /sys/fs/cgroup; tests point it at a fake tree.
type cgroupFS struct {
	root     string // "/sys/fs/cgroup"
	selfFile string // "/proc/self/cgroup"
}

func hostCgroupFS() cgroupFS { return cgroupFS{root: "/sys/fs/cgroup", selfFile: "/proc/self/cgroup"} }

// ownCgroups parses /proc/self/cgroup: controller -> path ("" key for v2).
func (c cgroupFS) ownCgroups() (map[string]string, error) {
	f, err := os.Open(c.selfFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			out[""] = parts[2]
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			out[ctrl] = parts[2]
		}
	}
	return out, sc.Err()
}

// isV2 reports a pure cgroup v2 host: /sys/fs/cgroup itself is cgroup2
// with controllers.
func (c cgroupFS) isV2() bool {
	_, err := os.Stat(filepath.Join(c.root, "cgroup.controllers"))
	return err == nil
}

// Limits are what a guest's cgroups enforce.
type Limits struct {
	MemBytes int64   // memory quota; 0 = none
	CPUs     float64 // CPU time in cores; 0 = none
	Pids     int     // process limit; 0 = none
}

// create makes the guest's cgroups, nested under the cgroups tinyfarm runs
// in (so a tinyfarm started under a systemd slice or a CI job's cgroup
// keeps its guests inside it), and applies the limits.
func (c cgroupFS) create(name string, lim Limits) (*Cgroups, error) {
	own, err := c.ownCgroups()
	if err != nil {
		return nil, fmt.Errorf("cgroups: read own cgroup: %w", err)
	}
	leaf := "tinyfarm-" + name
	if c.isV2() {
		parent, err := c.v2Parent(own[""])
		if err != nil {
			return nil, err
		}
		dir := filepath.Join(parent, leaf)
		cg := &Cgroups{V2: true, Paths: map[string]string{"unified": dir}}
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("cgroups: create %s: %w", dir, err)
		}
		if err := cg.apply(lim); err != nil {
			cg.remove()
			return nil, err
		}
		return cg, nil
	}
	cg := &Cgroups{Paths: map[string]string{}}
	for _, ctrl := range v1Controllers {
		base := filepath.Join(c.root, ctrl)
		if _, err := os.Stat(base); err != nil {
			if ctrl == "memory" || ctrl == "freezer" {
				cg.remove()
				return nil, fmt.Errorf("cgroups: controller %s not mounted at %s", ctrl, base)
			}
			continue
		}
		dir := filepath.Join(base, own[ctrl], leaf)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			cg.remove()
			return nil, fmt.Errorf("cgroups: create %s: %w", dir, err)
		}
		cg.Paths[ctrl] = dir
	}
	if err := cg.apply(lim); err != nil {
		cg.remove()
		return nil, err
	}
	return cg, nil
}

// v2Controllers are the controllers a guest's cgroup gets on cgroup v2
// (the freezer is built into every v2 cgroup). memory is required; cpu and
// pids, as on v1, only when the host offers them.
var v2Controllers = []string{"memory", "cpu", "pids"}

// v2Parent picks the cgroup (a directory) that guests' cgroups are made
// in, with the controllers enabled for its children. own is the cgroup
// tinyfarm runs in, as /proc/self/cgroup names it.
//
// cgroup v2's "no internal processes" rule lets only the root, and
// cgroups without processes, enable controllers for children. So:
//   - in the root cgroup (own "/" and not refused), guests nest under it;
//   - in a cgroup with processes (a systemd service or session scope:
//     tinyfarm itself is one), guests go beside it, in its parent (a slice);
//   - at the root of a cgroup namespace that holds processes (a container
//     with a private cgroup namespace, Docker's default on v2: there is no
//     parent to go to), every process there moves into the leaf "init"
//     first, as Docker-in-Docker's entrypoint does, and guests nest under
//     the namespace root.
func (c cgroupFS) v2Parent(own string) (string, error) {
	own = filepath.Clean("/" + own)
	dir := filepath.Join(c.root, own)
	err := enableV2Controllers(dir)
	if err == nil || !errors.Is(err, syscall.EBUSY) {
		return dir, err
	}
	if own != "/" {
		parent := filepath.Dir(dir)
		return parent, enableV2Controllers(parent)
	}
	leaf := filepath.Join(dir, "init")
	if err := os.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("cgroups: %s holds processes and is the root of this cgroup namespace; move them aside: %w", dir, err)
	}
	for try := 0; try < 10 && errors.Is(err, syscall.EBUSY); try++ {
		// New processes may appear while we move the others: try again.
		b, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if rerr != nil {
			return "", fmt.Errorf("cgroups: %w", rerr)
		}
		for _, pid := range strings.Fields(string(b)) {
			if werr := writeCg(leaf, "cgroup.procs", pid); werr != nil && !errors.Is(werr, syscall.ESRCH) {
				return "", fmt.Errorf("cgroups: %s holds processes and is the root of this cgroup namespace; move them aside: %w", dir, werr)
			}
		}
		err = enableV2Controllers(dir)
	}
	return dir, err
}

// enableV2Controllers enables v2Controllers for the children of the cgroup
// at dir, those dir offers and that are not enabled yet, one at a time (a
// write naming an unavailable controller would fail as a whole).
func enableV2Controllers(dir string) error {
	avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	on, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	has := func(list []byte, ctrl string) bool {
		for _, f := range strings.Fields(string(list)) {
			if f == ctrl {
				return true
			}
		}
		return false
	}
	for _, ctrl := range v2Controllers {
		if has(on, ctrl) {
			continue
		}
		if !has(avail, ctrl) {
			if ctrl == "memory" {
				return fmt.Errorf("cgroups: the memory controller is not available in %s (not enabled in its parent's cgroup.subtree_control)", dir)
			}
			continue
		}
		if err := writeCg(dir, "cgroup.subtree_control", "+"+ctrl); err != nil {
			return err
		}
	}
	return nil
}

func writeCg(dir, file, val string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0); err != nil {
		return fmt.Errorf("cgroups: set %s/%s=%s: %w", dir, file, val, err)
	}
	return nil
}

func (cg *Cgroups) apply(lim Limits) error {
	if cg.V2 {
		d := cg.Paths["unified"]
		if lim.MemBytes > 0 {
			if err := writeCg(d, "memory.max", strconv.FormatInt(lim.MemBytes, 10)); err != nil {
				return err
			}
			_ = writeCg(d, "memory.swap.max", "0") // absent without swap accounting
		}
		// cpu and pids are optional, as on v1: without the controller
		// (not offered by the parent) its files are missing.
		if lim.CPUs > 0 && exists(filepath.Join(d, "cpu.max")) {
			if err := writeCg(d, "cpu.max", fmt.Sprintf("%d 100000", int64(lim.CPUs*100000))); err != nil {
				return err
			}
		}
		if lim.Pids > 0 && exists(filepath.Join(d, "pids.max")) {
			if err := writeCg(d, "pids.max", strconv.Itoa(lim.Pids)); err != nil {
				return err
			}
		}
		return nil
	}
	if d := cg.Paths["memory"]; d != "" && lim.MemBytes > 0 {
		v := strconv.FormatInt(lim.MemBytes, 10)
		// With swap accounting, also cap memory+swap, or the guest swaps
		// past its quota instead of being OOM-killed inside it. The
		// kernel keeps memsw >= the memory limit at every step, so a
		// raise (a live redefinition) writes memsw first.
		memsw := exists(filepath.Join(d, "memory.memsw.limit_in_bytes"))
		if memsw {
			_ = writeCg(d, "memory.memsw.limit_in_bytes", v) // fails (harmlessly) when lowering
		}
		if err := writeCg(d, "memory.limit_in_bytes", v); err != nil {
			return err
		}
		if memsw {
			_ = writeCg(d, "memory.memsw.limit_in_bytes", v)
		}
	}
	if d := cg.Paths["cpu"]; d != "" && lim.CPUs > 0 {
		if err := writeCg(d, "cpu.cfs_period_us", "100000"); err != nil {
			return err
		}
		if err := writeCg(d, "cpu.cfs_quota_us", strconv.FormatInt(int64(lim.CPUs*100000), 10)); err != nil {
			return err
		}
	}
	if d := cg.Paths["pids"]; d != "" && lim.Pids > 0 {
		if err := writeCg(d, "pids.max", strconv.Itoa(lim.Pids)); err != nil {
			return err
		}
	}
	return nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// join moves pid into every cgroup of the set.
func (cg *Cgroups) join(pid int) error {
	for ctrl, d := range cg.Paths {
		if err := writeCg(d, "cgroup.procs", strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("join %s: %w", ctrl, err)
		}
	}
	return nil
}

// freeze freezes or thaws every process of the guest and waits until the
// kernel reports the new state.
func (cg *Cgroups) freeze(on bool) error {
	var dir, file, val, want string
	if cg.V2 {
		dir, file, val, want = cg.Paths["unified"], "cgroup.freeze", "0", "frozen 0"
		if on {
			val, want = "1", "frozen 1"
		}
	} else {
		dir, file, val, want = cg.Paths["freezer"], "freezer.state", "THAWED", "THAWED"
		if on {
			val, want = "FROZEN", "FROZEN"
		}
	}
	if dir == "" {
		return fmt.Errorf("cgroups: no freezer")
	}
	if err := writeCg(dir, file, val); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := cg.frozenState()
		if err == nil && st == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: %s did not reach %s (state %q)", dir, val, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// frozenState is "FROZEN"/"THAWED"/"FREEZING" (v1) or "frozen 0|1" (v2).
func (cg *Cgroups) frozenState() (string, error) {
	if cg.V2 {
		b, err := os.ReadFile(filepath.Join(cg.Paths["unified"], "cgroup.events"))
		if err != nil {
			return "", err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "frozen ") {
				return l, nil
			}
		}
		return "", nil
	}
	b, err := os.ReadFile(filepath.Join(cg.Paths["freezer"], "freezer.state"))
	return strings.TrimSpace(string(b)), err
}

// Frozen reports whether the guest is suspended.
func (cg *Cgroups) Frozen() bool {
	st, _ := cg.frozenState()
	return st == "FROZEN" || st == "frozen 1"
}

// OOMKills is how many times the kernel OOM-killed inside the guest.
func (cg *Cgroups) OOMKills() int {
	file := filepath.Join(cg.Paths["memory"], "memory.oom_control")
	if cg.V2 {
		file = filepath.Join(cg.Paths["unified"], "memory.events")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	return 0
}

// remove deletes the cgroups once they are empty (they are, after the
// guest's PID namespace died: its init's death kills every member).
func (cg *Cgroups) remove() error {
	var errs []error
	for _, d := range cg.Paths {
		var err error
		for i := 0; i < 100; i++ {
			err = os.Remove(d)
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond) // members still exiting
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("cgroups: remove %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
