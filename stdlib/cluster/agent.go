package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// InitOptions describe the first host of a new cluster.
type InitOptions struct {
	Settings Settings // default DefaultSettings()
}

// Init prepares the first host of a new cluster in cfg.Dir: the cluster
// CA, the host's certificate, and a config whose first Serve starts a new
// etcd cluster with this host as its only member.
func Init(cfg *Config, opts InitOptions) error {
	cfg.Embedded = true
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, ConfigFile)); err == nil {
		return fmt.Errorf("cluster init: %s is already in a cluster (tinyfarm cluster leave first): %w", cfg.Dir, ErrInvalid)
	}
	if opts.Settings == (Settings{}) {
		opts.Settings = DefaultSettings()
	}
	if _, err := opts.Settings.validate(); err != nil {
		return err
	}
	tok := make([]byte, 8)
	if _, err := randRead(tok); err != nil {
		return err
	}
	ca, err := NewCA(cfg.Host)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("cluster init: %w", err)
	}
	if err := ca.Save(cfg.Dir); err != nil {
		return err
	}
	if err := ca.IssueHost(cfg.Dir, cfg.Host, []net.IP{net.ParseIP(cfg.Advertise)}); err != nil {
		return err
	}
	cfg.Bootstrap = &Bootstrap{
		InitialCluster: cfg.Host + "=" + cfg.peerURL(),
		Token:          fmt.Sprintf("tinyfarm-%x", tok),
		Settings:       opts.Settings,
	}
	return cfg.Save()
}

// Join prepares this host (cfg: its name, address, ports) to join the
// cluster of tok: the join endpoint admits it (its certificate, etcd's
// MemberAdd), and its first Serve starts its member as part of that
// cluster. The member must start soon: until it does, the cluster counts
// it as a missing member.
func Join(ctx context.Context, cfg *Config, tok Token) error {
	cfg.Embedded = true
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, ConfigFile)); err == nil {
		return fmt.Errorf("cluster join: %s is already in a cluster (tinyfarm cluster leave first): %w", cfg.Dir, ErrInvalid)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("cluster join: %w", err)
	}
	st, endpoints, err := requestJoin(ctx, cfg, tok)
	if err != nil {
		return err
	}
	cfg.Endpoints = append([]string{cfg.clientURL()}, endpoints...)
	cfg.Bootstrap = &Bootstrap{InitialCluster: st.initialCluster, Existing: true, Token: st.token}
	return cfg.Save()
}

// UseExternal prepares this host to use an existing etcd cluster: no
// member runs here; cfg has the endpoints and certificate files.
func UseExternal(ctx context.Context, cfg *Config) error {
	cfg.Embedded = false
	cfg.defaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	c, err := Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.InitSettings(ctx, DefaultSettings()); err != nil {
		return err
	}
	return cfg.Save()
}

// ServeOptions are what the daemon of a host does besides its member.
type ServeOptions struct {
	// Facts returns the host's facts; called at start and every
	// FactsInterval. Default: LocalFacts.
	Facts func(ctx context.Context) Facts
	// FactsInterval is how often facts are refreshed. Default 30s.
	FactsInterval time.Duration
	// ProxyListen, when set, runs the embedded proxy there, serving every
	// vhost of the cluster.
	ProxyListen string
	// LocalRoutes is this host's own routing table (the proxy registry
	// file of its state dir); its vhosts are served too. Default: none.
	LocalRoutes string
	// Mover, when set, executes this host's drains (`cluster drain`):
	// its farm's guests and their migration.
	Mover Mover
	// Gate is the forced command the other hosts' cluster keys run here
	// (GateCommand); with it the daemon keeps them in authorized_keys.
	Gate string
	// Ready is called once the member serves, the host is registered and
	// the routes are written.
	Ready func()
	// Logger gets the daemon's events. Default: discarded.
	Logger *slog.Logger
}

// RoutesFile is where the daemon writes the proxy table it serves.
func RoutesFile(dir string) string { return filepath.Join(dir, "routes.json") }

// Serve runs a host's cluster daemon until ctx ends: its etcd member (when
// embedded), its lease and facts, the join endpoint, the routes every
// proxy serves, and (with ProxyListen) the proxy itself.
func Serve(ctx context.Context, cfg *Config, opts ServeOptions) error {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Facts == nil {
		opts.Facts = func(context.Context) Facts { return LocalFacts(nil) }
	}
	if opts.ProxyListen == "" {
		opts.ProxyListen = cfg.ProxyListen
	}
	if opts.FactsInterval == 0 {
		opts.FactsInterval = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var member *Member
	if cfg.Embedded {
		st := memberStart{}
		if _, err := os.Stat(filepath.Join(cfg.Dir, "etcd", "member")); errors.Is(err, fs.ErrNotExist) && cfg.Bootstrap != nil {
			st = memberStart{initialCluster: cfg.Bootstrap.InitialCluster, existing: cfg.Bootstrap.Existing, token: cfg.Bootstrap.Token}
		}
		// A restarted member of a cluster that lost quorum waits for the
		// others; it becomes ready once a majority is back.
		m, err := startMember(ctx, cfg, st)
		if err != nil {
			return err
		}
		member = m
		defer member.Close()
		var others []string
		for _, e := range cfg.Endpoints {
			if e != cfg.clientURL() {
				others = append(others, e)
			}
		}
		if len(others) > 0 {
			if err := member.promote(ctx, cfg, others); err != nil {
				return err
			}
		}
		log.Info("cluster: etcd member ready", "host", cfg.Host, "client", cfg.clientURL())
	}
	c, err := Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if cfg.Bootstrap != nil && !cfg.Bootstrap.Existing && cfg.Bootstrap.Settings != (Settings{}) {
		if err := c.InitSettings(ctx, cfg.Bootstrap.Settings); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errc := make(chan error, 4)
	if cfg.Embedded {
		if ca, err := LoadCA(cfg.Dir); err == nil {
			ln, err := net.Listen("tcp", cfg.joinAddr())
			if err != nil {
				return fmt.Errorf("cluster join endpoint %s: %w", cfg.joinAddr(), err)
			}
			tok := ""
			if cfg.Bootstrap != nil {
				tok = cfg.Bootstrap.Token
			}
			wg.Add(1)
			go func() { defer wg.Done(); errc <- serveJoin(ctx, ln, cfg, c, ca, tok) }()
		}
	}
	if _, err := EnsureClusterKey(cfg.Dir); err != nil {
		return err
	}
	registered := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); keepRegistered(ctx, c, cfg, opts, log, registered) }()
	rw := &routeWriter{c: c, cfg: cfg, local: opts.LocalRoutes, log: log, kick: make(chan struct{}, 1)}
	wrote := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.WatchRoutes(ctx, rw.set)
	}()
	go func() { defer wg.Done(); rw.loop(ctx, wrote) }()
	wg.Add(1)
	go func() { defer wg.Done(); keepHostKeys(ctx, c, cfg, opts.Gate, log) }()
	if opts.Mover != nil {
		d := &drainer{c: c, cfg: cfg, mover: opts.Mover, log: log}
		wg.Add(1)
		go func() { defer wg.Done(); d.loop(ctx) }()
	}
	if opts.ProxyListen != "" {
		ln, err := net.Listen("tcp", opts.ProxyListen)
		if err != nil {
			return fmt.Errorf("cluster proxy %s: %w", opts.ProxyListen, err)
		}
		srv, err := proxy.NewServer(proxy.Options{RoutesFile: RoutesFile(cfg.Dir), Logger: log, PollInterval: time.Second})
		if err != nil {
			ln.Close()
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); errc <- srv.Serve(ctx, ln) }()
	}
	for _, ch := range []chan struct{}{registered, wrote} {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
	log.Info("cluster: ready", "host", cfg.Host)
	if opts.Ready != nil {
		opts.Ready()
	}
	var memberErr <-chan error
	var memberStop <-chan struct{}
	if member != nil {
		memberErr, memberStop = member.Err(), member.etcd.Server.StopNotify()
		wg.Add(1)
		go func() { defer wg.Done(); keepEndpoints(ctx, c, cfg, log) }()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-memberErr:
		return fmt.Errorf("cluster member %s: %w", cfg.Host, err)
	case <-memberStop:
		return fmt.Errorf("cluster member %s stopped (removed from the cluster?); see %s", cfg.Host, filepath.Join(cfg.Dir, "etcd.log"))
	case err := <-errc:
		return err
	}
}

// keepEndpoints records the members' client URLs in the host's config as
// they change, so the CLI on this host reaches the cluster through the
// other members too (also while this host's daemon is down).
func keepEndpoints(ctx context.Context, c *Client, cfg *Config, log *slog.Logger) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	last := slices.Clone(cfg.Endpoints)
	for {
		var urls []string
		err := c.call(ctx, "cluster members", func(ctx context.Context) error {
			ml, err := c.etcd.MemberList(ctx, clientv3.WithSerializable())
			if err != nil {
				return err
			}
			urls = []string{cfg.clientURL()}
			for _, m := range ml.Members {
				for _, u := range m.ClientURLs {
					if u != cfg.clientURL() {
						urls = append(urls, u)
					}
				}
			}
			return nil
		})
		if err == nil && !slices.Equal(urls, last) {
			if err := saveEndpoints(cfg.Dir, urls); err != nil {
				log.Warn("cluster: endpoints", "err", err)
			} else {
				last = urls
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// keepRegistered keeps the host's lease alive, registering again whenever
// it is lost (etcd was unreachable for longer than the TTL), and refreshes
// its facts.
func keepRegistered(ctx context.Context, c *Client, cfg *Config, opts ServeOptions, log *slog.Logger, registered chan struct{}) {
	once := sync.Once{}
	for ctx.Err() == nil {
		f := cfg.stamp(opts.Facts(ctx))
		p, err := c.Register(ctx, f)
		if err != nil {
			log.Warn("cluster: register", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		once.Do(func() { close(registered) })
		tick := time.NewTicker(opts.FactsInterval)
	alive:
		for {
			select {
			case <-ctx.Done():
				tick.Stop()
				// Going away on purpose: down at once, not after the TTL.
				sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				p.Stop(sctx)
				cancel()
				return
			case <-p.Lost():
				log.Warn("cluster: lease lost; registering again")
				break alive
			case <-tick.C:
				f := cfg.stamp(opts.Facts(ctx))
				if err := p.UpdateFacts(ctx, f); err != nil {
					log.Warn("cluster: facts", "err", err)
				}
			}
		}
		tick.Stop()
	}
}

// routeWriter writes the proxy table of this host from the cluster's
// routes, the hosts' proxy addresses and the host's own routes. A change
// of routes writes only the vhosts it changed; the whole table is
// computed again only after a full list of the routes, or when the hosts'
// proxy addresses or the local routes changed (checked once a second).
type routeWriter struct {
	c     *Client
	cfg   *Config
	local string
	log   *slog.Logger
	kick  chan struct{}

	mu     sync.Mutex
	routes map[string]Route // the cluster's, by vhost
	dirty  map[string]bool  // vhosts changed since the last write
	full   bool             // the next write computes the whole table
	have   bool

	// What the table in file was computed from (loop's goroutine only).
	file     *proxy.TableFile // the proxy's routes file; nil until the first write
	addrs    map[string]string
	localSig string
	localHas map[string]bool
	localTab proxy.Table
}

func (w *routeWriter) set(u RouteUpdate) {
	w.mu.Lock()
	if u.Full || w.routes == nil {
		w.routes, w.dirty, w.full = make(map[string]Route, len(u.Routes)), map[string]bool{}, true
	}
	for _, r := range u.Routes {
		w.routes[r.VHost] = r
		w.dirty[r.VHost] = true
	}
	for _, vh := range u.Removed {
		delete(w.routes, vh)
		w.dirty[vh] = true
	}
	w.have = true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// loop writes the table on every change of the routes, and looks once a
// second for changes of the hosts or of the local table.
func (w *routeWriter) loop(ctx context.Context, wrote chan struct{}) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	once := sync.Once{}
	for {
		ticked := false
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
		case <-tick.C:
			ticked = true
		}
		if err := w.write(ctx, ticked); err != nil {
			w.log.Warn("cluster: routes", "err", err)
			w.mu.Lock()
			w.full = true // what was taken is not written: start over
			w.mu.Unlock()
			continue
		}
		if w.file != nil {
			once.Do(func() { close(wrote) })
		}
	}
}

// write brings the routes file up to date; look: look again at the
// hosts' proxy addresses and at the local routes first.
func (w *routeWriter) write(ctx context.Context, look bool) error {
	w.mu.Lock()
	have, full := w.have, w.full
	w.mu.Unlock()
	if !have {
		return nil
	}
	if look || w.file == nil {
		changed, err := w.lookAround(ctx)
		if err != nil {
			return err
		}
		full = full || changed || w.file == nil
	}
	w.mu.Lock()
	dirty := w.dirty
	w.dirty, w.full = map[string]bool{}, false
	var all []Route
	var set []proxy.VHost
	var remove []string
	if full {
		all = make([]Route, 0, len(w.routes))
		for _, r := range w.routes {
			all = append(all, r)
		}
	} else {
		for vh := range dirty {
			if w.localHas[vh] {
				continue // the host's own route for it wins
			}
			r, ok := w.routes[vh]
			var v proxy.VHost
			if ok {
				v, ok = proxyVHost(w.cfg.Host, r, w.addrs)
			}
			if ok {
				set = append(set, v)
			} else {
				remove = append(remove, vh)
			}
		}
	}
	w.mu.Unlock()
	if w.file == nil {
		w.file = proxy.NewTableFile(RoutesFile(w.cfg.Dir))
	}
	var err error
	if full {
		slices.SortFunc(all, func(a, b Route) int { return strings.Compare(a.VHost, b.VHost) })
		_, err = w.file.Write(ProxyTable(w.cfg.Host, all, w.addrs, w.localTab))
	} else if len(set)+len(remove) > 0 {
		_, err = w.file.Apply(set, remove)
	}
	if err != nil {
		w.file = nil
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// lookAround reads the hosts' proxy addresses and the local routes;
// changed says whether either differs from what the table was made of.
func (w *routeWriter) lookAround(ctx context.Context) (changed bool, err error) {
	// Serializable: a host that lost quorum keeps serving what it knew.
	hosts, err := w.c.Hosts(ctx, clientv3.WithSerializable())
	if err != nil {
		return false, err
	}
	addrs := map[string]string{}
	for _, h := range hosts {
		addrs[h.Name] = h.ProxyAddr
	}
	if !maps.Equal(addrs, w.addrs) {
		w.addrs, changed = addrs, true
	}
	if w.local == "" {
		return changed, nil
	}
	if sig := proxy.TableSignature(w.local); sig != w.localSig || w.localHas == nil {
		local, err := proxy.LoadTable(w.local)
		if err != nil {
			return false, err
		}
		w.localTab, w.localSig, w.localHas = local, sig, map[string]bool{}
		for _, v := range local.VHosts {
			w.localHas[v.Host] = true
		}
		changed = true
	}
	return changed, nil
}

// saveEndpoints rewrites only the endpoints of the config file in dir.
func saveEndpoints(dir string, urls []string) error {
	p := filepath.Join(dir, ConfigFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	raw["endpoints"] = urls
	return fsutil.WriteJSONAtomic(p, raw, 0o600)
}
