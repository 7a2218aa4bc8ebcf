package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// clusterFlags are the flags init and join share: who this host is.
type clusterFlags struct {
	name, advertise, proxy string
	ssh, sshHostKey, keys  string
	bin                    string
	clientPort, peerPort   int
	joinPort               int
	timing                 cluster.Timing
}

func (f *clusterFlags) add(cmd *cobra.Command) {
	host, _ := os.Hostname()
	cmd.Flags().StringVar(&f.name, "name", host, "this host's name in the cluster")
	cmd.Flags().StringVar(&f.advertise, "advertise", "", "this host's IP that the other hosts reach (required for an etcd member)")
	cmd.Flags().StringVar(&f.proxy, "proxy", "", `run the proxy serving every vhost of the cluster on this address (":80"); default none`)
	cmd.Flags().StringVar(&f.ssh, "ssh", "", "where this host's sshd serves controllers and the other hosts' migrations (default ADVERTISE:22)")
	cmd.Flags().StringVar(&f.sshHostKey, "ssh-host-key", "", "that sshd's public host key file, which controllers and the other hosts pin (default /etc/ssh/ssh_host_ed25519_key.pub)")
	cmd.Flags().StringVar(&f.keys, "authorized-keys", "", `the authorized_keys file where the daemon lets the other hosts' cluster keys run the migration commands ("none": add them yourself; default ~/.ssh/authorized_keys)`)
	cmd.Flags().IntVar(&f.clientPort, "client-port", cluster.DefaultClientPort, "etcd client port")
	cmd.Flags().IntVar(&f.peerPort, "peer-port", cluster.DefaultPeerPort, "etcd peer port")
	cmd.Flags().IntVar(&f.joinPort, "join-port", cluster.DefaultJoinPort, "port of the join endpoint")
	cmd.Flags().UintVar(&f.timing.TickMS, "heartbeat", 100, "etcd heartbeat interval in ms (raise it on slow links)")
	cmd.Flags().UintVar(&f.timing.ElectionMS, "election-timeout", 1000, "etcd election timeout in ms")
	cmd.Flags().Int64Var(&f.timing.LeaseTTL, "lease-ttl", 10, "seconds after its last renewal a host counts as down")
	cmd.Flags().DurationVar(&f.timing.OpTimeout, "op-timeout", 5*time.Second, "how long a cluster call waits for a majority before failing")
	cmd.Flags().StringVar(&f.bin, "binary", "", "the tinyfarm controllers run on this host over SSH (default: this one)")
}

func (f *clusterFlags) config() (*cluster.Config, error) {
	cfg := &cluster.Config{
		Host: f.name, Advertise: f.advertise, Dir: cluster.Dir(StateDir()),
		ClientPort: f.clientPort, PeerPort: f.peerPort, JoinPort: f.joinPort, ProxyListen: f.proxy,
		Timing: f.timing, SSHAddr: f.ssh, SSHHostKeyFile: f.sshHostKey, Binary: f.bin, AuthorizedKeys: f.keys,
	}
	for _, p := range []*string{&cfg.SSHHostKeyFile, &cfg.Binary, &cfg.AuthorizedKeys} { // the daemon runs elsewhere
		if *p != "" && *p != "none" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return nil, err
			}
			*p = abs
		}
	}
	if f.proxy != "" {
		_, port, err := net.SplitHostPort(f.proxy)
		if err != nil {
			return nil, fmt.Errorf("--proxy %q: want HOST:PORT or :PORT: %w", f.proxy, cluster.ErrInvalid)
		}
		adv := f.advertise
		if adv == "" {
			adv, _, _ = net.SplitHostPort(f.proxy)
		}
		cfg.ProxyAddr = net.JoinHostPort(adv, port)
	}
	return cfg, nil
}

func newClusterCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Join hosts into one farm whose shared state is etcd",
		Long: `A cluster is several tinyfarm hosts sharing one etcd: the first host runs
"cluster init", each other host "cluster join TOKEN". Every host then runs
an etcd member inside its cluster daemon ("cluster serve", started by init
and join), keeps a lease alive with its facts (memory, CPUs, drivers), and
serves every vhost of the cluster from its proxy. Guest names, farm
subnets, guest IPs and uid ranges are handed out in etcd transactions;
init and join give this host's farm its subnet (colinux.network), or keep
the one its bridged guests are on.
An existing etcd cluster works too: "cluster join --etcd URL --cacert ...".`,
	}
	fail := func(err error) error {
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		if errors.Is(err, cluster.ErrInvalid) {
			return exitError{engine.ExitUsage}
		}
		return exitError{engine.ExitFailed}
	}
	startDaemon := func(cfg *cluster.Config) error {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		_, err = cluster.StartDaemon(ctx, cfg.Dir, []string{exe, "cluster", "serve"}, []string{"TINYFARM_HOME=" + StateDir()})
		return err
	}

	var initFlags clusterFlags
	var rng string
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Start a new cluster with this host as its first etcd member; prints a join token",
		Example: `  tinyfarm cluster init --advertise 10.0.0.1 --proxy :80
  tinyfarm cluster init --advertise 10.0.0.1 --range 10.90.0.0/16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := initFlags.config()
			if err != nil {
				return fail(err)
			}
			set := cluster.DefaultSettings()
			set.Range = rng
			if err := cluster.Init(cfg, cluster.InitOptions{Settings: set}); err != nil {
				return fail(err)
			}
			// Nothing else knows this cluster yet: a failure undoes it, so
			// init can simply be run again.
			undo := func(err error) error {
				cluster.StopDaemon(ctx, cfg.Dir)
				os.RemoveAll(cfg.Dir)
				return fail(err)
			}
			if err := startDaemon(cfg); err != nil {
				return undo(err)
			}
			var farmNet strings.Builder
			if err := farmToCluster(ctx, cfg, &farmNet, false); err != nil {
				return undo(fmt.Errorf("%w (cluster init --range gives the cluster another range)", err))
			}
			tok, err := cluster.MakeToken(ctx, cfg, 24*time.Hour)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "cluster started: %s is its first host (etcd member on %s)\n", cfg.Host, cfg.Advertise)
			fmt.Fprint(stdout, farmNet.String())
			keysNote(stdout, cfg)
			fmt.Fprintf(stdout, "join another host (token valid 24h, for one host):\n  tinyfarm cluster join %s --advertise THAT_HOSTS_IP\n", tok)
			return nil
		},
	}
	initFlags.add(initCmd)
	initCmd.Flags().StringVar(&rng, "range", cluster.DefaultSettings().Range, "the cluster's IPv4 range; each host's farm subnet is a /24 of it")

	var joinFlags clusterFlags
	var etcd, cacert, cert, key string
	joinCmd := &cobra.Command{
		Use:   "join TOKEN | join --etcd URLS --cacert F --cert F --key F",
		Short: "Join a cluster: with a token from a member, or an existing etcd cluster",
		Example: `  tinyfarm cluster join tfjoin1.eyJh... --advertise 10.0.0.2 --proxy :80
  tinyfarm cluster join --etcd https://10.0.0.9:2379 --cacert ca.crt --cert host.crt --key host.key`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := joinFlags.config()
			if err != nil {
				return fail(err)
			}
			switch {
			case etcd != "" && len(args) == 0:
				cfg.Endpoints = strings.Split(etcd, ",")
				cfg.CAFile, cfg.CertFile, cfg.KeyFile = cacert, cert, key
				if cacert == "" || cert == "" || key == "" {
					return fail(fmt.Errorf("cluster join --etcd: give --cacert, --cert and --key (the etcd cluster's CA and this host's client certificate): %w", cluster.ErrInvalid))
				}
				if err := cluster.UseExternal(ctx, cfg); err != nil {
					return fail(err)
				}
			case len(args) == 1 && etcd == "":
				tok, err := cluster.ParseToken(args[0])
				if err != nil {
					return fail(err)
				}
				// A farm with guests keeps its subnet: claimed before this
				// host becomes a member, so an overlap refuses the join.
				fm := openFarm()
				keep, guests, err := cluster.KeptSubnet(fm)
				if err != nil {
					fm.Close()
					return fail(err)
				}
				if keep.IsValid() {
					cfg.FarmSubnet = keep.String()
				}
				err = cluster.Join(ctx, cfg, tok)
				if errors.Is(err, cluster.ErrTaken) {
					err = cluster.KeptSubnetError(cfg.Host, fm, guests, err)
				}
				fm.Close()
				if err != nil {
					return fail(err)
				}
			default:
				return fail(fmt.Errorf("cluster join: give a TOKEN (from cluster init or cluster token on a member) or --etcd URLS: %w", cluster.ErrInvalid))
			}
			if err := startDaemon(cfg); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "%s joined the cluster\n", cfg.Host)
			if err := farmToCluster(ctx, cfg, stdout, true); err != nil {
				return fail(err)
			}
			keysNote(stdout, cfg)
			return nil
		},
	}
	joinFlags.add(joinCmd)
	joinCmd.Flags().StringVar(&etcd, "etcd", "", "an existing etcd cluster's client URLs, comma-separated")
	joinCmd.Flags().StringVar(&cacert, "cacert", "", "with --etcd: the etcd cluster's CA certificate")
	joinCmd.Flags().StringVar(&cert, "cert", "", "with --etcd: this host's client certificate")
	joinCmd.Flags().StringVar(&key, "key", "", "with --etcd: this host's client key")

	serveCmd := &cobra.Command{
		Use:   "serve",
		Short: "Run this host's cluster daemon in the foreground (init and join start it detached)",
		Long: `serve runs this host's etcd member (unless the cluster is an existing etcd),
keeps its lease alive with its facts, serves the join endpoint and, with
--proxy given at init or join, the proxy for every vhost of the cluster.
SIGTERM revokes the lease (the host is down at once) and stops the member.
Run it from a service manager to bring a host back after a reboot.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cluster.LoadConfig(cluster.Dir(StateDir()))
			if err != nil {
				return fail(err)
			}
			cluster.Version = Version
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := slog.New(slog.NewTextHandler(stderr, nil))
			exe, err := os.Executable()
			if err != nil {
				return fail(err)
			}
			err = cluster.Serve(ctx, cfg, cluster.ServeOptions{
				Mover:       farmMover{cfg: cfg},
				Gate:        cluster.GateCommand(exe, StateDir()),
				Facts:       hostFacts,
				LocalRoutes: proxy.NewRegistry(proxyDir(), nil).Path(),
				Logger:      log,
			})
			if err != nil {
				return fail(err)
			}
			return nil
		},
	}

	startCmd := &cobra.Command{
		Use:   "start",
		Short: "Start this host's cluster daemon detached, unless it runs (after a reboot)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cluster.LoadConfig(cluster.Dir(StateDir()))
			if err != nil {
				return fail(err)
			}
			if err := startDaemon(cfg); err != nil {
				return fail(err)
			}
			pid, _ := cluster.RunningDaemon(cfg.Dir)
			fmt.Fprintf(stdout, "cluster daemon of %s runs (pid %d)\n", cfg.Host, pid)
			return nil
		},
	}

	var asJSON bool
	statusCmd := &cobra.Command{
		Use:   "status",
		Short: "The cluster's hosts (up or down, their facts) and guests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cluster.LoadConfig(cluster.Dir(StateDir()))
			if err != nil {
				return fail(err)
			}
			if _, ok := cluster.RunningDaemon(cfg.Dir); cfg.Embedded && !ok {
				fmt.Fprintf(stderr, "tinyfarm: this host's cluster daemon is not running (start it with tinyfarm cluster serve); asking the other members\n")
			}
			c, err := cluster.Connect(ctx, cfg)
			if err != nil {
				return fail(err)
			}
			defer c.Close()
			st, err := cluster.ClusterStatus(ctx, c)
			if err != nil {
				return fail(err)
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			if st.Stale != "" {
				fmt.Fprintf(stderr, "tinyfarm: %s\nshowing what this host last knew:\n", st.Stale)
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tSTATE\tMEM\tCOMMITTED\tCPUS\tDRIVERS\tGUESTS\tVERSION")
			count := map[string]int{}
			for _, g := range st.Guests {
				count[g.Host]++
			}
			for _, h := range st.Hosts {
				me := ""
				if h.Name == st.Host {
					me = " (this host)"
				}
				state := string(h.State)
				if h.Draining != "" {
					state += "," + h.Draining
				}
				fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", h.Name, me, state, farm.HumanSize(h.Mem), farm.HumanSize(h.Committed), h.CPUs, strings.Join(h.Drivers, ","), count[h.Name], h.Version)
			}
			tw.Flush()
			if len(st.Guests) > 0 {
				fmt.Fprintln(stdout)
				tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "GUEST\tHOST\tSTATE\tIP")
				for _, g := range st.Guests {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Name, g.Host, g.State, g.IP)
				}
				tw.Flush()
			}
			return nil
		},
	}
	statusCmd.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")

	var ttl time.Duration
	tokenCmd := &cobra.Command{
		Use:   "token",
		Short: "Print a new one-time join token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cluster.LoadConfig(cluster.Dir(StateDir()))
			if err != nil {
				return fail(err)
			}
			tok, err := cluster.MakeToken(ctx, cfg, ttl)
			if err != nil {
				return fail(err)
			}
			fmt.Fprintln(stdout, tok)
			return nil
		},
	}
	tokenCmd.Flags().DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")

	leaveCmd := &cobra.Command{
		Use:   "leave",
		Short: "Take this host out of its cluster (refused while guests are claimed on it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := cluster.LoadConfig(cluster.Dir(StateDir()))
			if err != nil {
				return fail(err)
			}
			if err := cluster.Leave(ctx, cfg); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "%s left the cluster\n", cfg.Host)
			return nil
		},
	}
	cmd.AddCommand(initCmd, joinCmd, serveCmd, startCmd, statusCmd, tokenCmd, leaveCmd)
	cmd.AddCommand(newDrainCmds(ctx, stdout, stderr, fail)...)
	return cmd
}

// hostFacts are this host's facts: memory and CPUs from the kernel, the
// drivers built in, and the memory its defined guests are given.
func hostFacts(ctx context.Context) cluster.Facts {
	drivers := farm.DefaultDrivers()
	names := make([]string, 0, len(drivers))
	for n := range drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	f := cluster.LocalFacts(names)
	if defs, err := farm.New(StateDir(), farm.Options{Drivers: drivers}).List(); err == nil {
		for _, d := range defs {
			f.Committed += d.MemBytes
		}
	}
	return f
}

// clusterGuests is `tinyfarm guests --cluster`: the cluster's claimed
// guests with their hosts, unreachable while a host is down.
func clusterGuests(ctx context.Context, stdout, stderr io.Writer, asJSON bool) error {
	cfg, err := cluster.LoadConfig(cluster.Dir(StateDir()))
	if err != nil {
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		return exitError{engine.ExitFailed}
	}
	c, err := cluster.Connect(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		return exitError{engine.ExitFailed}
	}
	defer c.Close()
	st, err := cluster.ClusterStatus(ctx, c)
	if err != nil {
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		return exitError{engine.ExitFailed}
	}
	if st.Stale != "" {
		fmt.Fprintf(stderr, "tinyfarm: %s\nshowing what this host last knew:\n", st.Stale)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if st.Guests == nil {
			st.Guests = []cluster.GuestRecord{}
		}
		return enc.Encode(st.Guests)
	}
	if len(st.Guests) == 0 {
		fmt.Fprintln(stdout, "no guests in the cluster (cluster.claim{...} in a playbook)")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOST\tSTATE\tIP\tMEM\tDRIVER")
	for _, g := range st.Guests {
		d := g.Driver
		if d == "" {
			d = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, g.Host, g.State, g.IP, farm.HumanSize(g.Mem), d)
	}
	return tw.Flush()
}

// keysNote says where the other hosts' cluster keys are authorized (for
// migrations only), so no one finds them there by surprise.
func keysNote(w io.Writer, cfg *cluster.Config) {
	if p := cfg.AuthorizedKeysPath(); p != "" {
		fmt.Fprintf(w, "the other hosts' cluster keys go to %s, each allowed only the migration commands (tinyfarm cluster gate)\n", p)
	}
}

func openFarm() *farm.Farm {
	return farm.New(StateDir(), farm.Options{Drivers: farm.DefaultDrivers()})
}

// farmToCluster gives this host's farm its cluster subnet, so no two
// hosts' bridges overlap (cluster.GiveFarmSubnet), and says which.
// joined: the host stays in the cluster if this fails (join; init undoes).
func farmToCluster(ctx context.Context, cfg *cluster.Config, w io.Writer, joined bool) error {
	fm := openFarm()
	defer fm.Close()
	c, err := cluster.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	p, _, err := cluster.GiveFarmSubnet(ctx, c, cfg.Host, fm)
	if err != nil && p.IsValid() && joined {
		return fmt.Errorf("%w; %s is in the cluster with the subnet %s: once that is fixed, give the farm that subnet (colinux.network{ subnet = %q })", err, cfg.Host, p, p.String())
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "farm network: %s %s, this host's cluster subnet\n", fm.Network().Bridge, p)
	return nil
}
