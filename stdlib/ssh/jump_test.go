//go:build linux

package ssh

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestDialVia: through a real dropbear as jump host (Config.Via) to
// another real dropbear: commands run, the far host key is pinned (a wrong
// one refused, not retried), and a jump host that forbids forwarding
// (dropbear -j) is named with the fix, not retried.
func TestDialVia(t *testing.T) {
	jump, far := startDropbear(t), startDropbear(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	j := jump.client(t)
	defer j.Close()

	c, err := far.dial(ctx, Config{Via: j})
	if err != nil {
		t.Fatalf("dial via %s: %v", j.Addr(), err)
	}
	r, err := c.Run(ctx, "echo hi from $SSH_CLIENT", RunOptions{})
	c.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The far sshd sees the jump host as its client.
	if got := string(r.Stdout); !strings.HasPrefix(got, "hi from 127.0.0.1 ") {
		t.Errorf("through the jump host: %q", got)
	}

	other, _ := GenerateHostKey()
	_, err = far.dial(ctx, Config{Via: j, HostKey: other.Public, Retries: 5})
	var hk *HostKeyError
	if !errors.As(err, &hk) || strings.Contains(err.Error(), "attempts") {
		t.Errorf("wrong far host key through the jump host: %v", err)
	}

	noFwd := startDropbear(t, "-j")
	nj := noFwd.client(t)
	defer nj.Close()
	_, err = far.dial(ctx, Config{Via: nj, Retries: 5})
	if !errors.Is(err, ErrForwarding) || !strings.Contains(err.Error(), "dropbear started without -j") ||
		!strings.Contains(err.Error(), nj.Addr()) || strings.Contains(err.Error(), "attempts") {
		t.Errorf("jump host with -j: %v", err)
	}
}
