//go:build linux

package ns_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// A guest's network namespace has a TCP hash table of its own (Linux
// 6.1+), so reading /proc/net/tcp in the guest (dropbear does it in every
// session) walks its few sockets, not the host's whole table; the host's
// setting is left as it was.
func TestGuestOwnTCPHashTable(t *testing.T) {
	needRoot(t)
	const knob = "/proc/sys/net/ipv4/tcp_child_ehash_entries"
	before, err := os.ReadFile(knob)
	if err != nil {
		t.Skip("kernel without tcp_child_ehash_entries (before 6.1)")
	}
	g := start(t, spec(t, "nsehash", scatterDisk(t, ""), 41))
	res, err := g.(driver.Execer).Exec(context.Background(), []string{"cat", "/proc/sys/net/ipv4/tcp_ehash_entries", "/proc/sys/net/ipv4/tcp_max_tw_buckets"}, driver.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A namespace sharing the host's table reports its size negated.
	got := strings.Fields(string(res.Stdout))
	if len(got) != 2 || got[0] != "1024" {
		t.Errorf("guest tcp_ehash_entries = %q, want 1024 (a table of its own)", res.Stdout)
	}
	// The kernel would derive 512 from 1024 buckets; the guest keeps 2048.
	if len(got) != 2 || got[1] != "2048" {
		t.Errorf("guest tcp_max_tw_buckets = %q, want 2048", res.Stdout)
	}
	if after, _ := os.ReadFile(knob); string(after) != string(before) {
		t.Errorf("host %s changed: %q -> %q", knob, before, after)
	}
}
