package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// stamp adds to a host's facts what the daemon's config says about
// reaching it: its proxy, its sshd with the host key to pin there, its
// cluster key (which the other hosts authorize for migrations), and the
// tinyfarm a controller runs on it.
func (cfg *Config) stamp(f Facts) Facts {
	f.ProxyAddr = cfg.ProxyAddr
	f.SSHAddr = cfg.SSHAddr
	if f.SSHAddr == "" && cfg.Advertise != "" {
		f.SSHAddr = net.JoinHostPort(cfg.Advertise, "22")
	}
	if cfg.SSHHostKeyFile != "" {
		f.SSHHostKey = ""
		if b, err := os.ReadFile(cfg.SSHHostKeyFile); err == nil {
			f.SSHHostKey = strings.TrimSpace(string(b))
		}
	}
	if b, err := os.ReadFile(filepath.Join(cfg.Dir, ClusterKeyFile+".pub")); err == nil {
		f.ClusterKey = strings.TrimSpace(string(b))
	}
	f.Binary = cfg.Binary
	if f.Binary == "" {
		f.Binary, _ = os.Executable()
	}
	if cfg.Dir != "" {
		f.StateDir = filepath.Dir(cfg.Dir)
	}
	return f
}

// RemoteOptions say how a controller logs into the cluster's hosts.
type RemoteOptions struct {
	// Key is the private key file the controller logs in with. Default:
	// the controller's farm key (<state>/keys/farm_ed25519, made on first
	// use): put its public half (farm_ed25519.pub) in each host's
	// /root/.ssh/authorized_keys.
	Key string
	// User is the login user on the hosts. Default "root" (the far
	// tinyfarm starts guests).
	User string
	// StateDir is the controller's state directory, for the default Key.
	StateDir string
}

// HostRemote is the ops.Remote for cluster host name, from its facts:
// the address of its sshd, the SSH host key it published (pinned: a host
// that published none is refused, never trusted on first use), the
// tinyfarm binary and state directory there.
func HostRemote(ctx context.Context, c *Client, name string, o RemoteOptions) (ops.Remote, error) {
	hosts, err := c.Hosts(ctx)
	if err != nil {
		return ops.Remote{}, err
	}
	for _, h := range hosts {
		if h.Name == name {
			return remoteFor(h, o)
		}
	}
	return ops.Remote{}, fmt.Errorf("host %s: no such host in the cluster (tinyfarm cluster status lists them): %w", name, ErrNotFound)
}

// DialHost starts a machine session with cluster host name (HostRemote,
// then `tinyfarm machine` there over SSH). A host whose sshd shows another
// key than the one in its facts is refused, naming the host and the fix.
func DialHost(ctx context.Context, c *Client, name string, o RemoteOptions) (*Machine, error) {
	r, err := HostRemote(ctx, c, name, o)
	if err != nil {
		return nil, err
	}
	m, err := DialMachine(ctx, r)
	if errors.Is(err, ssh.ErrHostKey) {
		return nil, fmt.Errorf("host %s: its sshd on %s shows another host key than the one it published in the cluster facts, so it is refused (no trust on first use). If its key changed on purpose, restart its daemon there (tinyfarm cluster start) to publish the new one; otherwise something answers in its place: %w",
			name, r.Address, err)
	}
	return m, err
}

// PeerRemote is the ops.Remote for cluster host h as this host (cfg)
// reaches it for a migration: as HostRemote, but logged in as root with
// this host's cluster SSH key, which h's daemon authorizes for the
// migration commands only (hostssh.go). The far side's binary and state
// directory are h's own: its gate runs them, whatever the command line
// names.
func PeerRemote(cfg *Config, h Host) (ops.Remote, error) {
	r, err := remoteFor(h, RemoteOptions{Key: filepath.Join(cfg.Dir, ClusterKeyFile), User: "root"})
	// The gate takes only a plain command line: no TINYFARM_HOME export,
	// and the binary is whatever the far host's gate runs.
	r.Binary, r.StateDir = "", ""
	return r, err
}

func remoteFor(h Host, o RemoteOptions) (ops.Remote, error) {
	if h.State != HostUp {
		return ops.Remote{}, fmt.Errorf("host %s is %s: its daemon does not renew its lease; start it there (tinyfarm cluster start): %w", h.Name, h.State, ErrUnreachable)
	}
	if h.SSHHostKey == "" {
		return ops.Remote{}, fmt.Errorf("host %s published no SSH host key, so a controller cannot pin it (tinyfarm never trusts on first use): give its daemon one with `tinyfarm cluster join ... --ssh-host-key FILE.pub` or install an sshd with /etc/ssh/ssh_host_ed25519_key.pub there, then restart it (tinyfarm cluster start): %w", h.Name, ErrInvalid)
	}
	addr, portS, err := net.SplitHostPort(h.SSHAddr)
	if err != nil {
		return ops.Remote{}, fmt.Errorf("host %s published no SSH address (ssh_addr %q): restart its daemon with this tinyfarm (tinyfarm cluster start there): %w", h.Name, h.SSHAddr, ErrInvalid)
	}
	port, _ := strconv.Atoi(portS)
	key := o.Key
	if key == "" {
		k, err := ssh.EnsureFarmKey(o.StateDir)
		if err != nil {
			return ops.Remote{}, fmt.Errorf("host %s: the controller's key: %w", h.Name, err)
		}
		key = k.Path
	}
	return ops.Remote{Name: h.Name, Address: addr, Port: port, User: o.User, Key: key, HostKey: h.SSHHostKey,
		Binary: h.Binary, StateDir: h.StateDir}, nil
}
