//go:build linux

package ns

import (
	"fmt"
	"testing"
)

// A guest's init is alive while its thread-group leader shows as a zombie
// with live threads (an execve from another thread); a zombie alone is
// dead.
func TestStatStart(t *testing.T) {
	// /proc/<pid>/stat: pid (comm) state ppid pgrp session tty tpgid flags
	// minflt cminflt majflt cmajflt utime stime cutime cstime priority
	// nice num_threads itrealvalue starttime ...
	line := func(comm, state string, threads int) []byte {
		return []byte(fmt.Sprintf("77 (%s) %s 1 77 77 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 %d 0 4242 0 0", comm, state, threads))
	}
	for _, c := range []struct {
		name  string
		b     []byte
		alive bool
	}{
		{"running", line("init", "S", 1), true},
		{"zombie leader of a live group (exec)", line("tinyfarm-ns-in", "Z", 4), true},
		{"zombie", line("init", "Z", 1), false},
		{"dead", line("init", "X", 1), false},
		{"name with ') Z'", line("a) Z (b", "S", 1), true},
	} {
		st, err := statStart(77, c.b)
		if alive := err == nil; alive != c.alive || alive && st != 4242 {
			t.Errorf("%s: start %d, err %v; want alive %v", c.name, st, err, c.alive)
		}
	}
}
