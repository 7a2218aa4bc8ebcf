package farm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/target/cmdtarget"
)

// Guest is a defined guest and the handle to drive it.
type Guest struct {
	farm *Farm
	Def  *Definition
}

// Farm is the farm the guest belongs to.
func (g *Guest) Farm() *Farm { return g.farm }

// GuestOf is the handle of guest d in this farm, for an operation that
// holds a definition it has just written or read (package ops).
func (f *Farm) GuestOf(d *Definition) *Guest { return &Guest{farm: f, Def: d} }

// GuestName lets other modules (proxy) take a guest where a name is wanted.
func (g *Guest) GuestName() string { return g.Def.Name }

// Spec is what the guest's driver runs.
func (g *Guest) Spec() driver.Spec { return g.farm.Spec(g.Def) }

// Handle re-adopts the guest through its driver.
func (g *Guest) Handle(ctx context.Context) (driver.Guest, error) {
	r, err := g.farm.Runner(g.Def)
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	h, err := r.Attach(ctx, g.Spec())
	if err != nil {
		return nil, fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	return h, nil
}

// Status reports running / suspended / stopped / crashed (with a reason).
func (g *Guest) Status(ctx context.Context) (driver.Status, error) {
	h, err := g.Handle(ctx)
	if err != nil {
		return driver.Status{}, err
	}
	return h.Status(ctx)
}

// Running is Status reduced to "its processes exist".
func (g *Guest) Running(ctx context.Context) bool {
	st, err := g.Status(ctx)
	return err == nil && (st.State == driver.Running || st.State == driver.Suspended)
}

// Start boots the guest unless it runs already; it refuses to overcommit
// host memory. It reports whether it started anything.
func (g *Guest) Start(ctx context.Context) (bool, error) {
	if g.Running(ctx) {
		return false, nil
	}
	unlock, err := g.farm.Lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	if err := g.CheckMemory(ctx); err != nil {
		return false, err
	}
	r, err := g.farm.Runner(g.Def)
	if err != nil {
		return false, fmt.Errorf("guest %s: start: %w", g.Def.Name, err)
	}
	if err := g.checkDiskFree(ctx); err != nil {
		return false, err
	}
	if _, err := r.Start(ctx, g.Spec()); err != nil {
		return false, fmt.Errorf("guest %s: start: %w", g.Def.Name, err)
	}
	return true, g.writeStarted(g.Def)
}

// CheckMemory refuses a start that would commit more host memory than
// the host has (less its reserve), naming the numbers.
func (g *Guest) CheckMemory(ctx context.Context) error {
	h, err := g.farm.Host(ctx)
	if err != nil {
		return err
	}
	committed, err := g.farm.committed(ctx, g.Def.Name)
	if err != nil {
		return err
	}
	if committed+g.Def.MemBytes > h.MemTotal-h.Reserve {
		return fmt.Errorf("guest %s: start: %s more would commit %s of %s host memory (reserve %s, running guests %s); stop a guest or lower mem: %w",
			g.Def.Name, HumanSize(g.Def.MemBytes), HumanSize(committed+g.Def.MemBytes), HumanSize(h.MemTotal), HumanSize(h.Reserve), HumanSize(committed), ErrOvercommit)
	}
	return nil
}

// Stop shuts the guest down (clean first, killed after grace). It reports
// whether the guest was running.
func (g *Guest) Stop(ctx context.Context, grace time.Duration) (bool, error) {
	h, err := g.Handle(ctx)
	if err != nil {
		return false, err
	}
	st, err := h.Status(ctx)
	if err != nil {
		return false, err
	}
	if st.State != driver.Running && st.State != driver.Suspended {
		return false, nil
	}
	if _, vm := h.(driver.OwnKernel); vm && g.Def.HostKey != "" && grace > 0 && st.State == driver.Running {
		// A VM's clean shutdown is the guest's own poweroff (microvm has no
		// ACPI button); the driver then only waits, and kills after grace.
		if c, err := g.Conn(ctx); err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c.Run(pctx, "poweroff", ssh.RunOptions{IgnoreExit: true, Sudo: g.User() != "root"})
			cancel()
		}
	}
	g.dropConn(nil)
	if err := h.Stop(ctx, grace); err != nil {
		return true, fmt.Errorf("guest %s: stop: %w", g.Def.Name, err)
	}
	return true, nil
}

// WaitReady waits for the guest's ready marker, then, when the guest has a
// pinned host key, for one SSH handshake; over it, the shares of a guest
// that mounts them itself (qemu) not mounted yet are mounted (see Share).
func (g *Guest) WaitReady(ctx context.Context, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h, err := g.Handle(ctx)
	if err != nil {
		return err
	}
	if err := h.WaitReady(ctx); err != nil {
		return fmt.Errorf("guest %s: wait_ready: %w", g.Def.Name, err)
	}
	if g.Def.HostKey == "" {
		return nil
	}
	c, err := g.SSH(ctx)
	if err != nil {
		return fmt.Errorf("guest %s: wait_ready: %w", g.Def.Name, err)
	}
	defer c.Close()
	return g.mountShares(ctx, h, c)
}

// mountShares has a guest whose shares it mounts itself
// (driver.ShareMounter: qemu's 9p) mount them over c, as root.
func (g *Guest) mountShares(ctx context.Context, h driver.Guest, c *ssh.Client) error {
	m, ok := h.(driver.ShareMounter)
	if !ok || len(g.Def.Shares) == 0 {
		return nil
	}
	run := func(ctx context.Context, cmd string) (driver.ExecResult, error) {
		r, err := c.Run(ctx, guestPath+cmd, ssh.RunOptions{IgnoreExit: true, Sudo: g.User() != "root"})
		return driver.ExecResult{Code: r.Code, Stdout: r.Stdout, Stderr: r.Stderr}, err
	}
	if err := m.MountShares(ctx, g.Def.Shares, run); err != nil {
		return fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	return nil
}

// hostSide is where the host reaches a guest TCP port: the guest's own
// address on the farm bridge, or the host end of a user-mode forward.
func (g *Guest) hostSide(port int) (host string, hostPort int, ok bool, err error) {
	if g.Def.Net == "bridge" {
		ip, _, err := net.ParseCIDR(g.Def.IP)
		if err != nil {
			return "", 0, false, fmt.Errorf("guest %s: ip %q: %w", g.Def.Name, g.Def.IP, err)
		}
		return ip.String(), port, true, nil
	}
	for _, f := range g.Def.Forwards {
		if f.GuestPort == port && (f.Proto == "" || f.Proto == "tcp") {
			host := f.HostAddr
			if host == "" {
				host = "127.0.0.1"
			}
			return host, f.HostPort, true, nil
		}
	}
	return "", 0, false, nil
}

// SSHAddr is where the guest's SSH server is reached from the host.
func (g *Guest) SSHAddr() (string, int, error) {
	host, port, ok, err := g.hostSide(22)
	if err == nil && !ok {
		err = fmt.Errorf("guest %s: no way to reach SSH: add forward = {[2201] = 22}: %w", g.Def.Name, ErrInvalid)
	}
	return host, port, err
}

// Addr is the host:port where a guest port is reached from the host.
func (g *Guest) Addr(port int) (string, error) {
	host, hostPort, ok, err := g.hostSide(port)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("guest %s: port %d is not forwarded to the host: add forward = {[HOSTPORT] = %d}: %w", g.Def.Name, port, port, ErrInvalid)
	}
	return net.JoinHostPort(host, strconv.Itoa(hostPort)), nil
}

// User is the guest's SSH user (default tc).
func (g *Guest) User() string {
	if g.Def.User == "" {
		return "tc"
	}
	return g.Def.User
}

// SSH dials the guest as its user (Tiny Core's tc, with sudo) with the farm key, pinning the host key
// recorded when its disk was built. Retries cover the moment between the
// ready marker and dropbear listening.
func (g *Guest) SSH(ctx context.Context) (*ssh.Client, error) {
	if g.Def.HostKey == "" {
		return nil, fmt.Errorf("guest %s: no pinned host key (build its disk with image.build, or set host_key): refusing to trust an unknown key: %w", g.Def.Name, ErrInvalid)
	}
	pubs, err := ssh.ParsePublicKeys(g.Def.HostKey)
	if err != nil {
		return nil, fmt.Errorf("guest %s: host_key: %w", g.Def.Name, err)
	}
	fk, err := ssh.EnsureFarmKey(g.farm.StateDir())
	if err != nil {
		return nil, err
	}
	host, port, err := g.SSHAddr()
	if err != nil {
		return nil, err
	}
	return ssh.Dial(ctx, ssh.Config{Host: host, Port: port, User: g.User(), Signer: fk.Signer, HostKeys: pubs,
		Timeout: 10 * time.Second, Retries: 20, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second})
}

// StateDir is the state directory the farm lives in.
func (f *Farm) StateDir() string { return filepath.Dir(f.dir) }

// Exec runs argv in the guest: through the driver when it can (ns), else
// over SSH.
// A suspended guest runs nothing: a command sent to it would wait for as
// long as it stays suspended, so Exec refuses it at once.
//
// opts.Timeout bounds the command; past it the command is abandoned (ns:
// killed; over SSH: its session closed) and the error wraps ErrTimeout.
func (g *Guest) Exec(ctx context.Context, argv []string, opts driver.ExecOptions) (driver.ExecResult, error) {
	h, err := g.Handle(ctx)
	if err != nil {
		return driver.ExecResult{}, err
	}
	if st, err := h.Status(ctx); err != nil {
		return driver.ExecResult{}, err
	} else if st.State == driver.Suspended {
		return driver.ExecResult{}, fmt.Errorf("guest %s: exec %s: the guest is suspended: resume it first: %w", g.Def.Name, abbrev(strings.Join(argv, " "), 60), ErrSuspended)
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	timedOut := func(r driver.ExecResult, err error) (driver.ExecResult, error) {
		if err != nil && opts.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return r, fmt.Errorf("guest %s: exec %s: no answer within %v: %w (%w)", g.Def.Name, abbrev(strings.Join(argv, " "), 60), opts.Timeout, ssh.ErrTimeout, context.DeadlineExceeded)
		}
		return r, err
	}
	if ex, ok := h.(driver.Execer); ok {
		r, err := ex.Exec(ctx, argv, opts)
		if err == nil && opts.Timeout > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = ctx.Err() // killed by the deadline: not the command's own exit
		}
		return timedOut(r, err)
	}
	c, err := g.Conn(ctx)
	if err != nil {
		return timedOut(driver.ExecResult{}, err)
	}
	// Output is both streamed to opts' writers and kept, as the ns driver does.
	var stdout, stderr bytes.Buffer
	ro := ssh.RunOptions{Stdin: opts.Stdin, IgnoreExit: true, Timeout: opts.Timeout}
	if opts.Stdout != nil {
		ro.Stdout = io.MultiWriter(&stdout, opts.Stdout)
	}
	if opts.Stderr != nil {
		ro.Stderr = io.MultiWriter(&stderr, opts.Stderr)
	}
	r, err := c.Run(ctx, ssh.ShellJoin(argv...), ro)
	if opts.Stdout != nil {
		r.Stdout = stdout.Bytes()
	}
	if opts.Stderr != nil {
		r.Stderr = stderr.Bytes()
	}
	return timedOut(driver.ExecResult{Code: r.Code, Stdout: r.Stdout, Stderr: r.Stderr}, err)
}

func abbrev(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Suspend freezes the guest. It reports whether it did anything: a
// guest suspended already is left so; one that does not run is an error.
func (g *Guest) Suspend(ctx context.Context) (bool, error) {
	return g.freeze(ctx, "suspend", driver.Suspended, driver.Running)
}

// Resume thaws the guest, reporting whether it was suspended; a running
// guest is left so.
func (g *Guest) Resume(ctx context.Context) (bool, error) {
	return g.freeze(ctx, "resume", driver.Running, driver.Suspended)
}

func (g *Guest) freeze(ctx context.Context, op string, want, from driver.State) (bool, error) {
	h, err := g.Handle(ctx)
	if err != nil {
		return false, err
	}
	s, ok := h.(driver.Suspender)
	if !ok {
		return false, fmt.Errorf("guest %s: %w", g.Def.Name, driver.Unsupported(g.Def.Driver, op, ""))
	}
	if op == "resume" {
		// A pause left by a killed tinyfarm includes a frozen file
		// system, which a plain resume would leave frozen.
		st, _ := h.Status(ctx)
		if err := g.healPauseLocked(ctx, h); err != nil {
			return false, err
		}
		if st.State == driver.Suspended {
			if now, _ := h.Status(ctx); now.State == driver.Running {
				return true, nil // the heal resumed it
			}
		}
	}
	st, err := h.Status(ctx)
	if err != nil {
		return false, err
	}
	switch st.State {
	case want:
		return false, nil
	case from:
	default:
		return false, fmt.Errorf("guest %s: %s: the guest is %s, not running: start it first: %w", g.Def.Name, op, st.State, ErrNotRunning)
	}
	if op == "suspend" {
		err = s.Suspend(ctx)
	} else {
		err = s.Resume(ctx)
	}
	if err != nil {
		return false, fmt.Errorf("guest %s: %w", g.Def.Name, err)
	}
	return true, nil
}

// Destroy stops the guest and removes its definition and runtime files.
// The disk images stay unless removeDisk, wherever they are: the user's
// own and the ones tinyfarm placed (a clone's, a restored guest's).
func (g *Guest) Destroy(ctx context.Context, removeDisk bool) error {
	_, err := g.DestroyMoved(ctx, removeDisk)
	return err
}

// DestroyMoved is Destroy; it returns the disks it kept that had lived in the
// guest's directory (an older tinyfarm put clones' and restored guests'
// disks there), now moved to <state>/disks.
func (g *Guest) DestroyMoved(ctx context.Context, removeDisk bool) (moved []string, err error) {
	if err := g.stopForDestroy(ctx); err != nil && !errors.Is(err, driver.ErrUnsupported) {
		return nil, err
	}
	unlock, err := g.farm.Lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	dir := g.farm.GuestDir(g.Def.Name)
	if !removeDisk {
		for _, d := range append([]string{g.Def.Disk}, g.Def.Disks...) {
			if d == "" || !strings.HasPrefix(d, dir+string(filepath.Separator)) {
				continue
			}
			to, err := g.farm.PlaceDisk(strings.TrimSuffix(filepath.Base(d), ".img"), g.Def.Name)
			if err == nil {
				err = os.Rename(d, to)
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return moved, fmt.Errorf("guest %s: destroy: keep disk %s: %w", g.Def.Name, d, err)
			}
			if err == nil {
				moved = append(moved, to)
			}
		}
	}
	if removeDisk && g.Def.Disk != "" {
		// The disk and the sidecar image.build keeps beside it (same
		// name + ".tinyfarm.json"), so a later build starts afresh. They
		// go first: a disk that cannot be removed keeps the guest
		// defined, so it is neither lost track of nor left behind
		// silently. A disk another guest names (shared read-only) stays.
		if other := g.farm.otherUser(g.Def); other != "" {
			return nil, fmt.Errorf("guest %s: destroy disk: guest %s uses it too: destroy with disk = false, or destroy %s first: %w", g.Def.Name, other, other, ErrInvalid)
		}
		for _, f := range append([]string{g.Def.Disk, g.Def.Disk + ".tinyfarm.json"}, g.Def.Disks...) {
			if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("guest %s: destroy disk (the guest stays defined; fix that and destroy it again): %w", g.Def.Name, err)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return moved, fmt.Errorf("guest %s: destroy: %w", g.Def.Name, err)
	}
	// Its routes go with it: a later guest given its address would
	// otherwise receive its traffic.
	if _, err := proxy.NewRegistry(filepath.Join(g.farm.StateDir(), "proxy"), nil).RemoveGuest(ctx, g.Def.Name, proxy.ChangeOptions{}); err != nil {
		return moved, fmt.Errorf("guest %s: destroy: %w", g.Def.Name, err)
	}
	return moved, nil
}

// otherUser is another guest defined with one of d's disks, or "".
func (f *Farm) otherUser(d *Definition) string {
	all, _ := f.List()
	for _, o := range all {
		if o.Name != d.Name {
			for _, a := range d.diskPaths() {
				for _, b := range o.diskPaths() {
					if sameDisk(a, b) {
						return o.Name
					}
				}
			}
		}
	}
	return ""
}

// stopForDestroy ends a guest that is being destroyed without the clean
// shutdown Stop does, which is mostly fixed sleeps: ~3 s per guest, 2 min
// for 20 (busybox init's poweroff sleeps 1 s after SIGTERM and 1 s before
// the reboot call, and Tiny Core's rc.shutdown sleeps too). What a clean
// shutdown protects is the disk, which destroy may keep:
//   - ns (no kernel of its own): every write a guest made is in the host's
//     page cache already, and its file system is unmounted cleanly when
//     its mount namespace goes: killing the init is as safe as a poweroff;
//   - a VM (driver.OwnKernel: qemu, colinux): the guest's own page cache
//     is flushed with sync over SSH first; when that fails (no pinned key,
//     no answer) it gets the clean shutdown as before.
func (g *Guest) stopForDestroy(ctx context.Context) error {
	h, err := g.Handle(ctx)
	if err != nil {
		return err
	}
	st, err := h.Status(ctx)
	if err != nil || (st.State != driver.Running && st.State != driver.Suspended) {
		_, err := g.Stop(ctx, 5*time.Second) // cleans up after a crashed guest
		return err
	}
	grace := time.Duration(0)
	if _, vm := h.(driver.OwnKernel); vm {
		grace = 5 * time.Second
		if st.State == driver.Running && g.Def.HostKey != "" {
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if c, err := g.Conn(sctx); err == nil {
				// Any user may sync: no sudo needed.
				if r, err := c.Run(sctx, "sync", ssh.RunOptions{IgnoreExit: true}); err == nil && r.Code == 0 {
					grace = 0
				}
			}
			cancel()
		}
	}
	g.dropConn(nil)
	if err := h.Stop(ctx, grace); err != nil {
		return fmt.Errorf("guest %s: destroy: %w", g.Def.Name, err)
	}
	return nil
}

// PlaceDisk is a free path in <state>/disks for a disk tinyfarm places
// itself: base.img, or base-2.img... when taken (never over a kept disk).
// A base that is just "disk" (an old guest directory's disk.img) is
// named after the guest instead.
func (f *Farm) PlaceDisk(base, guest string) (string, error) {
	if base == "disk" || base == "" {
		base = guest
	} else if strings.HasPrefix(base, "disk") {
		base = guest + "-" + base
	}
	dir := filepath.Join(f.StateDir(), "disks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for n := 1; ; n++ {
		p := filepath.Join(dir, base+".img")
		if n > 1 {
			p = filepath.Join(dir, fmt.Sprintf("%s-%d.img", base, n))
		}
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		}
	}
}

// Console returns the last n lines of the guest's console (0: all).
func (g *Guest) Console(n int) (string, error) {
	b, err := driver.ReadConsole(g.farm.Backend(g.Def.Driver), g.Spec())
	if err != nil {
		return "", fmt.Errorf("guest %s: console: %w", g.Def.Name, err)
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	if n > 0 {
		lines := strings.SplitAfter(string(b), "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		return strings.Join(lines, ""), nil
	}
	return string(b), nil
}

// Conf is the backend's own configuration text (coLinux conf, qemu
// command line), or the rendered spec for backends without one.
func (g *Guest) Conf(ctx context.Context) (string, error) {
	r, err := g.farm.Runner(g.Def)
	if err == nil {
		if c, ok := r.(driver.Configurer); ok {
			return c.Config(g.Spec())
		}
	}
	b, err := json.MarshalIndent(g.Spec(), "", "  ")
	return string(b) + "\n", err
}

// Conn is the farm's shared SSH connection to the guest, dialed on first
// use and reused by every later call (a dead one is replaced).
func (g *Guest) Conn(ctx context.Context) (*ssh.Client, error) {
	f := g.farm
	f.connMu.Lock()
	c := f.conns[g.Def.Name]
	f.connMu.Unlock()
	if c != nil {
		return c, nil
	}
	c, err := g.SSH(ctx)
	if err != nil {
		return nil, err
	}
	f.connMu.Lock()
	if old := f.conns[g.Def.Name]; old != nil { // another worker dialed too
		f.connMu.Unlock()
		c.Close()
		return old, nil
	}
	f.conns[g.Def.Name] = c
	f.connMu.Unlock()
	go func() {
		c.Wait() // the guest stopped or the connection broke: forget it
		g.dropConn(c)
	}()
	return c, nil
}

func (g *Guest) dropConn(c *ssh.Client) {
	f := g.farm
	f.connMu.Lock()
	defer f.connMu.Unlock()
	if cur := f.conns[g.Def.Name]; cur != nil && (c == nil || cur == c) {
		cur.Close()
		delete(f.conns, g.Def.Name)
	}
}

// Target is the running guest as a target.Target for tcz and persist,
// reached over the shared SSH connection as root.
func (g *Guest) Target(ctx context.Context) (target.Target, error) {
	c, err := g.Conn(ctx)
	if err != nil {
		return nil, err
	}
	return cmdtarget.New(sshRunner{c: c, sudo: g.User() != "root"}, "/", g.Describe()), nil
}

// PlanTarget is Target for check mode: a guest that is not running yet
// (it would be built and started by the same playbook) is planned against
// as an empty root, so every change to it shows; the engine reports them
// as may_change, since they depend on the guest being created first.
func (g *Guest) PlanTarget(ctx context.Context) (target.Target, error) {
	if g.Running(ctx) {
		return g.Target(ctx)
	}
	return offlineTarget{name: g.Describe()}, nil
}

// WriteFile makes path in the running guest hold exactly content with
// mode, owned by uid:gid: it reads the file there and, unless content and
// mode are equal already, replaces it atomically (see target.PutFile).
// With check nothing is written, and a guest that does not run yet is
// compared against an empty root (PlanTarget): every file shows.
func (g *Guest) WriteFile(ctx context.Context, path string, content []byte, mode fs.FileMode, uid, gid int, check bool) (target.PutResult, error) {
	var t target.Target
	var err error
	if check {
		t, err = g.PlanTarget(ctx)
	} else {
		t, err = g.Target(ctx)
	}
	if err != nil {
		return target.PutResult{}, err
	}
	return target.PutFile(ctx, t, path, content, mode, uid, gid, check)
}

// offlineTarget is an empty root that refuses changes.
type offlineTarget struct{ name string }

func (o offlineTarget) Lstat(ctx context.Context, name string) (target.Entry, error) {
	return target.Entry{}, fmt.Errorf("lstat %s on %s (not running): %w", name, o.name, fs.ErrNotExist)
}

func (o offlineTarget) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	return nil, fmt.Errorf("open %s on %s (not running): %w", name, o.name, fs.ErrNotExist)
}

func (o offlineTarget) Apply(ctx context.Context, c target.Change) error {
	return fmt.Errorf("apply %s on %s: the guest is not running", c.Name, o.name)
}

func (o offlineTarget) ReadDir(ctx context.Context, name string) ([]target.Entry, error) {
	return nil, fmt.Errorf("readdir %s on %s (not running): %w", name, o.name, fs.ErrNotExist)
}

func (o offlineTarget) Describe() string { return o.name }

// Describe names the guest in change reports.
func (g *Guest) Describe() string { return "guest:" + g.Def.Name }

// sshRunner runs target commands as root: directly when logged in as
// root, through Tiny Core's password-less sudo otherwise.
type sshRunner struct {
	c    *ssh.Client
	sudo bool
}

// guestPath is set for every command: sudo and non-login shells may start
// without the sbin directories where ldconfig, depmod and nginx live.
const guestPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH; "

func (r sshRunner) Run(ctx context.Context, cmd string, stdin io.Reader) ([]byte, []byte, int, error) {
	res, err := r.c.RunStream(ctx, guestPath+cmd, stdin, ssh.RunOptions{IgnoreExit: true, Sudo: r.sudo})
	return res.Stdout, res.Stderr, res.Code, err
}
