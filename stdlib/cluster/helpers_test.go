package cluster

import (
	"context"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// fastTiming keeps the tests quick: a host is down 2s after its last
// renewal, a leader is elected within a second.
var fastTiming = Timing{TickMS: 50, ElectionMS: 500, LeaseTTL: 2, OpTimeout: 3 * time.Second}

// freePort returns a TCP port free on ip right now.
func freePort(t testing.TB, ip string) int {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// hostConfig is a host on ip with free ports and its own directory.
func hostConfig(t testing.TB, name, ip string) *Config {
	return &Config{
		Host: name, Advertise: ip, Dir: t.TempDir(),
		ClientPort: freePort(t, ip), PeerPort: freePort(t, ip), JoinPort: freePort(t, ip),
		Timing: fastTiming,
	}
}

// serve runs a host's daemon in this process until the test ends (or the
// returned stop is called) and waits until it is ready.
func serve(t testing.TB, cfg *Config, opts ServeOptions) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	opts.Ready = func() { close(ready) }
	if opts.Logger == nil && testing.Verbose() {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("test_host", cfg.Host)
	}
	if opts.Facts == nil {
		opts.Facts = func(context.Context) Facts {
			return Facts{Mem: 1 << 30, CPUs: 1, Drivers: []string{"ns"}, Version: "test"}
		}
	}
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, cfg, opts) }()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("serve %s: %v", cfg.Host, err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("serve %s: not ready after 30s", cfg.Host)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("serve %s: still running 15s after stop", cfg.Host)
		}
	}
	t.Cleanup(stop)
	return stop
}

// connect opens a client for cfg, closed when the test ends.
func connect(t testing.TB, cfg *Config) *Client {
	t.Helper()
	c, err := Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func logStep(t testing.TB, start time.Time, what string) {
	t.Logf("%6.2fs %s", time.Since(start).Seconds(), what)
}
