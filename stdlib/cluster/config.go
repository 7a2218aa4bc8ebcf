package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// Prefix is where tinyfarm keeps its keys in etcd, so an existing etcd
// cluster can be shared with other users.
const Prefix = "/tinyfarm/"

// Default ports of the embedded member and the join endpoint (etcd's
// registered ports, and the next one for joins).
const (
	DefaultClientPort = 2379
	DefaultPeerPort   = 2380
	DefaultJoinPort   = 2381
)

// ConfigFile is the name of a host's cluster configuration in its cluster
// directory (<state>/cluster).
const ConfigFile = "config.json"

// Config is one host's view of its cluster, kept in <state>/cluster.
type Config struct {
	// Host is this host's name in the cluster. Required.
	Host string `json:"host"`
	// Embedded is true when this host runs an etcd member (`cluster init`
	// or `cluster join TOKEN`), false for an existing etcd cluster.
	Embedded bool `json:"embedded"`
	// Advertise is the IP the other hosts reach this one at: the member's
	// client, peer and join ports listen there. Required when Embedded.
	Advertise string `json:"advertise,omitempty"`
	// ClientPort, PeerPort and JoinPort default to 2379, 2380, 2381.
	ClientPort int `json:"client_port,omitempty"`
	PeerPort   int `json:"peer_port,omitempty"`
	JoinPort   int `json:"join_port,omitempty"`
	// Endpoints are etcd client URLs ("https://10.0.0.1:2379"). Embedded
	// members learn the others' by etcd's auto sync. Required otherwise.
	Endpoints []string `json:"endpoints,omitempty"`
	// CAFile, CertFile, KeyFile are the TLS material for etcd (the client
	// side, and the member's ports when Embedded). Default: the files
	// `cluster init`/`join` wrote into the cluster directory.
	CAFile   string `json:"ca_file,omitempty"`
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ProxyAddr is where this host's proxy serves HTTP for the other
	// hosts ("10.0.0.1:80"): a vhost whose guest runs here is forwarded
	// to it by every other host's proxy. Default: none (this host's
	// guests are served only by its own proxy).
	ProxyAddr string `json:"proxy_addr,omitempty"`
	// ProxyListen is where the daemon runs its proxy, serving every vhost
	// of the cluster ("10.0.0.1:80", ":80"). Default: no proxy.
	ProxyListen string `json:"proxy_listen,omitempty"`
	// SSHAddr is where this host's sshd serves controllers (remote guests,
	// cluster.run: HostRemote) and the other hosts (migrations, `cluster
	// drain`), as "10.0.0.1:22". Default: the advertise address, port 22.
	SSHAddr string `json:"ssh_addr,omitempty"`
	// SSHHostKeyFile is the public key file of that sshd, published in the
	// facts so controllers and the other hosts pin it. Default:
	// /etc/ssh/ssh_host_ed25519_key.pub, else dropbear's.
	SSHHostKeyFile string `json:"ssh_host_key_file,omitempty"`
	// FarmSubnet, when set, is the subnet this host's farm keeps (its
	// bridged guests live on it, KeptSubnet): Join claims it for this
	// host before it becomes a member, so a join whose farm overlaps
	// another host's is refused with nothing changed. Not saved.
	FarmSubnet string `json:"-"`
	// Binary is the tinyfarm controllers run here over SSH. Default: the
	// daemon's own executable.
	Binary string `json:"binary,omitempty"`
	// AuthorizedKeys is the authorized_keys file of the user the other
	// hosts log in as (root); the daemon keeps their cluster keys in a
	// block of its own there, each limited to the migration commands
	// (HostKeysBlock). "none": not kept (add the lines yourself).
	// Default: ~/.ssh/authorized_keys of the daemon's user.
	AuthorizedKeys string `json:"authorized_keys,omitempty"`
	// Timing tunes etcd for tests; zero values are etcd's defaults.
	Timing Timing `json:"timing,omitzero"`
	// Bootstrap says how the embedded member starts the first time (while
	// it has no data directory yet): as a new cluster or joining one.
	Bootstrap *Bootstrap `json:"bootstrap,omitempty"`

	// Dir is the cluster directory the config was loaded from.
	Dir string `json:"-"`
}

// Timing holds the clocks of membership and of the embedded member.
type Timing struct {
	// TickMS is etcd's heartbeat interval. Default 100.
	TickMS uint `json:"tick_ms,omitempty"`
	// ElectionMS is etcd's election timeout. Default 1000.
	ElectionMS uint `json:"election_ms,omitempty"`
	// LeaseTTL is how long after its last renewal a host counts as down,
	// in seconds. Default 10.
	LeaseTTL int64 `json:"lease_ttl,omitempty"`
	// OpTimeout bounds one etcd call; a mutation that gets no answer from
	// a majority in this time fails with ErrNoQuorum. Default 5s.
	OpTimeout time.Duration `json:"op_timeout,omitempty"`
}

func (t Timing) withDefaults() Timing {
	if t.TickMS == 0 {
		t.TickMS = 100
	}
	if t.ElectionMS == 0 {
		t.ElectionMS = 1000
	}
	if t.LeaseTTL == 0 {
		t.LeaseTTL = 10
	}
	if t.OpTimeout == 0 {
		t.OpTimeout = 5 * time.Second
	}
	return t
}

func (c *Config) defaults() {
	if c.ClientPort == 0 {
		c.ClientPort = DefaultClientPort
	}
	if c.PeerPort == 0 {
		c.PeerPort = DefaultPeerPort
	}
	if c.JoinPort == 0 {
		c.JoinPort = DefaultJoinPort
	}
	if c.CAFile == "" {
		c.CAFile = filepath.Join(c.Dir, caCertFile)
	}
	if c.CertFile == "" {
		c.CertFile = filepath.Join(c.Dir, certFile)
	}
	if c.KeyFile == "" {
		c.KeyFile = filepath.Join(c.Dir, keyFile)
	}
	c.Timing = c.Timing.withDefaults()
	if c.SSHAddr == "" && c.Advertise != "" {
		c.SSHAddr = net.JoinHostPort(c.Advertise, "22")
	}
	if c.Embedded && len(c.Endpoints) == 0 {
		c.Endpoints = []string{c.clientURL()}
	}
}

func (c *Config) clientURL() string {
	return "https://" + net.JoinHostPort(c.Advertise, strconv.Itoa(c.ClientPort))
}

func (c *Config) peerURL() string {
	return "https://" + net.JoinHostPort(c.Advertise, strconv.Itoa(c.PeerPort))
}

func (c *Config) joinAddr() string {
	return net.JoinHostPort(c.Advertise, strconv.Itoa(c.JoinPort))
}

// validate checks what a user typed, naming the field and the fix.
func (c *Config) validate() error {
	if c.Host == "" || !validName(c.Host) {
		return fmt.Errorf("cluster host name %q: want letters, digits, '-' or '.' (--name): %w", c.Host, ErrInvalid)
	}
	if c.Embedded {
		if ip := net.ParseIP(c.Advertise); ip == nil {
			return fmt.Errorf("cluster advertise address %q: want this host's IP that the other hosts reach (--advertise 10.0.0.1): %w", c.Advertise, ErrInvalid)
		}
	} else if len(c.Endpoints) == 0 {
		return fmt.Errorf("cluster: no etcd endpoints: give --etcd https://HOST:2379: %w", ErrInvalid)
	}
	return nil
}

// Dir returns the cluster directory of a tinyfarm state directory.
func Dir(stateDir string) string { return filepath.Join(stateDir, "cluster") }

// LoadConfig reads the cluster configuration of a cluster directory. A
// host that never joined gets an error wrapping ErrNotJoined.
func LoadConfig(dir string) (*Config, error) {
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cluster config %s: this host is in no cluster (tinyfarm cluster init, or cluster join TOKEN): %w", dir, ErrNotJoined)
	}
	if err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	c := &Config{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("cluster config %s: %w", filepath.Join(dir, ConfigFile), err)
	}
	c.Dir = dir
	c.defaults()
	return c, c.validate()
}

// Save writes the configuration into c.Dir atomically.
func (c *Config) Save() error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("cluster config: %w", err)
	}
	return fsutil.WriteJSONAtomic(filepath.Join(c.Dir, ConfigFile), c, 0o600)
}

func validName(s string) bool {
	if len(s) > 63 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_') {
			return false
		}
	}
	return true
}

// Bootstrap is the first start of an embedded member.
type Bootstrap struct {
	InitialCluster string   `json:"initial_cluster"`
	Existing       bool     `json:"existing"`
	Token          string   `json:"token"`
	Settings       Settings `json:"settings,omitzero"` // the first host writes them
}
