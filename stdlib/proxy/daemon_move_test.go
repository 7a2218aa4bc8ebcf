//go:build unix

package proxy_test

import (
	"net"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

// TestDaemonMoves: proxy.daemon{} with another address moves the farm's
// one daemon there and says so (check mode first says it would); the old
// address no longer answers.
func TestDaemonMoves(t *testing.T) {
	run, state, first := daemonFarm(t)
	crashtest.MustRun(t, run)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second := ln.Addr().String()
	ln.Close()
	moved := run
	moved.Args = append(append([]string(nil), run.Args[:len(run.Args)-1]...), "listen="+second)

	check := moved
	check.Args = append(append([]string(nil), moved.Args...), "--check")
	out := crashtest.MustRun(t, check)
	if !strings.Contains(out, "move from "+first) {
		t.Errorf("check mode does not say the daemon would move from %s:\n%s", first, out)
	}
	serves(t, state, first, stringer("after check mode"))

	out = crashtest.MustRun(t, moved)
	if !strings.Contains(out, "moved from "+first) {
		t.Errorf("the run does not say the daemon moved from %s:\n%s", first, out)
	}
	serves(t, state, second, stringer("after the move"))
	if c, err := net.Dial("tcp", first); err == nil {
		c.Close()
		t.Errorf("%s still answers after the daemon moved to %s", first, second)
	}
	out = crashtest.MustRun(t, moved)
	if strings.Contains(out, "moved") {
		t.Errorf("a second run on %s moved the daemon again:\n%s", second, out)
	}
}
