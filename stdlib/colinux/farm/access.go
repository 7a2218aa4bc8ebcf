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
	"strconv"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/target/cmdtarget"
)

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

// ExecsAsRoot reports whether Exec runs commands as the guest's root: a
// driver that enters the guest itself (driver.Execer) does; over SSH a
// command runs as the guest's user.
func (g *Guest) ExecsAsRoot(ctx context.Context) bool {
	if g.Def.User == "root" {
		return true
	}
	h, err := g.Handle(ctx)
	if err != nil {
		return false
	}
	_, ok := h.(driver.Execer)
	return ok
}

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
	return target.Offline(g.Describe()), nil
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
