package cluster

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInitJoinTLS starts a real embedded etcd cluster of two hosts on
// loopback: the first by Init, the second by Join with a token. The token
// admits one host only, a token pinned to another CA is refused before
// any secret is sent, and etcd refuses clients without a cluster cert.
func TestInitJoinTLS(t *testing.T) {
	a := hostConfig(t, "a", "127.0.0.1")
	if err := Init(a, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	serve(t, a, ServeOptions{})
	logStep(t, t0, "a ready")
	ca := connect(t, a)
	ctx := ctxT(t)
	ca0, err := LoadCA(a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ca.NewToken(ctx, a.joinAddr(), ca0.Fingerprint(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	tok2, err := ParseToken(tok.String())
	if err != nil || tok2 != tok {
		t.Fatalf("token round trip: %v %+v", err, tok2)
	}

	// A token that pins another CA: refused by the TLS check, so the
	// secret never reaches a server the joiner cannot trust.
	other, _ := NewCA("other")
	bad := tok
	bad.CA = other.Fingerprint()
	x := hostConfig(t, "x", "127.0.0.1")
	if err := Join(ctx, x, bad); !errors.Is(err, ErrJoinDenied) || !strings.Contains(err.Error(), "does not chain to the CA in the token") {
		t.Fatalf("join with a foreign CA pin: %v", err)
	}

	b := hostConfig(t, "b", "127.0.0.1")
	if err := Join(ctx, b, tok); err != nil {
		t.Fatal(err)
	}
	logStep(t, t0, "b joined")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(b.Dir, "etcd.log"))
			t.Logf("b's etcd.log:\n%s", b)
		}
	})
	serve(t, b, ServeOptions{})
	logStep(t, t0, "b ready")

	// Used once: a third host with the same token is refused.
	c3 := hostConfig(t, "c", "127.0.0.1")
	if err := Join(ctx, c3, tok); !errors.Is(err, ErrJoinDenied) {
		t.Fatalf("second join with one token: %v", err)
	}

	cb := connect(t, b)
	ml, err := cb.Etcd().MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range ml.Members {
		names = append(names, m.Name)
		if m.IsLearner {
			t.Errorf("member %s is still a learner: joins add learners, which promote themselves once in sync", m.Name)
		}
	}
	if len(names) != 2 {
		t.Fatalf("members %v, want a and b", names)
	}
	hosts, err := cb.Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].State != HostUp || hosts[1].State != HostUp {
		t.Fatalf("hosts %+v %v", hosts, err)
	}
	// b's config lists both members' client URLs (the CLI on b reaches
	// the cluster through a while b's daemon is down).
	deadline := time.Now().Add(5 * time.Second)
	for {
		saved, err := LoadConfig(b.Dir)
		if err == nil && len(saved.Endpoints) == 2 && saved.Endpoints[0] == b.clientURL() && saved.Endpoints[1] == a.clientURL() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b's saved endpoints: %+v %v", saved, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A write on b is read on a: one etcd.
	if _, err := cb.ClaimGuest(ctx, GuestSpec{Name: "web1", Host: "b", Mem: 128 << 20}); err != nil {
		t.Fatal(err)
	}
	gs, err := ca.Guests(ctx)
	if err != nil || len(gs) != 1 || gs[0].Host != "b" {
		t.Fatalf("guests seen from a: %+v %v", gs, err)
	}

	logStep(t, t0, "claimed")
	// Without a client certificate of the cluster, etcd's client port
	// refuses the connection.
	anon := *a
	anon.Dir = t.TempDir()
	if err := other.IssueHost(anon.Dir, "anon", nil); err != nil {
		t.Fatal(err)
	}
	anon.CAFile, anon.CertFile, anon.KeyFile = "", "", ""
	anon.defaults()
	anon.CAFile = a.CAFile // trusts the server, but brings a foreign cert
	anon.Timing.OpTimeout = time.Second
	cx, err := Connect(context.Background(), &anon)
	if err == nil {
		defer cx.Close()
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = cx.Etcd().Get(sctx, "x")
		cancel()
	}
	if err == nil {
		t.Fatal("etcd answered a client with a foreign certificate")
	}
}
