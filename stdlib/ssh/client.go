package ssh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Defaults of [Config].
const (
	DefaultPort       = 22
	DefaultUser       = "root"
	DefaultTimeout    = 10 * time.Second
	DefaultBackoff    = 250 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Config says where and how to connect. HostKey and HostKeys, or else KnownHosts, pin the server.
type Config struct {
	// Host is the server's name or IP address. Required.
	Host string
	// Port is the server's TCP port. Default 22.
	Port int
	// User is the login name. Default "root".
	User string
	// Signer is the client key. Default: the key read from KeyPath.
	Signer xssh.Signer
	// KeyPath is a private key file (OpenSSH or PEM format, unencrypted), read when Signer is
	// nil. No default: one of Signer and KeyPath is required.
	KeyPath string
	// HostKey is the server's pinned public host key. Only its algorithm is offered in the
	// handshake. Default nil: HostKeys or KnownHosts must be set.
	HostKey xssh.PublicKey
	// HostKeys pins a set of host keys (with HostKey, if set): the server may present any of
	// them. Only their algorithms are offered, in this order (put the preferred one first), so
	// a server lacking the first (an OpenSSH before 6.5 has no ed25519) is verified with the
	// next, never trusted on first use. Default nil.
	HostKeys []xssh.PublicKey
	// KnownHosts is a known_hosts file that must list the server ("[host]:port" for a port other
	// than 22). Used when HostKey is nil. Default "": HostKey must be set.
	KnownHosts string
	// Timeout bounds each connection attempt (TCP connect and SSH handshake). Default 10s.
	Timeout time.Duration
	// Retries is how many more attempts follow a failed one. Only dial and transport errors
	// (refused, reset, timeout) are retried, never authentication or host key errors.
	// Default 0: one attempt.
	Retries int
	// Backoff is the pause before the first retry; it doubles after each retry up to
	// MaxBackoff. Default 250ms.
	Backoff time.Duration
	// MaxBackoff caps the pause between retries. Default 5s.
	MaxBackoff time.Duration
	// MaxSessions caps the commands running at once on the connection (further Run calls
	// wait). Default 0: automatic, which is 1 for dropbear 2022.82 to 2024.85 and unlimited for
	// other servers. Those dropbear releases kill the whole connection ("Failed assertion
	// (common-channel.c:705)", mkj/dropbear#321) when a session is being opened while another
	// session's command exits; Tiny Core guests ship such a dropbear. A negative value means
	// unlimited.
	MaxSessions int
	// Logf, when set, receives one line per failed attempt. Default nil: silent.
	Logf func(format string, args ...any)
	// Via, when set, is a jump host: Host:Port is reached through that connection (a
	// direct-tcpip channel its server opens, as `ssh -J` does) rather than by a TCP connection
	// from here, so Host may be an address only the jump host reaches. The handshake, the host
	// key pinning and the retries are the same; a jump host that forbids TCP forwarding fails
	// with [ErrForwarding], never retried. Default nil: dial directly.
	Via *Client
}

// Client is one SSH connection to a guest. It is safe for concurrent use: each command runs in
// its own session on the shared connection, and file operations share one SFTP subsystem,
// started on first use.
type Client struct {
	conn *xssh.Client
	dest string // "user@host:port", for messages

	mu   sync.Mutex
	sftp *sftp.Client

	// sessions holds one token per running session when sessions are capped; nil: no cap.
	sessions chan struct{}

	// noPosixRename makes WriteFile act as if the server lacked posix-rename (tests only).
	noPosixRename bool
}

// Dial connects and authenticates, retrying transient failures as cfg says. ctx bounds the
// whole call, retries included; cancelling ctx later does not affect the returned Client.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg.setDefaults()
	dest := cfg.User + "@" + net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	cc, signer, err := cfg.clientConfig()
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", dest, err)
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	backoff := cfg.Backoff
	for attempt := 0; ; attempt++ {
		conn, err := dialOnce(ctx, addr, cc, cfg.Timeout, cfg.Via)
		if err == nil {
			c := &Client{conn: conn, dest: dest}
			limit := cfg.MaxSessions
			if limit == 0 && dropbearSessionBug(string(conn.ServerVersion())) {
				limit = 1
			}
			if limit > 0 {
				c.sessions = make(chan struct{}, limit)
			}
			return c, nil
		}
		if errors.Is(err, ErrAuth) {
			err = fmt.Errorf("key %s refused: %w", Fingerprint(signer.PublicKey()), err)
		}
		if attempt >= cfg.Retries || !retryable(err) || ctx.Err() != nil {
			if attempt > 0 {
				return nil, fmt.Errorf("dial %s (%d attempts): %w", dest, attempt+1, err)
			}
			return nil, fmt.Errorf("dial %s: %w", dest, err)
		}
		if cfg.Logf != nil {
			cfg.Logf("ssh: dial %s: attempt %d failed: %v; retrying in %v", dest, attempt+1, err, backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("dial %s (%d attempts): %w", dest, attempt+1, ctxError(ctx, err))
		case <-t.C:
		}
		backoff = min(2*backoff, cfg.MaxBackoff)
	}
}

func (cfg *Config) setDefaults() {
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.User == "" {
		cfg.User = DefaultUser
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = DefaultBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
}

// clientConfig builds the x/crypto client configuration: authentication and host key pinning.
func (cfg *Config) clientConfig() (*xssh.ClientConfig, xssh.Signer, error) {
	if cfg.Host == "" {
		return nil, nil, errors.New("no host")
	}
	signer := cfg.Signer
	if signer == nil {
		if cfg.KeyPath == "" {
			return nil, nil, errors.New("no client key: set Signer or KeyPath")
		}
		var err error
		if signer, err = ReadPrivateKey(cfg.KeyPath); err != nil {
			return nil, nil, err
		}
	}
	cc := &xssh.ClientConfig{
		User:    cfg.User,
		Auth:    []xssh.AuthMethod{xssh.PublicKeys(signer)},
		Timeout: cfg.Timeout,
	}
	var pinned []xssh.PublicKey
	if cfg.HostKey != nil {
		pinned = append(pinned, cfg.HostKey)
	}
	pinned = append(pinned, cfg.HostKeys...)
	switch {
	case len(pinned) > 0:
		cc.HostKeyCallback = pinnedCallback(pinned)
		seen := map[string]bool{}
		for _, k := range pinned {
			for _, a := range algorithmsFor(k.Type()) {
				if !seen[a] {
					seen[a] = true
					cc.HostKeyAlgorithms = append(cc.HostKeyAlgorithms, a)
				}
			}
		}
	case cfg.KnownHosts != "":
		cb, err := knownhosts.New(cfg.KnownHosts)
		if err != nil {
			return nil, nil, fmt.Errorf("known_hosts: %w", err)
		}
		addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
		want := knownKeys(cb, addr)
		if len(want) == 0 {
			return nil, nil, &HostKeyError{Host: addr, Source: cfg.KnownHosts}
		}
		seen := map[string]bool{}
		for _, k := range want {
			for _, a := range algorithmsFor(k.Type()) {
				if !seen[a] {
					seen[a] = true
					cc.HostKeyAlgorithms = append(cc.HostKeyAlgorithms, a)
				}
			}
		}
		cc.HostKeyCallback = knownHostsCallback(cb, cfg.KnownHosts)
	default:
		return nil, nil, errors.New("no host key pinned: set HostKey, HostKeys or KnownHosts")
	}
	return cc, signer, nil
}

// ReadPrivateKey reads a private key file (OpenSSH or PEM format, unencrypted) as a signer.
func ReadPrivateKey(path string) (xssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	signer, err := xssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("client key %s: %w", path, err)
	}
	return signer, nil
}

// algorithmsFor lists the host key signature algorithms that verify keys of type keyType.
func algorithmsFor(keyType string) []string {
	if keyType == xssh.KeyAlgoRSA {
		return []string{xssh.KeyAlgoRSASHA512, xssh.KeyAlgoRSASHA256, xssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

func pinnedCallback(pinned []xssh.PublicKey) xssh.HostKeyCallback {
	return func(host string, _ net.Addr, key xssh.PublicKey) error {
		got := key.Marshal()
		var want []string
		for _, p := range pinned {
			if bytes.Equal(got, p.Marshal()) {
				return nil
			}
			want = append(want, Fingerprint(p))
		}
		return &HostKeyError{Host: host, Got: Fingerprint(key), Want: want, Source: "pinned key"}
	}
}

// knownKeys returns the keys known_hosts lists for addr, found by checking a key that can never
// match (the callback's KeyError lists the wanted keys).
func knownKeys(cb xssh.HostKeyCallback, addr string) []xssh.PublicKey {
	probe, _ := xssh.NewPublicKey(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public())
	var keyErr *knownhosts.KeyError
	if err := cb(addr, &net.TCPAddr{IP: net.IPv4zero}, probe); !errors.As(err, &keyErr) {
		return nil
	}
	keys := make([]xssh.PublicKey, 0, len(keyErr.Want))
	for _, k := range keyErr.Want {
		keys = append(keys, k.Key)
	}
	return keys
}

func knownHostsCallback(cb xssh.HostKeyCallback, file string) xssh.HostKeyCallback {
	return func(host string, remote net.Addr, key xssh.PublicKey) error {
		err := cb(host, remote, key)
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &keyErr):
			e := &HostKeyError{Host: host, Got: Fingerprint(key), Source: file}
			for _, k := range keyErr.Want {
				e.Want = append(e.Want, Fingerprint(k.Key))
			}
			return e
		case errors.As(err, &revoked):
			return fmt.Errorf("host key for %s (%s) is revoked in %s: %w", host, Fingerprint(key), file, ErrHostKey)
		default:
			return fmt.Errorf("host key for %s: %v: %w", host, err, ErrHostKey)
		}
	}
}

// dialOnce makes one attempt: TCP connect (or a channel through via) and SSH handshake, both
// bounded by timeout and ctx.
func dialOnce(ctx context.Context, addr string, cc *xssh.ClientConfig, timeout time.Duration, via *Client) (*xssh.Client, error) {
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nc net.Conn
	var err error
	if via != nil {
		nc, err = via.conn.DialContext(actx, "tcp", addr)
		if err != nil {
			return nil, classify(actx, ctx, via.jumpError(addr, err))
		}
	} else {
		d := net.Dialer{}
		if nc, err = d.DialContext(actx, "tcp", addr); err != nil {
			return nil, classify(actx, ctx, err)
		}
	}
	// The handshake has no ctx: bound it by a deadline (a channel through a jump host has
	// none), and close the socket on cancellation.
	deadline, _ := actx.Deadline()
	_ = nc.SetDeadline(deadline)
	stop := context.AfterFunc(actx, func() { nc.Close() })
	conn, chans, reqs, err := xssh.NewClientConn(nc, addr, cc)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = actx.Err()
		}
		return nil, classify(actx, ctx, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return xssh.NewClient(conn, chans, reqs), nil
}

// classify maps an attempt's error to the package's sentinels. actx is the attempt's context,
// ctx the caller's.
func classify(actx, ctx context.Context, err error) error {
	var hk *HostKeyError
	switch {
	case errors.As(err, &hk):
		return hk // without x/crypto's "ssh: handshake failed:" prefix
	case errors.Is(err, ErrHostKey):
		return err
	case strings.Contains(err.Error(), "no common algorithm for host key"):
		return fmt.Errorf("%w: the server has no host key of the pinned type (%v)", ErrHostKey, err)
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("%w: %v", ErrAuth, strings.TrimPrefix(err.Error(), "ssh: handshake failed: "))
	case ctx.Err() != nil:
		return ctxError(ctx, err)
	case actx.Err() != nil || isTimeout(err):
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ctxError reports the caller's cancellation, adding ErrTimeout when its deadline passed.
func ctxError(ctx context.Context, cause error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w (%v)", ErrTimeout, ctx.Err(), cause)
	}
	return fmt.Errorf("%w (%v)", ctx.Err(), cause)
}

// jumpError says why the jump host c did not open a channel to addr: a server that forbids TCP
// forwarding gets ErrForwarding, naming it and the fix; a refused or unreachable addr is a
// transport error (retried: the far sshd may not listen yet).
func (c *Client) jumpError(addr string, err error) error {
	var oc *xssh.OpenChannelError
	if errors.As(err, &oc) && oc.Reason == xssh.Prohibited {
		return fmt.Errorf("jump host %s (%s) refuses to forward a connection to %s (%s): %w; allow it there: `AllowTcpForwarding yes` in OpenSSH's sshd_config (and no `restrict` or `no-port-forwarding` on the key's authorized_keys line), dropbear started without -j",
			c.dest, c.ServerVersion(), addr, oc.Message, ErrForwarding)
	}
	if errors.As(err, &oc) {
		return fmt.Errorf("through %s to %s: %s (%s)", c.dest, addr, oc.Reason, oc.Message)
	}
	return fmt.Errorf("through %s to %s: %w", c.dest, addr, err)
}

func retryable(err error) bool {
	return !errors.Is(err, ErrAuth) && !errors.Is(err, ErrHostKey) && !errors.Is(err, ErrForwarding) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// dropbearSessionBug reports whether the server version string ("SSH-2.0-dropbear_2022.83")
// names a dropbear from 2022.82 to 2024.85, which fails when a session opens while another one's
// command exits (mkj/dropbear#321, fixed in 2024.86).
func dropbearSessionBug(version string) bool {
	_, v, ok := strings.Cut(version, "dropbear_")
	if !ok {
		return false
	}
	v, _, _ = strings.Cut(v, " ")
	ys, ms, ok := strings.Cut(v, ".")
	year, err1 := strconv.Atoi(ys)
	minor, err2 := strconv.Atoi(strings.TrimRightFunc(ms, func(r rune) bool { return r < '0' || r > '9' }))
	if !ok || err1 != nil || err2 != nil {
		return false
	}
	return minor >= 82 && minor < 86 && year >= 2022 && year <= 2024
}

// acquire takes a session token when sessions are capped; release gives it back.
func (c *Client) acquire(ctx context.Context) (release func(), err error) {
	if c.sessions == nil {
		return func() {}, nil
	}
	select {
	case c.sessions <- struct{}{}:
		return func() { <-c.sessions }, nil
	case <-ctx.Done():
		return nil, ctxError(ctx, errors.New("waiting for a free session"))
	}
}

// ServerVersion returns the server's identification string, e.g.
// "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3" or "SSH-2.0-dropbear_2022.83".
func (c *Client) ServerVersion() string { return string(c.conn.ServerVersion()) }

// Addr returns "user@host:port" of the connection.
func (c *Client) Addr() string { return c.dest }

// Close closes the SFTP subsystem (if started) and the connection. Commands still running fail.
func (c *Client) Close() error {
	c.mu.Lock()
	s := c.sftp
	c.sftp = nil
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close %s: %w", c.dest, err)
	}
	return nil
}

// Wait blocks until the connection is closed, by [Client.Close] or by the server.
func (c *Client) Wait() error { return c.conn.Wait() }
