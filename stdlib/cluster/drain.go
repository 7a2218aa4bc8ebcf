package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Draining a host: `tinyfarm cluster drain HOST` writes a request to etcd
// (drain/HOST); HOST's own daemon, which owns its guests, executes it: it
// plans a target for each guest with the cluster's placement (HOST
// excluded), moves the guests one by one with colinux's migration, and
// switches each guest's routes and claim to the new host in one
// transaction once the guest runs there. It writes each guest's progress
// (drainstep/HOST/GUEST), which the command watches and prints. While
// drain/HOST exists the host is cordoned: placement skips it, `cluster
// status` shows it draining (or drained, once done), until `cluster
// undrain HOST`. A drain whose daemon died midway is resumed by the
// daemon when it starts again (a guest that ran on its target already,
// unswitched, is switched then: MoveFinder); running the command again
// attaches to it.
// A dry run (drainplan/HOST) only writes the plan.

// Drain states of a request.
const (
	DrainPending = "pending" // written, not picked up yet
	DrainRunning = "running" // the host's daemon works on it
	DrainDone    = "done"    // every guest moved or failed
)

// Step states of one guest.
const (
	StepPlanned = "planned"
	StepMoving  = "moving"
	StepDone    = "done"
	StepFailed  = "failed"
)

// DrainRequest is a drain of one host, and its outcome.
type DrainRequest struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	DryRun    bool      `json:"dry_run,omitempty"`
	State     string    `json:"state"`
	Requested time.Time `json:"requested"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
	Moved     int       `json:"moved"`
	Failed    int       `json:"failed"`
	// Error is why the drain as a whole failed (no steps ran).
	Error string `json:"error,omitempty"`
}

// DrainStep is one guest's move.
type DrainStep struct {
	Guest string `json:"guest"`
	From  string `json:"from"`
	To    string `json:"to,omitempty"`
	// Mode is "live" (a running guest of a driver that sends its state:
	// qemu) or "offline" (stopped, copied, started there: ns).
	Mode  string `json:"mode,omitempty"`
	State string `json:"state"`
	// Downtime is the migration's own, from the guest stopping (or
	// pausing) here to running there; Duration from the step's start to
	// the guest running there.
	Downtime time.Duration `json:"downtime,omitempty"`
	Duration time.Duration `json:"duration,omitempty"`
	IP       string        `json:"ip,omitempty"` // its address there
	Routes   []string      `json:"routes,omitempty"`
	Error    string        `json:"error,omitempty"`
	Note     string        `json:"note,omitempty"`
}

// LocalGuest is a guest of the draining host, as its farm knows it.
type LocalGuest struct {
	Name    string
	Mem     int64
	Driver  string
	Running bool
	// Live: the guest runs and its driver can move it live.
	Live bool
}

// MoveResult is what a Mover's Move did.
type MoveResult struct {
	Live     bool
	Downtime time.Duration
	Duration time.Duration
	IP       string // the guest's address there, no prefix
}

// Mover is how a host's daemon drains: its farm's guests, and the
// migration of one (colinux's Guest.Migrate, in the tinyfarm command).
// Move calls running as soon as the guest runs there, before it cleans up
// here (MigrateOptions.Running): the routes switch then. It calls back if
// the move then fails and the guest runs here again (MigrateOptions.Back):
// the routes switch back.
type Mover interface {
	Guests(ctx context.Context) ([]LocalGuest, error)
	Move(ctx context.Context, name string, to Host, live bool, running func(MoveResult), back func()) (MoveResult, error)
}

// MoveFinder is a Mover that can tell whether a guest runs on a host
// already, and at which address: so the next daemon finishes a move that
// a daemon which died made (the guest runs there) but did not switch
// (its routes and claim), instead of failing it.
type MoveFinder interface {
	RunsOn(ctx context.Context, name string, on Host) (ip string, running bool, err error)
}

func drainKey(host string, dry bool) string {
	if dry {
		return Prefix + "drainplan/" + host
	}
	return Prefix + "drain/" + host
}

func stepPrefix(host string, dry bool) string {
	if dry {
		return Prefix + "drainplanstep/" + host + "/"
	}
	return Prefix + "drainstep/" + host + "/"
}

// RequestDrain asks host's daemon to drain it (or, dryRun, to write the
// plan only). A drain of host already pending or running is returned as it
// is (attached, not restarted). A host that is down cannot drain: its
// daemon does the moves.
func (c *Client) RequestDrain(ctx context.Context, host string, dryRun bool) (DrainRequest, bool, error) {
	op := "cluster drain " + host
	hosts, err := c.Hosts(ctx)
	if err != nil {
		return DrainRequest{}, false, err
	}
	i := hostIndex(hosts, host)
	if i < 0 {
		return DrainRequest{}, false, fmt.Errorf("%s: no such host (tinyfarm cluster status lists them): %w", op, ErrNotFound)
	}
	if hosts[i].State != HostUp {
		return DrainRequest{}, false, fmt.Errorf("%s: the host is down; its own daemon moves its guests, so start it first (tinyfarm cluster start, on %s): %w", op, host, ErrInvalid)
	}
	key := drainKey(host, dryRun)
	var req DrainRequest
	attached := false
	err = c.call(ctx, op, func(ctx context.Context) error {
		r, err := c.etcd.Get(ctx, key)
		if err != nil {
			return err
		}
		guard := absent(key)
		if len(r.Kvs) > 0 {
			var old DrainRequest
			if json.Unmarshal(r.Kvs[0].Value, &old) == nil && old.State != DrainDone {
				req, attached = old, true
				return nil
			}
			guard = clientv3.Compare(clientv3.ModRevision(key), "=", r.Kvs[0].ModRevision)
		}
		tok := make([]byte, 4)
		randRead(tok)
		req = DrainRequest{ID: fmt.Sprintf("%d-%x", time.Now().Unix(), tok), Host: host, DryRun: dryRun, State: DrainPending, Requested: time.Now().UTC()}
		b, _ := json.Marshal(req)
		t, err := c.etcd.Txn(ctx).If(guard).Then(
			clientv3.OpPut(key, string(b)),
			clientv3.OpDelete(stepPrefix(host, dryRun), clientv3.WithPrefix()),
		).Commit()
		if err == nil && !t.Succeeded {
			err = errors.New("another drain request was written meanwhile; run it again")
		}
		return err
	})
	return req, attached, err
}

func hostIndex(hosts []Host, name string) int {
	for i, h := range hosts {
		if h.Name == name {
			return i
		}
	}
	return -1
}

// Undrain lets placement use host again; refused while its drain runs.
func (c *Client) Undrain(ctx context.Context, host string) error {
	return c.call(ctx, "cluster undrain "+host, func(ctx context.Context) error {
		r, err := c.etcd.Get(ctx, drainKey(host, false))
		if err != nil || len(r.Kvs) == 0 {
			return err
		}
		var req DrainRequest
		if json.Unmarshal(r.Kvs[0].Value, &req) == nil && req.State != DrainDone {
			return fmt.Errorf("its drain is %s: wait for it to end: %w", req.State, ErrInvalid)
		}
		_, err = c.etcd.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(drainKey(host, false)), "=", r.Kvs[0].ModRevision)).
			Then(clientv3.OpDelete(drainKey(host, false))).Commit()
		return err
	})
}

// DrainState reads host's drain (or plan) request and its steps by guest.
func (c *Client) DrainState(ctx context.Context, host string, dry bool) (DrainRequest, []DrainStep, int64, error) {
	var req DrainRequest
	var steps []DrainStep
	var rev int64
	err := c.call(ctx, "cluster drain "+host, func(ctx context.Context) error {
		r, err := c.etcd.Txn(ctx).Then(
			clientv3.OpGet(drainKey(host, dry)),
			clientv3.OpGet(stepPrefix(host, dry), clientv3.WithPrefix()),
		).Commit()
		if err != nil {
			return err
		}
		rev = r.Header.Revision
		req, steps = DrainRequest{}, nil
		if kvs := r.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			if err := json.Unmarshal(kvs[0].Value, &req); err != nil {
				return err
			}
		}
		for _, kv := range r.Responses[1].GetResponseRange().Kvs {
			var s DrainStep
			if json.Unmarshal(kv.Value, &s) == nil {
				steps = append(steps, s)
			}
		}
		return nil
	})
	return req, steps, rev, err
}

// WatchDrain calls fn with host's drain request and steps now and after
// every change, until the request id is done (returned) or ctx ends.
func (c *Client) WatchDrain(ctx context.Context, host, id string, dry bool, fn func(DrainRequest, []DrainStep)) (DrainRequest, error) {
	for {
		req, steps, rev, err := c.DrainState(ctx, host, dry)
		if err != nil {
			return req, err
		}
		fn(req, steps)
		if req.ID != id {
			return req, fmt.Errorf("cluster drain %s: the request was replaced: %w", host, ErrInvalid)
		}
		if req.State == DrainDone {
			return req, nil
		}
		wctx, cancel := context.WithCancel(ctx)
		wch := c.etcd.Watch(clientv3.WithRequireLeader(wctx), Prefix+"drain", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		select {
		case <-wch:
		case <-ctx.Done():
		case <-time.After(5 * time.Second): // a lost watch: read again
		}
		cancel()
		if ctx.Err() != nil {
			return req, ctx.Err()
		}
	}
}

// drainer is the daemon's side: it executes the requests for its host.
type drainer struct {
	c     *Client
	cfg   *Config
	mover Mover
	log   interface{ Info(string, ...any) }
}

// loop executes this host's drain and plan requests as they come, and a
// drain left running by a daemon that died.
func (d *drainer) loop(ctx context.Context) {
	for ctx.Err() == nil {
		rev := int64(0)
		for _, dry := range []bool{true, false} {
			req, _, r, err := d.c.DrainState(ctx, d.cfg.Host, dry)
			if err != nil {
				continue
			}
			rev = r
			if req.ID != "" && req.State != DrainDone {
				d.run(ctx, req)
			}
		}
		if rev == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		wch := d.c.etcd.Watch(clientv3.WithRequireLeader(wctx), Prefix+"drain", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		select {
		case <-wch:
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
		cancel()
	}
}

// exists is the transaction guard "key exists".
func exists(key string) clientv3.Cmp { return clientv3.Compare(clientv3.CreateRevision(key), ">", 0) }

// put applies ops while host's drain request exists (not undrained).
func (d *drainer) put(ctx context.Context, req DrainRequest, ops ...clientv3.Op) error {
	key := drainKey(d.cfg.Host, req.DryRun)
	return d.c.call(ctx, "cluster drain "+d.cfg.Host, func(ctx context.Context) error {
		t, err := d.c.etcd.Txn(ctx).If(exists(key)).Then(ops...).Commit()
		if err == nil && !t.Succeeded {
			return errors.New("the drain request is gone")
		}
		return err
	})
}

func opJSON(key string, v any) clientv3.Op {
	b, _ := json.Marshal(v)
	return clientv3.OpPut(key, string(b))
}

// run executes one request: plan, then (unless a dry run) move.
func (d *drainer) run(ctx context.Context, req DrainRequest) {
	self := d.cfg.Host
	if req.State == DrainPending {
		req.Started = time.Now().UTC()
	}
	req.State = DrainRunning
	if d.put(ctx, req, opJSON(drainKey(self, req.DryRun), req)) != nil {
		return
	}
	d.log.Info("cluster: drain", "host", self, "id", req.ID, "dry_run", req.DryRun)
	finish := func(err error) {
		if err != nil {
			req.Error = err.Error()
		}
		// Counted from the steps: a resumed drain counts the moves its
		// first daemon made too.
		if _, steps, _, err := d.c.DrainState(context.WithoutCancel(ctx), self, req.DryRun); err == nil {
			req.Moved, req.Failed = 0, 0
			for _, s := range steps {
				switch s.State {
				case StepDone:
					req.Moved++
				case StepFailed:
					req.Failed++
				}
			}
		}
		req.State, req.Finished = DrainDone, time.Now().UTC()
		d.put(context.WithoutCancel(ctx), req, opJSON(drainKey(self, req.DryRun), req))
	}
	_, old, _, err := d.c.DrainState(ctx, self, req.DryRun)
	if err != nil {
		finish(err)
		return
	}
	prev := map[string]DrainStep{}
	for _, s := range old {
		prev[s.Guest] = s
	}
	local, err := d.mover.Guests(ctx)
	if err != nil {
		finish(err)
		return
	}
	steps, err := d.plan(ctx, local, prev)
	if err != nil {
		finish(err)
		return
	}
	var ops []clientv3.Op
	for _, s := range steps {
		ops = append(ops, opJSON(stepPrefix(self, req.DryRun)+s.Guest, s))
	}
	if len(ops) > 0 && d.put(ctx, req, ops...) != nil {
		return
	}
	for _, s := range old {
		// Moved before the daemon died, its switch not written: finish
		// it if the guest runs there, else say so.
		if s.State == StepMoving && !hasStep(steps, s.Guest) && !req.DryRun {
			if s, ok := d.finishMoved(ctx, req, s); ok {
				d.log.Info("cluster: drain step finished", "guest", s.Guest, "to", s.To, "state", s.State)
				continue
			}
			s.State, s.Error = StepFailed, "the daemon stopped during this move; the guest is no longer here: check it on "+s.To+" (tinyfarm guests there) and its route (cluster.route)"
			d.put(ctx, req, opJSON(stepPrefix(self, req.DryRun)+s.Guest, s))
		}
	}
	if req.DryRun {
		finish(nil)
		return
	}
	for _, s := range steps {
		if ctx.Err() != nil {
			return // the daemon stops: the next one resumes
		}
		if s.State == StepPlanned {
			d.move(ctx, req, s, local, prev[s.Guest].State == StepMoving && prev[s.Guest].To == s.To)
		}
	}
	if ctx.Err() != nil {
		return
	}
	finish(nil)
}

func hasStep(steps []DrainStep, guest string) bool {
	for _, s := range steps {
		if s.Guest == guest {
			return true
		}
	}
	return false
}

// plan picks a target for each local guest: the cluster's placement by
// the facts and claims, this host and cordoned hosts excluded, counting
// the moves planned before it.
func (d *drainer) plan(ctx context.Context, local []LocalGuest, prev map[string]DrainStep) ([]DrainStep, error) {
	self := d.cfg.Host
	hosts, err := d.c.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	claims, err := d.c.Guests(ctx)
	if err != nil {
		return nil, err
	}
	var others []Host
	for _, h := range hosts {
		if h.Name != self {
			others = append(others, h)
		}
	}
	sort.Slice(local, func(i, j int) bool { return local[i].Name < local[j].Name })
	var steps []DrainStep
	for _, g := range local {
		s := DrainStep{Guest: g.Name, From: self, State: StepPlanned, Mode: "offline"}
		if g.Live {
			s.Mode = "live"
		}
		to, err := Choose(others, claims, PlaceSpec{Mem: max(g.Mem, 1), Driver: g.Driver})
		if p, ok := prev[g.Name]; ok && p.To != "" && p.State != StepDone {
			// A resumed drain keeps its earlier choice while that host
			// still fits (its copy there may be half done).
			if i := hostIndex(others, p.To); i >= 0 && others[i].State == HostUp && others[i].Draining == "" {
				to, err = others[i], nil
			}
		}
		if err != nil {
			s.State, s.Error = StepFailed, err.Error()
		} else {
			s.To = to.Name
			claims = append(claims, GuestRecord{Name: g.Name, Host: to.Name, Mem: g.Mem})
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// runsThere asks the target whether guest s runs there (a move made by a
// daemon that died): its address there, or ok=false when it does not or
// the Mover cannot tell.
func (d *drainer) runsThere(ctx context.Context, s DrainStep) (string, bool) {
	f, ok := d.mover.(MoveFinder)
	if !ok || s.To == "" {
		return "", false
	}
	hosts, err := d.c.Hosts(ctx)
	if err != nil {
		return "", false
	}
	i := hostIndex(hosts, s.To)
	if i < 0 {
		return "", false
	}
	ip, running, err := f.RunsOn(ctx, s.Guest, hosts[i])
	if err != nil || !running {
		return "", false
	}
	return ip, true
}

// interruptedNote marks a step a daemon finished after the one that moved
// the guest died before switching its routes.
const interruptedNote = "moved by a daemon that stopped before switching its routes; switched by the next (downtime not measured)"

// finishMoved finishes the step of a guest that is no longer here, moved
// by a daemon that died before switching its routes: if it runs on the
// target, the switch is made now and the step is done.
func (d *drainer) finishMoved(ctx context.Context, req DrainRequest, s DrainStep) (DrainStep, bool) {
	ip, ok := d.runsThere(ctx, s)
	if !ok {
		return s, false
	}
	s.State, s.IP, s.Error = StepDone, ip, ""
	if err := d.switchGuest(context.WithoutCancel(ctx), req, &s); err != nil {
		s.State, s.Error = StepFailed, "runs on "+s.To+", but switching its routes: "+err.Error()
		d.put(context.WithoutCancel(ctx), req, opJSON(stepPrefix(d.cfg.Host, false)+s.Guest, s))
		return s, true
	}
	s.Note = strings.TrimPrefix(s.Note+"; "+interruptedNote, "; ")
	d.put(context.WithoutCancel(ctx), req, opJSON(stepPrefix(d.cfg.Host, false)+s.Guest, s))
	return s, true
}

// move migrates one guest and switches its routes and claim. resumed: a
// daemon that died was moving it to the same host, so it may run there
// already: then the routes switch first, and the move only finishes here.
func (d *drainer) move(ctx context.Context, req DrainRequest, s DrainStep, local []LocalGuest, resumed bool) DrainStep {
	self := d.cfg.Host
	key := stepPrefix(self, false) + s.Guest
	began := time.Now()
	s.State = StepMoving
	d.put(ctx, req, opJSON(key, s))
	fail := func(err error) DrainStep {
		if ctx.Err() != nil {
			return s // the daemon stops: still moving, resumed by the next one
		}
		s.State, s.Error = StepFailed, err.Error()
		d.put(context.WithoutCancel(ctx), req, opJSON(key, s))
		d.log.Info("cluster: drain step failed", "guest", s.Guest, "to", s.To, "err", err)
		return s
	}
	hosts, err := d.c.Hosts(ctx)
	if err != nil {
		return fail(err)
	}
	i := hostIndex(hosts, s.To)
	if i < 0 {
		return fail(fmt.Errorf("host %s left the cluster", s.To))
	}
	live := false
	for _, g := range local {
		if g.Name == s.Guest {
			live = g.Live
		}
	}
	// The switch, as soon as the guest runs there.
	switched := false
	var switchErr error
	apply := func(res MoveResult) {
		s.Mode = "offline"
		if res.Live {
			s.Mode = "live"
		}
		s.Downtime, s.IP, s.State = res.Downtime, res.IP, StepDone
		s.Duration = time.Since(began) // until it runs there
		switchErr = d.switchGuest(context.WithoutCancel(ctx), req, &s)
		switched = true
	}
	if resumed {
		if ip, ok := d.runsThere(ctx, s); ok {
			apply(MoveResult{Live: s.Mode == "live", IP: ip})
			if switchErr == nil {
				s.Note = interruptedNote
			}
		}
	}
	res, err := d.mover.Move(ctx, s.Guest, hosts[i], live, func(r MoveResult) {
		if !switched {
			apply(r)
		}
	}, func() {
		if !switched || switchErr != nil {
			return
		}
		// It runs here again: its routes and claim come back.
		s.State = StepMoving
		if err := d.switchFrom(context.WithoutCancel(ctx), req, &s, s.To, self); err != nil {
			d.log.Info("cluster: drain: switching back", "guest", s.Guest, "err", err)
			return
		}
		switched, s.Routes = false, nil
	})
	if err != nil && !switched {
		return fail(err)
	}
	if !switched { // finished by an earlier, interrupted move: no address known
		apply(res)
	}
	switch {
	case switchErr != nil:
		s.State, s.Error = StepFailed, "moved, but switching its routes: "+switchErr.Error()
	case err != nil:
		s.Note = "runs there, routes switched, but: " + err.Error()
	}
	d.put(context.WithoutCancel(ctx), req, opJSON(key, s))
	d.log.Info("cluster: drain step", "guest", s.Guest, "to", s.To, "mode", s.Mode, "downtime", s.Downtime)
	return s
}

// switchGuest is the one transaction that makes the cluster follow a
// moved guest: its routes (the vhosts whose guest it is, owned by this
// host) now go to the new host and address, its claim names the new host
// and address (the old IP freed, the new one taken), the claimed memory
// moves with it, and the step is recorded done. Every proxy sees the new
// owner at the same revision.
func (d *drainer) switchGuest(ctx context.Context, req DrainRequest, s *DrainStep) error {
	return d.switchFrom(ctx, req, s, d.cfg.Host, s.To)
}

// switchFrom is switchGuest from host from to host to: this host to the
// target, or back when the move is undone (MigrateOptions.Back). s is
// recorded as this host's drain step.
func (d *drainer) switchFrom(ctx context.Context, req DrainRequest, s *DrainStep, from, to string) error {
	return d.c.call(ctx, "cluster drain switch "+s.Guest, func(ctx context.Context) error {
		for try := 0; try < maxRetries; try++ {
			r, err := d.c.etcd.Txn(ctx).Then(
				clientv3.OpGet(Prefix+"routes/", clientv3.WithPrefix()),
				clientv3.OpGet(Prefix+"guests/"+s.Guest),
				clientv3.OpGet(Prefix+"hostmem/"+from),
				clientv3.OpGet(Prefix+"hostmem/"+to),
				clientv3.OpGet(Prefix+"hostnet/"+to),
				clientv3.OpGet(Prefix+"ips/"+s.IP),
			).Commit()
			if err != nil {
				return err
			}
			var cmps []clientv3.Cmp
			var ops []clientv3.Op
			s.Routes, s.Note = nil, ""
			for _, kv := range r.Responses[0].GetResponseRange().Kvs {
				var rt Route
				if json.Unmarshal(kv.Value, &rt) != nil || rt.Guest != s.Guest || rt.Host != from {
					continue
				}
				_, port, err := net.SplitHostPort(rt.Addr)
				if err != nil || s.IP == "" {
					s.Note = "route " + rt.VHost + " kept: the guest has no address there"
					continue
				}
				rt.Host, rt.Addr = to, net.JoinHostPort(s.IP, port)
				cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision))
				ops = append(ops, opJSON(string(kv.Key), rt))
				s.Routes = append(s.Routes, rt.VHost)
			}
			if kvs := r.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
				var g GuestRecord
				if json.Unmarshal(kvs[0].Value, &g) == nil && g.Host == from {
					cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(kvs[0].Key)), "=", kvs[0].ModRevision))
					g.Host = to
					owner := ""
					if ik := r.Responses[5].GetResponseRange().Kvs; len(ik) > 0 {
						owner = string(ik[0].Value)
						cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(string(ik[0].Key)), "=", ik[0].ModRevision))
					} else {
						cmps = append(cmps, absent(Prefix+"ips/"+s.IP))
					}
					switch oldIP, _, _ := strings.Cut(g.IP, "/"); {
					case s.IP == "" || oldIP == s.IP:
					case owner != "" && owner != s.Guest:
						// The far farm gave it an address another guest
						// claims (its farm network is not the host's
						// cluster subnet): the claim keeps its address.
						s.Note = fmt.Sprintf("its address there, %s, is claimed by %s: give %s's farm its cluster subnet (colinux.network)", s.IP, owner, to)
					default:
						g.IP = s.IP + "/24"
						if nk := r.Responses[4].GetResponseRange().Kvs; len(nk) > 0 {
							if p, err := netip.ParsePrefix(string(nk[0].Value)); err == nil {
								g.IP, g.Gateway = s.IP+"/"+strconv.Itoa(p.Bits()), p.Addr().Next().String()
							}
						}
						ops = append(ops, clientv3.OpDelete(Prefix+"ips/"+oldIP), clientv3.OpPut(Prefix+"ips/"+s.IP, s.Guest))
					}
					ops = append(ops, opJSON(string(kvs[0].Key), g))
					for i, h := range []string{from, to} {
						memKey := Prefix + "hostmem/" + h
						n := int64(0)
						if kvs := r.Responses[2+i].GetResponseRange().Kvs; len(kvs) > 0 {
							n, _ = strconv.ParseInt(string(kvs[0].Value), 10, 64)
							cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(memKey), "=", kvs[0].ModRevision))
						} else {
							cmps = append(cmps, absent(memKey))
						}
						if i == 0 {
							n = max(n-g.Mem, 0)
						} else {
							n += g.Mem
						}
						ops = append(ops, clientv3.OpPut(memKey, strconv.FormatInt(n, 10)))
					}
				}
			}
			ops = append(ops, opJSON(stepPrefix(d.cfg.Host, false)+s.Guest, *s))
			cmps = append(cmps, exists(drainKey(d.cfg.Host, false)))
			t, err := d.c.etcd.Txn(ctx).If(cmps...).Then(ops...).Commit()
			if err != nil {
				return err
			}
			if t.Succeeded {
				return nil
			}
		}
		return fmt.Errorf("lost %d races in a row", maxRetries)
	})
}
