package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMover stands in for a farm in the fast drain tests: its guests
// "move" at once, taking the next address of the far host.
type fakeMover struct {
	mu     sync.Mutex
	guests map[string]LocalGuest
	moved  map[string]string // guest -> host
	fail   string            // a guest whose move fails
	// failLate: fail's move fails after the guest ran there (running
	// called), and it runs here again (back called), as a live move
	// whose far SSH check fails.
	failLate bool
	block    string      // a guest whose move waits for the daemon to stop
	moving   chan string // told the blocked (or dying) guest's name
	// die is a guest whose move gets it running there, then waits for
	// the daemon to stop before it could switch; dieGone: it is gone
	// here too (else a later move only finishes here, as Migrate's
	// resume does).
	die     string
	dieGone bool
	ips     map[string]string // guest -> its address where it was moved
}

// RunsOn makes fakeMover a MoveFinder.
func (m *fakeMover) RunsOn(_ context.Context, name string, on Host) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ips[name], m.moved[name] == on.Name, nil
}

func (m *fakeMover) Guests(context.Context) ([]LocalGuest, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []LocalGuest
	for _, g := range m.guests {
		out = append(out, g)
	}
	return out, nil
}

func (m *fakeMover) Move(ctx context.Context, name string, to Host, live bool, running func(MoveResult), back func()) (MoveResult, error) {
	m.mu.Lock()
	if name == m.block {
		m.mu.Unlock()
		m.moving <- name
		<-ctx.Done()
		return MoveResult{}, ctx.Err()
	}
	if name == m.fail && m.failLate {
		m.mu.Unlock()
		m.mu.Lock()
		ip := m.ips[name] // a live move on the bridge keeps its address
		m.mu.Unlock()
		running(MoveResult{Live: true, Downtime: 5 * time.Millisecond, IP: ip})
		back()
		return MoveResult{}, errors.New("the guest runs there but does not answer SSH")
	}
	if name == m.fail {
		m.mu.Unlock()
		return MoveResult{}, errors.New("the far disk is full")
	}
	if m.moved[name] == to.Name {
		// Runs there already: forget it here, as Migrate's resume does
		// (no address, no running callback).
		delete(m.guests, name)
		m.mu.Unlock()
		return MoveResult{}, nil
	}
	m.moved[name] = to.Name
	if m.ips == nil {
		m.ips = map[string]string{}
	}
	m.ips[name] = fmt.Sprintf("10.99.%d.%d", len(to.Name), len(m.moved)+1)
	res := MoveResult{Live: live, Downtime: 5 * time.Millisecond, Duration: 10 * time.Millisecond, IP: m.ips[name]}
	if name == m.die {
		if m.dieGone {
			delete(m.guests, name)
		}
		m.mu.Unlock()
		m.moving <- name
		<-ctx.Done()
		return MoveResult{}, ctx.Err()
	}
	delete(m.guests, name)
	m.mu.Unlock()
	running(res)
	return res, nil
}

// TestDrainFinishesAMoveWhoseDaemonDied: a's daemon dies after a guest
// runs on its target and before its routes switch; the next daemon asks
// the target (MoveFinder), finds it running there and switches its route
// and claim instead of failing the step: once with the guest gone from a,
// once with it still defined on a (the move then only finishes there).
func TestDrainFinishesAMoveWhoseDaemonDied(t *testing.T) {
	ctx := ctxT(t)
	mover := &fakeMover{guests: map[string]LocalGuest{}, moved: map[string]string{}, moving: make(chan string, 1)}
	cfgs, stopA := drainHosts(t, mover)
	c := connect(t, cfgs[1])
	for _, tc := range []struct {
		guest string
		gone  bool
	}{{"web1", true}, {"web2", false}} {
		mover.mu.Lock()
		mover.guests[claimSite(t, c, tc.guest)] = LocalGuest{Name: tc.guest, Mem: 1 << 20, Driver: "ns", Running: true}
		mover.die, mover.dieGone = tc.guest, tc.gone
		mover.mu.Unlock()
		req, _, err := c.RequestDrain(ctx, "a", false)
		if err != nil {
			t.Fatal(err)
		}
		<-mover.moving
		stopA()
		if _, steps, _, _ := c.DrainState(ctx, "a", false); len(steps) != 1 || steps[0].State != StepMoving {
			t.Fatalf("%s: after a's daemon died: %+v", tc.guest, steps)
		}
		mover.mu.Lock()
		mover.die = ""
		mover.mu.Unlock()
		stopA = serve(t, cfgs[0], ServeOptions{Mover: mover})
		final, err := c.WatchDrain(ctx, "a", req.ID, false, func(DrainRequest, []DrainStep) {})
		_, steps, _, _ := c.DrainState(ctx, "a", false)
		if err != nil || final.Moved != 1 || final.Failed != 0 || len(steps) != 1 || !strings.Contains(steps[0].Note, "switched by the next") {
			t.Fatalf("%s (gone from a: %v): resumed drain %+v %v, steps %+v", tc.guest, tc.gone, final, err, steps)
		}
		to, ip := mover.moved[tc.guest], mover.ips[tc.guest]
		routes, _ := c.Routes(ctx)
		claims, _ := c.Guests(ctx)
		for i, rt := range routes {
			if rt.Guest == tc.guest && (rt.Host != to || rt.Addr != ip+":80" || claims[i].Host != to || !strings.HasPrefix(claims[i].IP, ip+"/")) {
				t.Errorf("%s runs on %s at %s: route %+v, claim %+v", tc.guest, to, ip, rt, claims[i])
			}
		}
		if _, here := mover.guests[tc.guest]; here {
			t.Errorf("%s is still defined on a", tc.guest)
		}
	}
}

// drainHosts starts three in-process hosts a, b and c; a's daemon
// drains with mover. stopA stops a's daemon.
func drainHosts(t *testing.T, mover Mover) (cfgs []*Config, stopA func()) {
	ctx := ctxT(t)
	for i, name := range []string{"a", "b", "c"} {
		cfg := hostConfig(t, name, "127.0.0.1")
		if i == 0 {
			if err := Init(cfg, InitOptions{}); err != nil {
				t.Fatal(err)
			}
		} else {
			ca0, _ := LoadCA(cfgs[0].Dir)
			tok, err := connect(t, cfgs[0]).NewToken(ctx, cfgs[0].joinAddr(), ca0.Fingerprint(), time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if err := Join(ctx, cfg, tok); err != nil {
				t.Fatal(err)
			}
		}
		if i == 0 {
			stopA = serve(t, cfg, ServeOptions{Mover: mover})
		} else {
			serve(t, cfg, ServeOptions{})
		}
		cfgs = append(cfgs, cfg)
	}
	return cfgs, stopA
}

// claimSite claims guest name on a with a route name.test to it.
func claimSite(t *testing.T, c *Client, name string) string {
	t.Helper()
	ctx := ctxT(t)
	g, err := c.ClaimGuest(ctx, GuestSpec{Name: name, Host: "a", Mem: 64 << 20, Driver: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	ip, _, _ := strings.Cut(g.IP, "/")
	if err := c.SetRoute(ctx, Route{VHost: name + ".test", Host: "a", Guest: name, Addr: ip + ":80"}); err != nil {
		t.Fatal(err)
	}
	return name
}

// TestDrainPlanMoveSwitch: three in-process hosts; a's daemon drains a
// with a fake mover: the dry run writes a plan and moves nothing, the
// drain cordons a, moves each guest to b or c by placement, and switches
// each route and claim to the new host and address in the same
// transaction as the step; a failed move is reported and leaves its route;
// a second drain has nothing to do.
func TestDrainPlanMoveSwitch(t *testing.T) {
	ctx := ctxT(t)
	// web4's move fails after it ran there, and its routes had switched:
	// they switch back.
	mover := &fakeMover{guests: map[string]LocalGuest{}, moved: map[string]string{}, fail: "web4", failLate: true}
	cfgs, stopA := drainHosts(t, mover)
	c := connect(t, cfgs[1])
	for i := 1; i <= 4; i++ {
		mover.guests[claimSite(t, c, fmt.Sprintf("web%d", i))] = LocalGuest{Name: fmt.Sprintf("web%d", i), Mem: 64 << 20, Driver: "ns", Running: true}
	}

	// The plan: every guest to b or c, nothing moved, a not cordoned.
	req, _, err := c.RequestDrain(ctx, "a", true)
	if err != nil {
		t.Fatal(err)
	}
	final, err := c.WatchDrain(ctx, "a", req.ID, true, func(DrainRequest, []DrainStep) {})
	if err != nil {
		t.Fatal(err)
	}
	_, plan, _, _ := c.DrainState(ctx, "a", true)
	if len(plan) != 4 || len(mover.moved) != 0 || final.State != DrainDone {
		t.Fatalf("dry run: %+v, steps %+v, moved %v", final, plan, mover.moved)
	}
	per := map[string]int{}
	for _, s := range plan {
		if s.State != StepPlanned || (s.To != "b" && s.To != "c") || s.Mode != "offline" {
			t.Errorf("planned step %+v", s)
		}
		per[s.To]++
	}
	if per["b"] != 2 || per["c"] != 2 {
		t.Errorf("the plan does not spread by free memory: %v", per)
	}
	if h, _ := c.Hosts(ctx); h[0].Draining != "" {
		t.Errorf("a dry run cordoned a: %+v", h[0])
	}

	// The drain.
	before, _ := c.Guests(ctx)
	for _, g := range before {
		if g.Name == "web4" {
			ip, _, _ := strings.Cut(g.IP, "/")
			mover.mu.Lock()
			mover.ips = map[string]string{"web4": ip}
			mover.mu.Unlock()
		}
	}
	req, _, err = c.RequestDrain(ctx, "a", false)
	if err != nil {
		t.Fatal(err)
	}
	final, err = c.WatchDrain(ctx, "a", req.ID, false, func(DrainRequest, []DrainStep) {})
	if err != nil {
		t.Fatal(err)
	}
	if final.Moved != 3 || final.Failed != 1 {
		t.Fatalf("drain: %+v", final)
	}
	routes, _ := c.Routes(ctx)
	claims, _ := c.Guests(ctx)
	for i, rt := range routes {
		g := claims[i]
		if rt.Guest == "web4" {
			ip, _, _ := strings.Cut(g.IP, "/")
			if rt.Host != "a" || g.Host != "a" || rt.Addr != ip+":80" || ip != mover.ips["web4"] {
				t.Errorf("the failed move's route or claim did not come back: %+v %+v", rt, g)
			}
			continue
		}
		ip, _, _ := strings.Cut(g.IP, "/")
		if rt.Host != mover.moved[rt.Guest] || g.Host != rt.Host || rt.Addr != ip+":80" {
			t.Errorf("%s moved to %s: route %+v, claim %+v", rt.Guest, mover.moved[rt.Guest], rt, g)
		}
	}
	hosts, _ := c.Hosts(ctx)
	if hosts[0].Draining != "drained" {
		t.Errorf("a after its drain: %+v", hosts[0])
	}
	if _, err := Choose(hosts, claims, PlaceSpec{Mem: 1}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if h, _ := Choose(hosts, claims, PlaceSpec{Mem: 1, Strategy: "pack"}); h.Name == "a" {
			t.Fatal("placement chose the drained host")
		}
	}

	// Again: only the guest whose move failed is left.
	mover.fail = ""
	req, _, _ = c.RequestDrain(ctx, "a", false)
	final, err = c.WatchDrain(ctx, "a", req.ID, false, func(DrainRequest, []DrainStep) {})
	if err != nil || final.Moved != 1 || final.Failed != 0 {
		t.Fatalf("second drain: %+v %v", final, err)
	}
	req, _, _ = c.RequestDrain(ctx, "a", false)
	final, err = c.WatchDrain(ctx, "a", req.ID, false, func(DrainRequest, []DrainStep) {})
	if _, steps, _, _ := c.DrainState(ctx, "a", false); err != nil || final.Moved != 0 || len(steps) != 0 {
		t.Fatalf("third drain: %+v %v %+v", final, err, steps)
	}
	if err := c.Undrain(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if hosts, _ := c.Hosts(ctx); hosts[0].Draining != "" {
		t.Errorf("a after undrain: %+v", hosts[0])
	}

	// a's daemon stops in the middle of a drain (web6's move): the drain
	// stays running, web5's move stands; a's next daemon resumes it and
	// the drain ends with both moved.
	mover.mu.Lock()
	mover.guests["web5"] = LocalGuest{Name: "web5", Mem: 1 << 20, Driver: "ns"}
	mover.guests["web6"] = LocalGuest{Name: "web6", Mem: 1 << 20, Driver: "ns"}
	mover.block, mover.moving = "web6", make(chan string, 1)
	mover.mu.Unlock()
	req, _, err = c.RequestDrain(ctx, "a", false)
	if err != nil {
		t.Fatal(err)
	}
	<-mover.moving
	stopA()
	mid, steps, _, _ := c.DrainState(ctx, "a", false)
	if mid.State != DrainRunning || len(steps) != 2 || steps[0].State != StepDone || steps[1].State != StepMoving {
		t.Fatalf("after a's daemon stopped mid-drain: %+v %+v", mid, steps)
	}
	mover.mu.Lock()
	mover.block = ""
	mover.mu.Unlock()
	serve(t, cfgs[0], ServeOptions{Mover: mover})
	final, err = c.WatchDrain(ctx, "a", req.ID, false, func(DrainRequest, []DrainStep) {})
	if err != nil || final.Moved != 2 || final.Failed != 0 || mover.moved["web6"] == "" {
		t.Fatalf("resumed drain: %+v %v, moved %v", final, err, mover.moved)
	}
}

func TestGateArgs(t *testing.T) {
	state := "/var/lib/tinyfarm"
	ok := map[string][]string{
		`'tinyfarm' 'migrate' 'probe' 'web1'`:                                        {"migrate", "probe", "web1"},
		`'tinyfarm' 'migrate' 'recv' '--size' '100' '/var/lib/tinyfarm/disks/w.img'`: {"migrate", "recv", "--size", "100", "/var/lib/tinyfarm/disks/w.img"},
		`'x' 'migrate' 'revoke' 'it'\''s'`:                                           {"migrate", "revoke", "it's"},
	}
	for line, want := range ok {
		got, err := GateArgs(line, state)
		if err != nil || strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("GateArgs(%s) = %q, %v; want %q", line, got, err, want)
		}
	}
	for _, bad := range []string{
		`sh`, `'tinyfarm' 'run' 'x.lua'`, `'tinyfarm' 'migrate' 'probe' 'a'; rm -rf /`,
		`export TINYFARM_HOME='/tmp'; 'tinyfarm' 'migrate' 'probe' 'a'`,
		`'tinyfarm' 'migrate' 'recv' '--size' '1' '/etc/shadow'`,
		`'tinyfarm' 'migrate' 'sums' '/var/lib/tinyfarm/disks/../../../etc/shadow'`,
		`'tinyfarm' 'migrate' 'probe' $(id)`, `'tinyfarm' 'migrate' 'probe' 'unterminated`,
	} {
		if _, err := GateArgs(bad, state); !errors.Is(err, ErrInvalid) {
			t.Errorf("GateArgs(%s): %v, want refused", bad, err)
		}
	}
	if err := CheckGateDefinition(state, "/root/.ssh/x.img", nil, 0); err == nil {
		t.Error("a definition's disk outside the state dir passed")
	}
	if err := CheckGateDefinition(state, state+"/disks/w.img", []string{"/etc/shadow"}, 0); err == nil {
		t.Error("a definition's kernel outside the state dir passed")
	}
	if err := CheckGateDefinition(state, state+"/disks/w.img", []string{"", state + "/cache/core.gz"}, 1); err == nil {
		t.Error("a definition with a share passed")
	}
	if err := CheckGateDefinition(state, state+"/disks/w.img", []string{"", state + "/cache/core.gz"}, 0); err != nil {
		t.Error(err)
	}
	if _, err := GateArgs(`'tinyfarm' 'migrate' 'probe' 'w' '--share' '/'`, state); err == nil {
		t.Error("a probe with a share passed")
	}
}

func TestHostKeysBlock(t *testing.T) {
	hosts := []Host{
		{Facts: Facts{Name: "a", ClusterKey: "ssh-ed25519 AAAAself"}},
		{Facts: Facts{Name: "b", ClusterKey: "ssh-ed25519 AAAAbbb"}},
		{Facts: Facts{Name: "c"}},
	}
	block := HostKeysBlock("a", hosts, GateCommand("/usr/bin/tinyfarm", "/var/lib/x y"))
	want := `command="TINYFARM_HOME='/var/lib/x y' exec '/usr/bin/tinyfarm' cluster gate",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty ssh-ed25519 AAAAbbb tinyfarm-cluster:b`
	if !strings.Contains(block, want+"\n") || strings.Contains(block, "AAAAself") || strings.Count(block, "\n") != 3 {
		t.Fatalf("block:\n%s", block)
	}
	user := "ssh-ed25519 AAAAuser me@laptop\n"
	text := replaceBlock(user, block)
	if text != user+block {
		t.Fatalf("first write:\n%s", text)
	}
	block2 := HostKeysBlock("a", hosts[:1], "x")
	if got := replaceBlock(text+"ssh-rsa AAAAlater\n", block2); got != user+"ssh-rsa AAAAlater\n"+block2 {
		t.Fatalf("rewrite:\n%s", got)
	}
}
