package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

func newTestRegistry(t *testing.T) *Registry {
	return NewRegistry(t.TempDir(), StaticResolver{"web1": "10.77.0.2", "web2": "10.77.0.3"})
}

func TestRegistryIdempotentAndCheck(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	spec := VHostSpec{Host: "Web1.Example.com.", To: "web1", Port: 80}

	plan, err := r.VHost(ctx, spec, ChangeOptions{Check: true})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Changed || !strings.Contains(plan.Diff, "+vhost web1.example.com -> 10.77.0.2:80 (guest web1)") {
		t.Errorf("check mode: changed=%v diff:\n%s", plan.Changed, plan.Diff)
	}
	if _, err := os.Stat(r.Path()); !os.IsNotExist(err) {
		t.Fatalf("check mode wrote the registry: %v", err)
	}

	ch, err := r.VHost(ctx, spec, ChangeOptions{})
	if err != nil || !ch.Changed || ch.Diff != plan.Diff {
		t.Fatalf("first add: %+v %v", ch, err)
	}
	ch, err = r.VHost(ctx, spec, ChangeOptions{})
	if err != nil || ch.Changed || ch.Diff != "" {
		t.Fatalf("second add should be unchanged: %+v %v", ch, err)
	}
	tab, err := r.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []VHost{{Host: "web1.example.com", To: "web1", Guest: true, Addr: "10.77.0.2", Port: 80}}
	if fmt.Sprint(tab.VHosts) != fmt.Sprint(want) {
		t.Errorf("routes: %+v, want %+v", tab.VHosts, want)
	}

	// Remove is idempotent too, and check mode does not write.
	ch, err = r.Remove(ctx, RemoveSpec{Host: "web1.example.com"}, ChangeOptions{Check: true})
	if err != nil || !ch.Changed || !strings.Contains(ch.Diff, "-vhost web1.example.com") {
		t.Fatalf("remove plan: %+v %v", ch, err)
	}
	if tab, _ := r.Routes(ctx); len(tab.VHosts) != 1 {
		t.Fatalf("check-mode remove wrote: %+v", tab)
	}
	if ch, err = r.Remove(ctx, RemoveSpec{Host: "web1.example.com"}, ChangeOptions{}); err != nil || !ch.Changed {
		t.Fatalf("remove: %+v %v", ch, err)
	}
	if ch, err = r.Remove(ctx, RemoveSpec{Host: "web1.example.com"}, ChangeOptions{}); err != nil || ch.Changed {
		t.Fatalf("second remove should be unchanged: %+v %v", ch, err)
	}
}

func TestRegistryConflictAndReplace(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	if _, err := r.VHost(ctx, VHostSpec{Host: "a.test", To: "web1", Port: 80}, ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := r.VHost(ctx, VHostSpec{Host: "a.test", To: "web2", Port: 80}, ChangeOptions{})
	if !errors.Is(err, ErrConflict) || !strings.HasPrefix(err.Error(), "proxy vhost a.test: already routed to web1") {
		t.Fatalf("duplicate host: %v", err)
	}
	ch, err := r.VHost(ctx, VHostSpec{Host: "a.test", To: "web2", Port: 80, Replace: true}, ChangeOptions{})
	if err != nil || !ch.Changed || !strings.Contains(ch.Diff, "+vhost a.test -> 10.77.0.3:80 (guest web2)") {
		t.Fatalf("replace: %+v %v", ch, err)
	}
	// The same guest at a new address is an update, not a conflict.
	r2 := NewRegistry(r.dir, StaticResolver{"web2": "10.77.0.9"})
	if ch, err := r2.VHost(ctx, VHostSpec{Host: "a.test", To: "web2", Port: 80}, ChangeOptions{}); err != nil || !ch.Changed {
		t.Fatalf("guest moved: %+v %v", ch, err)
	}
	if _, err := r.Forward(ctx, ForwardSpec{Listen: "2201", To: "web1", Port: 22}, ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = r.Forward(ctx, ForwardSpec{Listen: ":2201", To: "web2", Port: 22}, ChangeOptions{})
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate forward: %v", err)
	}
}

func TestRegistryBadRoutes(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t)
	cases := []struct {
		name string
		err  error
		do   func() error
		msg  string
	}{
		{"bad host", ErrInvalid, func() error {
			_, err := r.VHost(ctx, VHostSpec{Host: "bad_host!.test", To: "web1", Port: 80}, ChangeOptions{})
			return err
		}, `proxy vhost: host "bad_host!.test": character '_' not allowed`},
		{"wildcard in the middle", ErrInvalid, func() error {
			_, err := r.VHost(ctx, VHostSpec{Host: "a.*.test", To: "web1", Port: 80}, ChangeOptions{})
			return err
		}, `proxy vhost: host "a.*.test"`},
		{"wildcard TLD", ErrInvalid, func() error {
			_, err := r.VHost(ctx, VHostSpec{Host: "*.test", To: "web1", Port: 80}, ChangeOptions{})
			return err
		}, `proxy vhost: host "*.test": wildcard needs`},
		{"port zero", ErrInvalid, func() error {
			_, err := r.VHost(ctx, VHostSpec{Host: "a.test", To: "web1"}, ChangeOptions{})
			return err
		}, "proxy vhost a.test: port 0 out of range 1-65535"},
		{"port too big", ErrInvalid, func() error {
			_, err := r.VHost(ctx, VHostSpec{Host: "a.test", To: "10.0.0.1", Port: 70000}, ChangeOptions{})
			return err
		}, "proxy vhost a.test: port 70000 out of range"},
		{"unknown guest", ErrNotFound, func() error {
			_, err := r.VHost(ctx, VHostSpec{Host: "a.test", To: "nosuch", Port: 80}, ChangeOptions{})
			return err
		}, "proxy vhost a.test: resolve guest nosuch: not found"},
		{"bad listen", ErrInvalid, func() error {
			_, err := r.Forward(ctx, ForwardSpec{Listen: "99999", To: "web1", Port: 22}, ChangeOptions{})
			return err
		}, "proxy forward: listen \"99999\": port 99999 out of range"},
		{"remove nothing", ErrInvalid, func() error {
			_, err := r.Remove(ctx, RemoveSpec{}, ChangeOptions{})
			return err
		}, "proxy remove: exactly one of host and listen"},
	}
	for _, tc := range cases {
		err := tc.do()
		if !errors.Is(err, tc.err) || !strings.HasPrefix(err.Error(), tc.msg) {
			t.Errorf("%s: got %v, want %v starting %q", tc.name, err, tc.err, tc.msg)
		}
	}
	if _, err := os.Stat(r.Path()); !os.IsNotExist(err) {
		t.Errorf("bad routes wrote the registry")
	}
	// Addresses in several forms.
	for _, to := range []string{"10.0.0.5", "backend.example.com", "::1"} {
		if _, err := r.VHost(ctx, VHostSpec{Host: "x.test", To: to, Port: 8080, Replace: true}, ChangeOptions{}); err != nil {
			t.Errorf("to %s: %v", to, err)
		}
	}
	ch, err := r.VHost(ctx, VHostSpec{Host: "*", To: "10.0.0.5:8081", Replace: true}, ChangeOptions{})
	if tab, _ := r.Routes(ctx); err != nil || !ch.Changed || tab.VHosts[0].Backend() != "10.0.0.5:8081" {
		t.Errorf("default vhost with host:port: %+v %v", ch, err)
	}
}

// TestRegistryConcurrentWriters: writers in parallel (separate Registry
// values, as separate processes would have) lose no update, also when
// each writes several times (a Registry reuses the table it last wrote
// only while the file still holds it).
func TestRegistryConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := NewRegistry(dir, nil)
			for j := 0; j < 5; j++ {
				if _, err := r.VHost(ctx, VHostSpec{Host: fmt.Sprintf("h%d-%d.test", i, j), To: "10.0.0.1", Port: 80}, ChangeOptions{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	tab, err := NewRegistry(dir, nil).Routes(ctx)
	if err != nil || len(tab.VHosts) != 40 {
		t.Fatalf("after 40 concurrent adds: %d vhosts, %v", len(tab.VHosts), err)
	}
}

func TestLookup(t *testing.T) {
	s, _ := NewServer(Options{RoutesFile: "unused"})
	tab := Table{VHosts: []VHost{
		{Host: "a.test", Addr: "10.0.0.1", Port: 1},
		{Host: "*.b.test", Addr: "10.0.0.2", Port: 1},
		{Host: "*.x.b.test", Addr: "10.0.0.3", Port: 1},
	}}
	sn := s.buildSnapshot(tab, s.routes.Load())
	for host, want := range map[string]string{
		"a.test": "10.0.0.1:1", "y.b.test": "10.0.0.2:1", "z.y.b.test": "10.0.0.2:1",
		"q.x.b.test": "10.0.0.3:1", "x.b.test": "10.0.0.2:1", "b.test": "", "test": "", "": "",
	} {
		got := ""
		if b := sn.lookup(canonicalHost(host)); b != nil {
			got = b.addr
		}
		if got != want {
			t.Errorf("lookup(%q) = %q, want %q", host, got, want)
		}
	}
	if h := canonicalHost("A.Test.:8080"); h != "a.test" {
		t.Errorf("canonicalHost = %q", h)
	}
}

// TestRegistryUserModeGuest: a resolver may map a guest's port to another
// host and port (qemu user-mode networking: 127.0.0.1 and the forwarded
// host port). The route stores what it returned and remembers the asked
// port, so the same request stays idempotent and a moved forward is an
// update, not a conflict.
func TestRegistryUserModeGuest(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	r := NewRegistry(dir, StaticResolver{"q1:80": "127.0.0.1:10080", "q1:22": "127.0.0.1:10022"})
	spec := VHostSpec{Host: "q1.test", To: "q1", Port: 80}
	ch, err := r.VHost(ctx, spec, ChangeOptions{})
	if err != nil || !ch.Changed || !strings.Contains(ch.Diff, "+vhost q1.test -> 127.0.0.1:10080 (guest q1 port 80)") {
		t.Fatalf("add: %+v %v", ch, err)
	}
	want := VHost{Host: "q1.test", To: "q1", Guest: true, Addr: "127.0.0.1", Port: 10080, ToPort: 80}
	if tab, _ := r.Routes(ctx); tab.VHosts[0] != want {
		t.Errorf("stored %+v, want %+v", tab.VHosts[0], want)
	}
	if ch, err := r.VHost(ctx, spec, ChangeOptions{}); err != nil || ch.Changed {
		t.Errorf("second add: %+v %v", ch, err)
	}
	if _, err := r.VHost(ctx, VHostSpec{Host: "q1.test", To: "q1", Port: 22}, ChangeOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("other guest port without replace: %v, want a conflict", err)
	}
	moved := NewRegistry(dir, StaticResolver{"q1:80": "127.0.0.1:20080"})
	if ch, err := moved.VHost(ctx, spec, ChangeOptions{}); err != nil || !ch.Changed || !strings.Contains(ch.Diff, "+vhost q1.test -> 127.0.0.1:20080") {
		t.Errorf("forward moved: %+v %v", ch, err)
	}
	if ch, err := r.Forward(ctx, ForwardSpec{Listen: "2222", To: "q1", Port: 22}, ChangeOptions{}); err != nil || !ch.Changed {
		t.Errorf("forward: %+v %v", ch, err)
	}
	if tab, _ := r.Routes(ctx); len(tab.Forwards) != 1 || tab.Forwards[0].Backend() != "127.0.0.1:10022" {
		t.Errorf("forward stored: %+v", tab.Forwards)
	}
	bad := NewRegistry(dir, ResolverFunc(func(context.Context, string, int) (string, error) { return "10.0.0.1", nil }))
	if _, err := bad.VHost(ctx, VHostSpec{Host: "b.test", To: "q1", Port: 80}, ChangeOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("resolver without a port: %v, want ErrInvalid", err)
	}
}
