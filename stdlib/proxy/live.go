package proxy

import (
	"context"
	"maps"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// The live routing table of a Server: loaded whole at start (and when the
// registry's base file is replaced), then kept up to date by applying the
// registry journal's new records, so a route change costs what it changes.
// Requests read the current snapshot without a lock (s.routes); the
// snapshots are immutable, and a change builds the next one sharing what it
// does not touch.

// liveRoutes is the route state behind the snapshots (guarded by s.mu).
type liveRoutes struct {
	st     *store              // the registry as last read; nil: not yet
	byAddr map[string]*backend // the backend of each address routed to
	refs   map[*backend]int    // how many routes use each backend
}

func (s *Server) newBackend(addr string) *backend {
	return &backend{addr: addr, pool: newBackendPool(addr, s.dialer, s.opts.MaxIdleConnsPerHost)}
}

// buildSnapshot turns a table into a snapshot, reusing the backends of the
// previous snapshot so their state survives a reload.
func (s *Server) buildSnapshot(t Table, prev *snapshot) *snapshot {
	reuse := map[string]*backend{}
	prev.each(func(b *backend) { reuse[b.addr] = b })
	get := func(addr string) *backend {
		if b, ok := reuse[addr]; ok {
			return b
		}
		b := s.newBackend(addr)
		reuse[addr] = b
		return b
	}
	sn := &snapshot{exact: map[string]*backend{}, wild: map[string]*backend{}}
	for _, v := range t.VHosts {
		switch b := get(v.Backend()); {
		case v.Host == DefaultHost:
			sn.def = b
		case strings.HasPrefix(v.Host, "*."):
			sn.wild[v.Host[2:]] = b
		default:
			sn.exact[v.Host] = b
		}
	}
	return sn
}

// reload brings the live table up to date with the registry: the journal
// records appended since the last reload are applied to it; a replaced
// base file (or full) loads the whole table again. In-flight requests keep
// the backend they started with. On an error the previous table stays.
func (s *Server) reload(full bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lv := &s.live
	if lv.st != nil && !full {
		recs, again, err := lv.st.refresh()
		if err != nil {
			return err
		}
		if !again {
			if len(recs) > 0 {
				s.applyRecords(recs)
			}
			return nil
		}
	}
	st, err := loadStore(s.opts.RoutesFile)
	if err != nil {
		return err // keep serving the previous table
	}
	lv.st = st
	prev := s.routes.Load()
	next := s.buildSnapshot(st.t, prev)
	s.routes.Store(next)
	lv.byAddr, lv.refs = map[string]*backend{}, map[*backend]int{}
	for _, v := range st.t.VHosts {
		b := next.route(v.Host)
		lv.byAddr[b.addr] = b
		lv.refs[b]++
	}
	// Backends that left the table drop their idle connections; requests
	// still running on them finish and close theirs.
	prev.each(func(b *backend) {
		if lv.refs[b] == 0 {
			b.pool.closeIdle(true)
		}
	})
	s.syncForwards(st.t.Forwards)
	s.opts.Logger.Info("proxy: routes loaded", "vhosts", len(st.t.VHosts), "forwards", len(st.t.Forwards))
	return nil
}

// applyRecords applies journal records (already applied to s.live.st.t)
// to the live snapshot: the next snapshot shares the exact map (changes go
// to its small recent map), the maps a record does not touch and the
// backends of the routes it does not change.
func (s *Server) applyRecords(recs []journalRecord) {
	lv := &s.live
	prev := s.routes.Load()
	next := &snapshot{exact: prev.exact, wild: prev.wild, def: prev.def, recent: prev.recent}
	var ownRecent, ownWild, forwards bool
	var released []*backend
	set := func(host string, b *backend) {
		var m map[string]*backend
		key := host
		switch {
		case host == DefaultHost:
			old := next.def
			next.def = b
			released = append(released, old)
			return
		case strings.HasPrefix(host, "*."):
			if !ownWild {
				next.wild, ownWild = maps.Clone(next.wild), true
			}
			m, key = next.wild, host[2:]
		default:
			if !ownRecent {
				next.recent, ownRecent = maps.Clone(next.recent), true
				if next.recent == nil {
					next.recent = map[string]*backend{}
				}
			}
			old, _ := next.exactRoute(host)
			released = append(released, old)
			next.recent[host] = b
			return
		}
		released = append(released, m[key])
		if b == nil {
			delete(m, key)
		} else {
			m[key] = b
		}
	}
	for _, rec := range recs {
		for _, h := range rec.RemoveHosts {
			set(h, nil)
		}
		for _, v := range rec.VHosts {
			addr := v.Backend()
			b := lv.byAddr[addr]
			if b == nil {
				b = s.newBackend(addr)
				lv.byAddr[addr] = b
			}
			lv.refs[b]++
			set(v.Host, b)
		}
		forwards = forwards || len(rec.Forwards)+len(rec.RemoveListens) > 0
	}
	if len(next.recent) > maxRecent {
		// Folded into a new exact map: a copy of the table every
		// maxRecent changes keeps lookups to two map reads at most.
		exact := maps.Clone(next.exact)
		for h, b := range next.recent {
			if b == nil {
				delete(exact, h)
			} else {
				exact[h] = b
			}
		}
		next.exact, next.recent = exact, nil
	}
	s.routes.Store(next)
	for _, b := range released {
		if b == nil {
			continue
		}
		if lv.refs[b]--; lv.refs[b] == 0 {
			delete(lv.refs, b)
			delete(lv.byAddr, b.addr)
			b.pool.closeIdle(true)
		}
	}
	if forwards {
		s.syncForwards(lv.st.t.Forwards)
	}
	s.opts.Logger.Info("proxy: routes changed", "records", len(recs), "vhosts", len(lv.st.t.VHosts), "forwards", len(lv.st.t.Forwards))
}

// maxRecent is how many changed exact hosts a snapshot keeps beside its
// exact map before folding them in.
const maxRecent = 128

// exactRoute returns the backend of the exact host host: a recent
// change's, else the exact map's.
func (sn *snapshot) exactRoute(host string) (*backend, bool) {
	if len(sn.recent) != 0 {
		if b, ok := sn.recent[host]; ok {
			return b, b != nil
		}
	}
	b, ok := sn.exact[host]
	return b, ok
}

// route returns the backend of the vhost host (as stored: exact,
// "*.wildcard" or DefaultHost), nil if none.
func (sn *snapshot) route(host string) *backend {
	switch {
	case host == DefaultHost:
		return sn.def
	case strings.HasPrefix(host, "*."):
		return sn.wild[host[2:]]
	}
	b, _ := sn.exactRoute(host)
	return b
}

// watch reloads the routes when the registry's files change. It watches
// the directory (an atomic rename replaces the base file) and also polls.
func (s *Server) watch(ctx context.Context) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	w, err := fsnotify.NewWatcher()
	if err == nil {
		defer w.Close()
		if err = w.Add(filepath.Dir(s.opts.RoutesFile)); err == nil {
			events, errs = w.Events, w.Errors
		}
	}
	if err != nil {
		s.opts.Logger.Warn("proxy: file watch unavailable, polling", "err", err)
	}
	tick := time.NewTicker(s.opts.PollInterval)
	defer tick.Stop()
	base, journal := filepath.Base(s.opts.RoutesFile), filepath.Base(journalPath(s.opts.RoutesFile))
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if n := filepath.Base(ev.Name); n != base && n != journal {
				continue
			}
		case err := <-errs:
			s.opts.Logger.Warn("proxy: file watch", "err", err)
			continue
		case <-tick.C:
		}
		if err := s.reload(false); err != nil {
			s.opts.Logger.Error("proxy: reload routes; keeping the previous table", "err", err)
		}
	}
}
