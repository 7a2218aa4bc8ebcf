package ns

import (
	"bytes"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// execWaitDelay is how long Exec waits for a command's output after the
// command exited or was killed: what a background child keeps open.
const execWaitDelay = 2 * time.Second

// killTree sends SIGKILL to pid and every process descended from it: an
// exec's nsenter, the command it runs in the guest and whatever that
// started (unless it left the tree, as a daemon does). Each is signalled
// through a pidfd opened while the tree was read, so a PID reused
// meanwhile is never hit.
func killTree(pid int) {
	kids := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp := ppid(p); pp > 0 {
			kids[pp] = append(kids[pp], p)
		}
	}
	var fds []int
	for todo := []int{pid}; len(todo) > 0; todo = todo[1:] {
		p := todo[0]
		fd, err := unix.PidfdOpen(p, 0)
		if err != nil {
			continue // gone
		}
		// Still the process the scan saw (or the root of the tree).
		if p != pid && !slices.Contains(kids[ppid(p)], p) {
			unix.Close(fd)
			continue
		}
		fds = append(fds, fd)
		todo = append(todo, kids[p]...)
	}
	for _, fd := range fds {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		unix.Close(fd)
	}
}

// ppid is the parent of pid from /proc/<pid>/stat, or 0.
func ppid(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}
