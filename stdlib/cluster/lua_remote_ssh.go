package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// g:ssh() on a remote guest: an SSH session with the guest, jumped
// through its host. The controller asks the host's tinyfarm where the
// guest's sshd is and which host keys its farm pinned (MethodSSHAccess;
// the host may refuse), then its SSH connection to the host opens a
// channel to the guest's sshd (as `ssh -J host guest`), over which it logs
// in to the guest with the same key, pinning those host keys. When the
// guest refuses the key, the controller asks the host to add it to the
// guest's authorized_keys (MethodSSHAccess with Authorize) and logs in
// again: the first g:ssh() of a controller changes the guest, later ones
// read only.

// guestConn is a run's SSH connection to one remote guest, kept for the
// run (every g:ssh() of the guest shares it) and closed when it ends.
type guestConn struct {
	c *ssh.Client
}

// remoteSSH is g:ssh() -> session (see require("ssh")).
func remoteSSH(k *conn, L *lua.LState) int {
	g := checkRemote(L)
	var c *ssh.Client
	var acc MachineSSHAccessResult
	g.block(k, L, func(ctx context.Context) (err error) {
		c, acc, err = g.sshConn(ctx)
		return err
	})
	if acc.File != "" {
		// A new connection: whether the host had to let this controller in.
		ch := engine.Change{Module: "cluster", Action: "ssh", Subject: g.Describe(), Status: engine.StatusOK}
		if acc.Changed {
			ch.Status, ch.Detail = engine.StatusChanged, "this controller's key authorized in "+acc.File+" ("+GuestSSHComment+")"
		}
		k.env.Report(L, ch)
	}
	L.Push(ssh.PushSharedSession(L, k.env, c, g.Describe()))
	return 1
}

// sshConn is the run's connection to the guest, dialed through its host
// on first use (again once it broke). acc is what the host did for it
// (its File empty when the connection was there already).
func (g *remoteGuest) sshConn(ctx context.Context) (*ssh.Client, MachineSSHAccessResult, error) {
	var acc MachineSSHAccessResult
	key := g.host + "/" + g.info.Name
	s := &g.k.sess
	s.mu.Lock()
	if gc := s.guests[key]; gc != nil {
		s.mu.Unlock()
		return gc.c, acc, nil
	}
	s.mu.Unlock()
	m, err := g.k.machine(ctx, g.host)
	if err != nil {
		return nil, acc, err
	}
	fail := func(err error) (*ssh.Client, MachineSSHAccessResult, error) {
		return nil, acc, fmt.Errorf("guest %s on %s: ssh: %w", g.info.Name, g.host, err)
	}
	if m.via == nil {
		return fail(fmt.Errorf("the session with %s runs over no SSH connection to jump through: %w", g.host, errors.ErrUnsupported))
	}
	signer, err := ssh.ReadPrivateKey(m.key)
	if err != nil {
		return fail(err)
	}
	// First only where and which host keys (no change in the guest);
	// the host adds the key when the guest refuses it, once per guest.
	req := MachineSSHAccess{Name: g.info.Name, Key: ssh.AuthorizedKey(signer.PublicKey(), "")}
	if err := m.Call(ctx, MethodSSHAccess, req, &acc, nil); err != nil {
		return nil, acc, err // the host's refusal, named by the host
	}
	dial := func() (*ssh.Client, error) {
		pins, err := ssh.ParsePublicKeys(acc.HostKeys)
		if err != nil {
			return nil, fmt.Errorf("the host keys %s pinned for it: %w", g.host, err)
		}
		ip, portS, err := net.SplitHostPort(acc.Addr)
		if err != nil {
			return nil, fmt.Errorf("%s answered address %q: %w", g.host, acc.Addr, ErrMachineProtocol)
		}
		port, _ := strconv.Atoi(portS)
		// Retries cover a guest whose sshd does not listen yet (refused
		// through the host), never a host key or login refused.
		c, err := ssh.Dial(ctx, ssh.Config{Host: ip, Port: port, User: acc.User, Signer: signer, HostKeys: pins, Via: m.via,
			Timeout: 10 * time.Second, Retries: 20, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second})
		switch {
		case errors.Is(err, ssh.ErrHostKey):
			return nil, fmt.Errorf("its sshd (%s, reached through %s) shows another host key than the one %s's farm pinned for it (its host_key), so it is refused (no trust on first use); if its keys changed on purpose, define it again with the new host_key: %w",
				acc.Addr, g.host, g.host, err)
		case errors.Is(err, ssh.ErrForwarding):
			return nil, fmt.Errorf("host %s: %w", g.host, err)
		}
		return c, err
	}
	c, err := dial()
	if errors.Is(err, ssh.ErrAuth) {
		req.Authorize, req.Check = true, g.k.env.Check
		if err := m.Call(ctx, MethodSSHAccess, req, &acc, nil); err != nil {
			return nil, acc, err
		}
		switch {
		case !acc.Authorized:
			return fail(lx.WithKind(fmt.Errorf("in check mode: the guest does not let this controller's key in yet, and check mode changes nothing there (a run without --check has %s add it to %s): %w",
				g.host, acc.File, errors.ErrUnsupported), lx.KindUnsupported))
		case !acc.Changed:
			return fail(fmt.Errorf("the guest refuses this controller's key, which %s finds in its %s already (its sshd may not read that file, or its modes): %w", g.host, acc.File, err))
		}
		c, err = dial()
	}
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	if old := s.guests[key]; old != nil { // a parallel() worker dialed too
		s.mu.Unlock()
		c.Close()
		return old.c, acc, nil
	}
	if s.guests == nil {
		s.guests = map[string]*guestConn{}
	}
	gc := &guestConn{c: c}
	s.guests[key] = gc
	s.mu.Unlock()
	go func() {
		c.Wait() // the guest stopped, or its host's connection broke: dial again next time
		s.mu.Lock()
		if s.guests[key] == gc {
			delete(s.guests, key)
		}
		s.mu.Unlock()
	}()
	return c, acc, nil
}
