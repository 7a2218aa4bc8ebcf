package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Client is a host's (or a controller's) connection to the cluster's etcd.
type Client struct {
	etcd    *clientv3.Client
	host    string // this host's name ("" for a controller only)
	timeout time.Duration
	ttl     int64
}

// Connect opens an etcd client for cfg: TLS with the host's certificate,
// every member's endpoint kept current by etcd's auto sync.
func Connect(ctx context.Context, cfg *Config) (*Client, error) {
	tlsInfo := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
	tc, err := tlsInfo.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("cluster connect: TLS files (%s, %s, %s): %w", cfg.CAFile, cfg.CertFile, cfg.KeyFile, err)
	}
	t := cfg.Timing.withDefaults()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:        cfg.Endpoints,
		TLS:              tc,
		DialTimeout:      t.OpTimeout,
		AutoSyncInterval: 30 * time.Second,
		Logger:           zap.NewNop(),
		Context:          ctx,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster connect %v: %w", cfg.Endpoints, err)
	}
	return &Client{etcd: cli, host: cfg.Host, timeout: t.OpTimeout, ttl: t.LeaseTTL}, nil
}

// Close closes the connection (a host's lease is not revoked: see Leave).
func (c *Client) Close() error { return c.etcd.Close() }

// Etcd is the underlying client, for tests and tools.
func (c *Client) Etcd() *clientv3.Client { return c.etcd }

// Host is the name of the host this client speaks for.
func (c *Client) Host() string { return c.host }

// call bounds one etcd call by the op timeout and names a lost quorum: a
// call that no majority answers times out (etcd has no leader, or the
// leader cannot commit), and raft commits nothing without a majority.
func (c *Client) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	err := fn(ctx)
	if err == nil {
		return nil
	}
	if noQuorum(ctx, err) {
		return fmt.Errorf("%s: %w: no majority of the etcd members answered within %s, so nothing was changed; bring back enough hosts (tinyfarm cluster status lists them): %v", op, ErrNoQuorum, c.timeout, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func noQuorum(ctx context.Context, err error) bool {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return true
	}
	switch {
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, rpctypes.ErrTimeout),
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail), errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost),
		errors.Is(err, rpctypes.ErrLeaderChanged):
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// Settings are the cluster-wide allocation ranges, written once by the
// first host (`cluster init`) and read by all.
type Settings struct {
	// Range is the cluster's IPv4 range; each host's farm subnet is cut
	// from it. Default 10.80.0.0/16.
	Range string `json:"range"`
	// SubnetBits is the prefix length of a host's farm subnet. Default 24.
	SubnetBits int `json:"subnet_bits"`
	// UIDSlots is how many user-namespace uid ranges of 65536 the cluster
	// hands out (slot N is host uids 65536*(64+N) on), as the ns driver
	// numbers them. Default 30000.
	UIDSlots int `json:"uid_slots"`
}

// DefaultSettings are the settings `cluster init` writes unless told.
func DefaultSettings() Settings {
	return Settings{Range: "10.80.0.0/16", SubnetBits: 24, UIDSlots: 30000}
}

func (s Settings) validate() (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s.Range)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("cluster range %q: want an IPv4 network such as 10.80.0.0/16: %w", s.Range, ErrInvalid)
	}
	if s.SubnetBits < p.Bits() || s.SubnetBits > 29 {
		return netip.Prefix{}, fmt.Errorf("cluster subnet size /%d: want between the range's /%d and /29: %w", s.SubnetBits, p.Bits(), ErrInvalid)
	}
	if s.UIDSlots <= 0 || s.UIDSlots > 30000 {
		return netip.Prefix{}, fmt.Errorf("cluster uid slots %d: want 1..30000: %w", s.UIDSlots, ErrInvalid)
	}
	return p.Masked(), nil
}

// InitSettings writes the cluster settings unless some are there already
// (a second init keeps the first one's).
func (c *Client) InitSettings(ctx context.Context, s Settings) error {
	if _, err := s.validate(); err != nil {
		return err
	}
	b, _ := json.Marshal(s)
	return c.call(ctx, "cluster settings", func(ctx context.Context) error {
		_, err := c.etcd.Txn(ctx).If(absent(Prefix + "config")).
			Then(clientv3.OpPut(Prefix+"config", string(b))).Commit()
		return err
	})
}

// Settings reads the cluster settings (DefaultSettings if none).
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	s := DefaultSettings()
	err := c.call(ctx, "cluster settings", func(ctx context.Context) error {
		r, err := c.etcd.Get(ctx, Prefix+"config")
		if err != nil || len(r.Kvs) == 0 {
			return err
		}
		return json.Unmarshal(r.Kvs[0].Value, &s)
	})
	return s, err
}

// absent is the transaction guard "key does not exist".
func absent(key string) clientv3.Cmp { return clientv3.Compare(clientv3.CreateRevision(key), "=", 0) }
