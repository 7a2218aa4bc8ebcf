// Package procwait tells tests when a process they started has ended.
package procwait

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// Ended reports whether process pid is gone, or a zombie, within d.
// kill(pid, 0) is no test for that: it succeeds on a zombie whose parent
// (often a goroutine calling cmd.Wait in the process under test) has not
// reaped it yet.
func Ended(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		// The state follows the command name in parentheses.
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
