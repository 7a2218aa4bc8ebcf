package ns

import (
	"os"
	"os/exec"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// guestEhashEntries is the size of the TCP socket hash table each guest's
// network namespace gets of its own (net.ipv4.tcp_child_ehash_entries,
// Linux 6.1+): 8 KiB of kernel memory, chains of a few sockets for a
// guest serving thousands of connections.
//
// Why: by default every network namespace shares the host's table, and
// reading /proc/net/tcp walks all of it (262,144 buckets on a 32 GiB
// host), a few milliseconds each time. dropbear reseeds its random pool
// from /proc/net/tcp (among other /proc files) in every session's child,
// so this walk was most of the time of one command over a warm SSH
// connection to a guest. A table of its own also keeps one guest's
// connections out of the host's and other guests' lookups. The walk
// still visits every bucket (about 15 ns each): 4096 buckets cost a
// session 90 us, 1024 cost 37 us, and below that the host-wide
// listening table (about 22 us) dominates. The kernel sizes the
// namespace's TIME-WAIT limit from the table (half of it);
// guestSysctls sets it back to what 4096 buckets gave.
const guestEhashEntries = "1024"

// startWithOwnEhash starts cmd, whose Cloneflags make a new network
// namespace, so that the namespace gets a TCP hash table of its own. The
// size is read from the creating thread's namespace when the child is
// cloned, and setting it in the host's namespace would change every
// namespace made on the host afterwards: a locked thread moves into a
// throwaway namespace, sets tcp_child_ehash_entries there, starts cmd
// (Go forks from the calling thread) and moves back. Where that fails (an
// older kernel without the sysctl), cmd starts as it would have, sharing
// the host's table.
func startWithOwnEhash(cmd *exec.Cmd) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- cmd.Start()
			return
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- cmd.Start()
			return
		}
		// Errors here only mean a shared table, as before.
		_ = os.WriteFile("/proc/sys/net/ipv4/tcp_child_ehash_entries", []byte(guestEhashEntries), 0o644)
		errc <- cmd.Start()
		if err := netns.Set(orig); err != nil {
			return // the thread stays locked in the throwaway namespace: Go ends it with this goroutine
		}
		runtime.UnlockOSThread()
	}()
	return <-errc
}
