package ns

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// settleEnv carries what a settled monitor inherits: "BOOT PID FD,FD...",
// the boot count, the guest init's PID, and the descriptors of the
// console's pty master and of the disks' locks.
const settleEnv = "_TINYFARM_NS_SETTLED"

// settle re-executes the monitor once its guest runs: the same binary
// (/proc/self/exe, even if a newer one was installed since), the same PID
// and start time (runtime.json, the uid range claim and the disk lock
// holder stay true), still the parent of the guest's init. What the setup
// left behind is gone: the threads its parallel steps blocked in (each a
// kernel stack and two Go stacks), its heap, its descriptors. The new
// process starts on one P. Measured per idle monitor: see
// bench/density.sh. It returns only when the exec failed.
func settle(dir string, boot, pid int, master *os.File, locks []*os.File) error {
	fds := append([]*os.File{master}, locks...)
	var nums []string
	for _, f := range fds {
		fd := int(f.Fd())
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
			closeOnExec(fds)
			return fmt.Errorf("settle: %w", err)
		}
		nums = append(nums, strconv.Itoa(fd))
	}
	env := append(os.Environ(), reexecEnv+"=monitor", "GOMAXPROCS=1",
		fmt.Sprintf("%s=%d %d %s", settleEnv, boot, pid, strings.Join(nums, ",")))
	err := syscall.Exec("/proc/self/exe", []string{"tinyfarm-ns-monitor", dir}, env)
	// Still here: the guest's next init (after a reboot) must not inherit them.
	closeOnExec(fds)
	return fmt.Errorf("settle: re-execute the monitor: %w", err)
}

func closeOnExec(fs []*os.File) {
	for _, f := range fs {
		unix.CloseOnExec(int(f.Fd()))
	}
}

// settled is what a monitor started by settle took over.
type settled struct {
	boot   int
	rt     *Runtime
	master *os.File
	locks  []*os.File
}

// wait waits for the guest's init, a child of this process since before
// the exec.
func (s *settled) wait() (syscall.WaitStatus, error) {
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(s.rt.InitPID, &ws, 0, nil)
		if err != syscall.EINTR {
			return ws, err
		}
	}
}

// settledFromEnv is nil for a monitor that starts a guest, and what it
// inherited for one that settle started.
func settledFromEnv(dir string) (*settled, error) {
	v, ok := os.LookupEnv(settleEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(settleEnv)
	os.Unsetenv("GOMAXPROCS")
	f := strings.Fields(v)
	if len(f) != 3 {
		return nil, fmt.Errorf("%s=%q: want BOOT PID FDS", settleEnv, v)
	}
	st := &settled{}
	var err error
	if st.boot, err = strconv.Atoi(f[0]); err != nil {
		return nil, fmt.Errorf("%s: boot: %w", settleEnv, err)
	}
	pid, err := strconv.Atoi(f[1])
	if err != nil {
		return nil, fmt.Errorf("%s: pid: %w", settleEnv, err)
	}
	for i, s := range strings.Split(f[2], ",") {
		fd, err := strconv.Atoi(s)
		if err != nil {
			return nil, fmt.Errorf("%s: fd: %w", settleEnv, err)
		}
		unix.CloseOnExec(fd) // a rebooted guest's init must not inherit them
		if i == 0 {
			// Non-blocking: the console copy waits in the poller, not in
			// a thread of its own.
			unix.SetNonblock(fd, true)
			st.master = os.NewFile(uintptr(fd), "/dev/ptmx")
		} else {
			st.locks = append(st.locks, os.NewFile(uintptr(fd), "disk lock"))
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, runtimeFile))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &st.rt); err != nil {
		return nil, fmt.Errorf("%s: %w", runtimeFile, err)
	}
	if st.rt.InitPID != pid || st.rt.Cgroups == nil {
		return nil, fmt.Errorf("%s: init pid %d, settled for %d", runtimeFile, st.rt.InitPID, pid)
	}
	return st, nil
}
