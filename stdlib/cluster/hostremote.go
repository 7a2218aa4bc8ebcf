package cluster

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// HostRemote is the ops.Remote for cluster host h as this host (cfg)
// reaches it: h's sshd at its published address, h's published host key
// pinned (never trust on first use), logged in as root with this host's
// cluster SSH key, which h's daemon authorizes for the migration commands
// only (hostssh.go). The far side's binary and state directory are h's
// own: its gate runs them, whatever the command line names.
func HostRemote(cfg *Config, h Host) (ops.Remote, error) {
	if h.SSHAddr == "" || h.SSHHostKey == "" {
		return ops.Remote{}, fmt.Errorf("cluster host %s publishes no SSH address and host key (its daemon predates them, or its sshd has no ed25519 host key: cluster join --ssh-host-key): %w", h.Name, ErrInvalid)
	}
	ip, port, err := net.SplitHostPort(h.SSHAddr)
	if err != nil {
		return ops.Remote{}, fmt.Errorf("cluster host %s: ssh address %q: %w", h.Name, h.SSHAddr, ErrInvalid)
	}
	p, _ := strconv.Atoi(port)
	return ops.Remote{
		Name: h.Name, Address: ip, Port: p, User: "root",
		Key:     filepath.Join(cfg.Dir, ClusterKeyFile),
		HostKey: h.SSHHostKey,
	}, nil
}
