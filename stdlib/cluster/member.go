package cluster

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Member is the etcd member embedded in this host's daemon.
type Member struct {
	etcd *embed.Etcd
}

// memberStart describes how a member starts: the first of a new cluster,
// or one added to an existing cluster (after MemberAdd).
type memberStart struct {
	initialCluster string // "a=https://10.0.0.1:2380,b=https://..."
	existing       bool
	token          string // the cluster's initial-cluster-token
}

// StartMember starts the embedded etcd member of cfg and waits until it
// serves (a member joining an existing cluster is ready once it caught up
// with the leader). Members restarted on an existing data dir ignore
// initialCluster and rejoin with what their data says.
func startMember(ctx context.Context, cfg *Config, st memberStart) (*Member, error) {
	ec := embed.NewConfig()
	ec.Name = cfg.Host
	ec.Dir = filepath.Join(cfg.Dir, "etcd")
	peer, err := url.Parse(cfg.peerURL())
	if err != nil {
		return nil, fmt.Errorf("cluster member: %w", err)
	}
	client, err := url.Parse(cfg.clientURL())
	if err != nil {
		return nil, fmt.Errorf("cluster member: %w", err)
	}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	ec.InitialCluster = st.initialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = cfg.Host + "=" + cfg.peerURL()
	}
	ec.InitialClusterToken = st.token
	ec.ClusterState = embed.ClusterStateFlagNew
	if st.existing {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	tls := transport.TLSInfo{
		CertFile:       cfg.CertFile,
		KeyFile:        cfg.KeyFile,
		TrustedCAFile:  cfg.CAFile,
		ClientCertAuth: true,
	}
	ec.ClientTLSInfo, ec.PeerTLSInfo = tls, tls
	t := cfg.Timing
	ec.TickMs, ec.ElectionMs = t.TickMS, t.ElectionMS
	// A farm's state is small: keep fewer entries in memory between
	// snapshots and compact history, so the member fits a 1 GiB host.
	ec.SnapshotCount = 5000
	ec.SnapshotCatchUpEntries = 1000
	ec.AutoCompactionMode = embed.CompactorModePeriodic
	ec.AutoCompactionRetention = "1h"
	ec.QuotaBackendBytes = 256 << 20
	ec.Logger = "zap"
	ec.LogLevel = "error"
	if l := os.Getenv("TINYFARM_ETCD_LOG"); l != "" {
		ec.LogLevel = l // debugging a member: info, debug
	}
	ec.LogOutputs = []string{filepath.Join(cfg.Dir, "etcd.log")}
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("cluster member %s on %s: %w", cfg.Host, cfg.Advertise, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return &Member{etcd: e}, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("cluster member %s: %w", cfg.Host, err)
	case <-ctx.Done():
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("cluster member %s: not ready (no quorum? see %s): %w", cfg.Host, ec.LogOutputs[0], ctx.Err())
	}
}

// promote makes this member a voting member once it has caught up with
// the leader (it joined as a learner), asking the other members through
// endpoints. etcd refuses the promotion until the learner is in sync.
func (m *Member) promote(ctx context.Context, cfg *Config, endpoints []string) error {
	if !m.etcd.Server.IsLearner() {
		return nil
	}
	others := &Config{Endpoints: endpoints, CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, Timing: cfg.Timing}
	c, err := Connect(ctx, others)
	if err != nil {
		return err
	}
	defer c.Close()
	id := uint64(m.etcd.Server.MemberID())
	for {
		err := c.call(ctx, "cluster promote "+cfg.Host, func(ctx context.Context) error {
			_, err := c.etcd.MemberPromote(ctx, id)
			return err
		})
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster member %s: still a learner: %w", cfg.Host, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Err reports the member's fatal error, if it stops on its own.
func (m *Member) Err() <-chan error { return m.etcd.Err() }

// Close stops the member.
func (m *Member) Close() {
	done := make(chan struct{})
	go func() { m.etcd.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}
