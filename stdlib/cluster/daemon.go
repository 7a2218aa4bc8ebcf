package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The daemon's files in the cluster directory.
const (
	daemonPID = "serve.pid"
	daemonLog = "serve.log"
	// ReadyLine is what the daemon logs once it serves; StartDaemon waits
	// for it.
	ReadyLine = "cluster: ready"
)

// RunningDaemon returns the pid of the cluster daemon of dir, if it runs.
func RunningDaemon(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, daemonPID))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), "cluster\x00serve") {
		return 0, false
	}
	return pid, true
}

// StartDaemon starts argv (`tinyfarm cluster serve`) detached, logging to
// <dir>/serve.log, and waits until it logs ReadyLine: its member serves and
// the host is registered. A daemon already running is left alone.
func StartDaemon(ctx context.Context, dir string, argv []string, env []string) (int, error) {
	if pid, ok := RunningDaemon(dir); ok {
		return pid, nil
	}
	lf := filepath.Join(dir, daemonLog)
	log, err := os.OpenFile(lf, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("cluster daemon: %w", err)
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	detach(cmd)
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("cluster daemon: start %s: %w", argv[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(dir, daemonPID), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		cmd.Process.Kill()
		return 0, fmt.Errorf("cluster daemon: %w", err)
	}
	deadline := time.After(60 * time.Second)
	for {
		if b, _ := os.ReadFile(lf); strings.Contains(string(b), ReadyLine) {
			return pid, nil
		}
		select {
		case err := <-exited:
			b, _ := os.ReadFile(lf)
			return 0, fmt.Errorf("cluster daemon exited (%v): %s", err, strings.TrimSpace(string(b)))
		case <-deadline:
			return pid, fmt.Errorf("cluster daemon %d: not ready after 60s (no quorum? see %s)", pid, lf)
		case <-ctx.Done():
			return pid, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// StopDaemon ends the cluster daemon of dir (SIGTERM: it revokes its lease
// and stops its member), waiting up to 20s.
func StopDaemon(ctx context.Context, dir string) error {
	pid, ok := RunningDaemon(dir)
	if !ok {
		return nil
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	if err := terminate(p); err != nil {
		return fmt.Errorf("cluster daemon %d: %w", pid, err)
	}
	for i := 0; i < 400; i++ {
		if _, ok := RunningDaemon(dir); !ok {
			os.Remove(filepath.Join(dir, daemonPID))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("cluster daemon %d: still running 20s after SIGTERM", pid)
}

// Leave takes this host out of its cluster: refused while guests are
// claimed on it (move or destroy them first); otherwise its etcd member is
// removed (etcd's MemberRemove), its facts and farm subnet are freed, its
// daemon stopped and its cluster directory removed.
func Leave(ctx context.Context, cfg *Config) error {
	c, err := Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	gs, err := c.Guests(ctx)
	if err != nil {
		return err
	}
	var mine []string
	for _, g := range gs {
		if g.Host == cfg.Host {
			mine = append(mine, g.Name)
		}
	}
	if len(mine) > 0 {
		return fmt.Errorf("cluster leave %s: guests %s are claimed on this host: destroy them (or move them) first: %w", cfg.Host, strings.Join(mine, ", "), ErrInvalid)
	}
	last := false
	if cfg.Embedded {
		// etcd's MemberRemove while the member runs: the others keep
		// quorum, and the removed member stops itself.
		var id uint64
		err := c.call(ctx, "cluster members", func(ctx context.Context) error {
			ml, err := c.etcd.MemberList(ctx)
			if err != nil {
				return err
			}
			last = len(ml.Members) == 1 // the last host: the cluster ends with it
			for _, m := range ml.Members {
				if m.Name == cfg.Host {
					id = m.ID
				}
			}
			return nil
		})
		if err == nil && !last && id != 0 {
			rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			err = removeMember(rctx, c, id)
			cancel()
			if err != nil {
				err = fmt.Errorf("cluster member remove %s: %w", cfg.Host, err)
			}
		}
		if err != nil {
			return err
		}
	}
	c.Close()
	if err := StopDaemon(ctx, cfg.Dir); err != nil {
		return err
	}
	if !last {
		// With the daemon gone (it would write its facts again), free the
		// host's subnet and facts through the other members.
		rest := *cfg
		rest.Endpoints = nil
		for _, e := range cfg.Endpoints {
			if !cfg.Embedded || e != cfg.clientURL() {
				rest.Endpoints = append(rest.Endpoints, e)
			}
		}
		o, err := Connect(ctx, &rest)
		if err != nil {
			return err
		}
		defer o.Close()
		if err := o.call(ctx, "cluster leave "+cfg.Host, func(ctx context.Context) error {
			r, err := o.etcd.Get(ctx, Prefix+"hostnet/"+cfg.Host)
			if err != nil {
				return err
			}
			ops := []clientv3.Op{
				clientv3.OpDelete(Prefix + "hosts/" + cfg.Host),
				clientv3.OpDelete(Prefix + "alive/" + cfg.Host),
				clientv3.OpDelete(Prefix + "hostnet/" + cfg.Host),
				clientv3.OpDelete(drainKey(cfg.Host, false)),
				clientv3.OpDelete(drainKey(cfg.Host, true)),
				clientv3.OpDelete(stepPrefix(cfg.Host, false), clientv3.WithPrefix()),
				clientv3.OpDelete(stepPrefix(cfg.Host, true), clientv3.WithPrefix()),
			}
			if len(r.Kvs) > 0 {
				ops = append(ops, clientv3.OpDelete(Prefix+"subnets/"+string(r.Kvs[0].Value)))
			}
			_, err = o.etcd.Txn(ctx).Then(ops...).Commit()
			return err
		}); err != nil {
			return err
		}
	}
	return os.RemoveAll(cfg.Dir)
}

// Status is what `tinyfarm cluster status` shows.
type Status struct {
	Host    string        `json:"host"`
	Hosts   []Host        `json:"hosts"`
	Guests  []GuestRecord `json:"guests"`
	Members []string      `json:"members,omitempty"`
	// Stale is set when no majority answered: the lists are what this
	// host's member last knew.
	Stale string `json:"stale,omitempty"`
}

// ClusterStatus reads the cluster's hosts and guests; without quorum it
// falls back to this host's member's own (possibly stale) data.
func ClusterStatus(ctx context.Context, c *Client) (Status, error) {
	st := Status{Host: c.host}
	var err error
	st.Guests, err = c.Guests(ctx)
	if errors.Is(err, ErrNoQuorum) {
		st.Stale = err.Error()
		st.Guests, err = c.Guests(ctx, clientv3.WithSerializable())
	}
	if err != nil {
		return st, err
	}
	st.Hosts, err = c.Hosts(ctx, clientv3.WithSerializable())
	if err != nil {
		return st, err
	}
	c.call(ctx, "cluster members", func(ctx context.Context) error {
		ml, err := c.etcd.MemberList(ctx, clientv3.WithSerializable())
		if err != nil {
			return err
		}
		for _, m := range ml.Members {
			st.Members = append(st.Members, fmt.Sprintf("%s %s", m.Name, strings.Join(m.PeerURLs, ",")))
		}
		return nil
	})
	return st, nil
}

// MakeToken makes a one-time join token on a running member of cfg's
// cluster, valid for ttl.
func MakeToken(ctx context.Context, cfg *Config, ttl time.Duration) (Token, error) {
	if !cfg.Embedded {
		return Token{}, fmt.Errorf("cluster token: this host uses an existing etcd: other hosts join it with --etcd and certificates: %w", ErrInvalid)
	}
	ca, err := LoadCA(cfg.Dir)
	if err != nil {
		return Token{}, err
	}
	c, err := Connect(ctx, cfg)
	if err != nil {
		return Token{}, err
	}
	defer c.Close()
	return c.NewToken(ctx, cfg.joinAddr(), ca.Fingerprint(), ttl)
}

// removeMember is MemberRemove, retried while etcd calls the cluster
// unhealthy: it refuses reconfiguration until every member has been
// active for a few seconds (a host that just joined).
//
// Removing the member the client speaks to can stop it before it answers
// ("server stopped", seen in TestFaultsThreeHosts): then the removal is
// checked through the other members.
func removeMember(ctx context.Context, c *Client, id uint64) error {
	for {
		_, err := c.etcd.MemberRemove(ctx, id)
		if errors.Is(err, rpctypes.ErrStopped) || errors.Is(err, rpctypes.ErrGRPCStopped) {
			if memberGone(ctx, c, id) {
				return nil
			}
			continue
		}
		if !errors.Is(err, rpctypes.ErrUnhealthy) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// memberGone polls the member list (through any member that answers) until
// id is no longer in it, or ctx ends.
func memberGone(ctx context.Context, c *Client, id uint64) bool {
	for ctx.Err() == nil {
		if ml, err := c.etcd.MemberList(ctx); err == nil {
			gone := true
			for _, m := range ml.Members {
				gone = gone && m.ID != id
			}
			if gone {
				return true
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
	return false
}
