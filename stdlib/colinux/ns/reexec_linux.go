package ns

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/disklock"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// reexecEnv selects the role of a re-executed tinyfarm binary.
const reexecEnv = "_TINYFARM_NS_ROLE"

// Main runs the ns driver's helper roles when this process was started as
// one (the guest monitor, the guest's first init, the exec helper) and
// then exits; otherwise it returns at once. Call it first thing in main()
// and in TestMain of test binaries that start namespace guests.
func Main() {
	role := os.Getenv(reexecEnv)
	if role == "" {
		return
	}
	os.Unsetenv(reexecEnv)
	switch role {
	case "monitor":
		os.Exit(monitorMain(os.Args[1]))
	case "init":
		initMain(os.Args[1]) // execs the guest's init or exits
	case "exec":
		execMain(os.Args[1:])
	case "exec-inner":
		execInner(os.Args[1:])
	}
	fmt.Fprintf(os.Stderr, "tinyfarm: unknown ns role %q\n", role)
	os.Exit(2)
}

// traceEnv, set by Runner.Start to its start time (Unix ns) when
// TINYFARM_NS_TRACE is set, makes the monitor log each start step with the
// time since then ("trace STEP MS" lines in monitor.log): the breakdown
// bench/guests.sh prints.
const traceEnv = "_TINYFARM_NS_T0"

// readyEnv names the monitor's fd that Runner.Start waits on: closed once
// runtime.json is written (or when the monitor dies).
const readyEnv = "_TINYFARM_NS_READYFD"

var readyFD *os.File

// signalReady tells Runner.Start that runtime.json is there (once).
func signalReady() {
	if readyFD != nil {
		readyFD.Close()
		readyFD = nil
	}
}

var traceT0 time.Time

func trace(step string) {
	if !traceT0.IsZero() {
		fmt.Fprintf(os.Stderr, "trace %s %.2f\n", step, float64(time.Since(traceT0).Microseconds())/1000)
	}
}

type monitorSpec struct {
	driver.Spec
	Pids       int
	Unhardened bool
	UserNS     bool

	idBase int // the monitor's claimed uid range (user namespace mode)
}

func readSpec(dir string) (*monitorSpec, error) {
	b, err := os.ReadFile(filepath.Join(dir, specFile))
	if err != nil {
		return nil, err
	}
	var s monitorSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", specFile, err)
	}
	return &s, nil
}

// guestCmdline is the kernel command line the guest's Tiny Core boot
// script sees in /proc/cmdline. nozswap and nortc keep Tiny Core's boot
// from waiting for devices a namespace never has; nodhcp because the
// monitor configures eth0.
func guestCmdline(s driver.Spec) string {
	words := strings.Fields(s.Bootcodes)
	has := map[string]bool{}
	for _, w := range words {
		k, _, _ := strings.Cut(w, "=")
		has[k] = true
	}
	for _, w := range []string{"nozswap", "nortc", "noswap", "nodhcp"} {
		if !has[w] {
			words = append(words, w)
		}
	}
	if !has["host"] {
		words = append(words, "host="+s.Name)
	}
	return strings.Join(words, " ")
}

// monitorMain supervises one guest: it makes the cgroups, starts the
// guest's init in new namespaces, wires its network and console, records
// runtime.json, then waits and records how the guest ended. A reboot
// inside the guest restarts it; a poweroff or Stop ends the monitor.
func monitorMain(dir string) int {
	// A monitor runs as long as its guest, one per guest: its memory is
	// per-guest overhead (bench/density.sh). A tight GC keeps its heap
	// small; once the guest runs, the monitor re-executes itself (settle)
	// to shed the threads and heap its setup used.
	debug.SetGCPercent(20)
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05.000")+" "+format+"\n", args...)
	}
	if ns, err := strconv.ParseInt(os.Getenv(traceEnv), 10, 64); err == nil {
		traceT0 = time.Unix(0, ns)
		os.Unsetenv(traceEnv)
		trace("monitor-running")
	}
	if fd, err := strconv.Atoi(os.Getenv(readyEnv)); err == nil {
		unix.CloseOnExec(fd) // the guest's init must not hold it
		readyFD = os.NewFile(uintptr(fd), "ready")
		os.Unsetenv(readyEnv)
	}
	s, err := readSpec(dir)
	if err != nil {
		logf("read spec: %v", err)
		return 1
	}
	// A settled monitor (this binary re-executed with its guest running)
	// inherits what the first one acquired.
	st, err := settledFromEnv(dir)
	if err != nil {
		logf("settled monitor: %v", err)
		return 1
	}
	var locks []*os.File
	if st != nil {
		locks = st.locks
	} else {
		// The monitor, not the guest's init, holds the disks' locks: the
		// guest never gets a descriptor of its own image.
		if locks, err = disklock.Lock(s.Name, s.Disks); err != nil {
			logf("%v", err)
			return 1
		}
	}
	defer disklock.Close(locks)
	if s.UserNS {
		if st != nil {
			s.idBase = st.rt.IDBase
		} else {
			base, err := claimIDRange(s.Instance())
			if err != nil {
				logf("%v", err)
				return 1
			}
			s.idBase = base
			trace("uid-range")
		}
		defer releaseIDRange(s.Instance(), s.idBase)
	}
	var cg *Cgroups
	if st != nil {
		cg = st.rt.Cgroups
	} else {
		if cg, err = hostCgroupFS().create(s.Instance(), Limits{MemBytes: s.MemBytes, CPUs: s.CPUs, Pids: s.Pids}); err != nil {
			logf("%v", err)
			return 1
		}
		trace("cgroups")
	}
	console, err := os.OpenFile(s.ConsoleLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		logf("console log: %v", err)
		cg.remove()
		return 1
	}
	defer console.Close()
	if st == nil {
		if err := os.WriteFile(filepath.Join(dir, "cmdline"), []byte(guestCmdline(s.Spec)+"\n"), 0o644); err != nil {
			logf("cmdline: %v", err)
			cg.remove()
			return 1
		}
	}
	var ex Exit
	boot := 1
	for ; ; boot++ {
		var reboot bool
		if st != nil {
			boot = st.boot
			ex, reboot = awaitGuest(dir, cg, console, st.master, st.wait)
			st.master.Close()
			st = nil
		} else {
			ex, reboot = runOnce(dir, s, cg, console, logf, boot, locks)
		}
		if !reboot || boot >= 100 {
			break
		}
		logf("guest rebooted itself; starting it again")
	}
	cg.remove()
	deleteVeth(hostVeth(s.Instance()))
	if s.UserNS {
		os.RemoveAll(filepath.Join("/run/tinyfarm-ns", s.Instance()))
	}
	ex.Time = time.Now()
	b, _ := json.Marshal(ex)
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, exitFile), b, 0o600); err != nil {
		logf("exit record: %v", err)
	}
	os.Remove(filepath.Join(dir, runtimeFile))
	logf("guest ended: %s (%s)", ex.State, ex.Reason)
	return 0
}

func runOnce(dir string, s *monitorSpec, cg *Cgroups, console *os.File, logf func(string, ...any), boot int, locks []*os.File) (Exit, bool) {
	fail := func(err error) (Exit, bool) {
		logf("%v", err)
		return Exit{State: driver.Crashed, Reason: err.Error()}, false
	}
	master, slavePath, err := openPty()
	if err != nil {
		return fail(err)
	}
	defer master.Close()
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fail(fmt.Errorf("console pty %s: %w", slavePath, err))
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		slave.Close()
		return fail(err)
	}
	// The init reports a failure to build the guest's root (a share that
	// cannot be mounted, say) on errW; its exec of the guest's own init
	// closes it (close-on-exec) with nothing written.
	errR, errW, err := os.Pipe()
	if err != nil {
		slave.Close()
		syncR.Close()
		syncW.Close()
		return fail(err)
	}
	defer errR.Close()
	exe, _ := os.Executable()
	cmd := exec.Command(exe)
	cmd.Args = []string{"tinyfarm-ns-init", dir}
	cmd.Env = []string{reexecEnv + "=init", "TINYFARM_NS_CONSOLE=" + slavePath}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.ExtraFiles = []*os.File{syncR}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET,
		Setsid:  true,
		Setctty: true,
		Ctty:    0,
	}
	var sockParent *os.File
	if s.UserNS {
		if s.Layout != driver.Scatter {
			slave.Close()
			syncR.Close()
			syncW.Close()
			return fail(fmt.Errorf("user-namespace mode supports scatter guests only"))
		}
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fail(fmt.Errorf("userns socket: %w", err))
		}
		sockParent = os.NewFile(uintptr(fds[0]), "userns-parent")
		sockChild := os.NewFile(uintptr(fds[1]), "userns-child")
		defer sockParent.Close()
		defer sockChild.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, sockChild) // fd 4
		// The init runs as an unprivileged host uid that may not reach
		// the binary's directory: exec it through a descriptor (fd 5).
		self, err := os.Open(exe)
		if err != nil {
			return fail(fmt.Errorf("userns: open own binary: %w", err))
		}
		defer self.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, self)
		cmd.Path = "/proc/self/fd/5"
		base := s.idBase
		cmd.SysProcAttr.Cloneflags |= syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: idRange}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: idRange}}
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		// Become the namespace's root before exec, or exec would drop the
		// capabilities the init needs to build the guest's mounts.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
		// The init runs as an unprivileged host uid that cannot enter the
		// state directory: its spec comes in the environment and its
		// cmdline file and mount point live in a traversable work dir.
		work := filepath.Join("/run/tinyfarm-ns", s.Instance())
		os.RemoveAll(work)
		for _, d := range []string{"root", "layer", "base"} {
			if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
				return fail(fmt.Errorf("userns work dir: %w", err))
			}
		}
		os.Chmod("/run/tinyfarm-ns", 0o711)
		cl, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err := os.WriteFile(filepath.Join(work, "cmdline"), cl, 0o644); err != nil {
			return fail(fmt.Errorf("userns work dir: %w", err))
		}
		specJSON, _ := json.Marshal(s)
		cmd.Args = []string{"tinyfarm-ns-init", work}
		cmd.Env = append(cmd.Env, "TINYFARM_NS_USERNS=1", "TINYFARM_NS_SPEC="+string(specJSON))
		// The guest's root opens its console by name: give it the pty.
		os.Chown(slavePath, base, base+5)
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, errW)
	cmd.Env = append(cmd.Env, "TINYFARM_NS_ERRFD="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	if err := startWithOwnEhash(cmd); err != nil {
		slave.Close()
		syncR.Close()
		syncW.Close()
		errW.Close()
		return fail(fmt.Errorf("start guest init: %w", err))
	}
	slave.Close()
	syncR.Close()
	errW.Close()
	pid := cmd.Process.Pid
	trace("init-forked")
	abort := func(err error) (Exit, bool) {
		syncW.Close()
		cmd.Process.Kill()
		cmd.Wait()
		return fail(err)
	}
	// The guest's cgroups, disks and network are independent of each other
	// and the init waits for all three (the sync pipe): set them up at
	// once. Joining cgroups (v1: an RCU grace period per controller), the
	// ext4 mount and the port filter (an nft run) each take milliseconds.
	var (
		wg                     sync.WaitGroup
		joinErr, diskErr, nErr error
		veth                   string
		vethUp                 = func() error { return nil }
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		if joinErr = cg.join(pid); joinErr == nil {
			trace("cgroup-join")
		}
	}()
	go func() {
		defer wg.Done()
		if s.UserNS {
			if diskErr = sendDisks(s, pid, sockParent); diskErr == nil {
				trace("idmapped-disks-sent")
			}
		}
	}()
	go func() {
		defer wg.Done()
		if s.Net.Mode == "bridge" {
			var up func() error
			if veth, up, nErr = setupVeth(s.Instance(), pid, netPlan{Bridge: s.Net.Bridge, IP: s.Net.IP, Gateway: s.Net.Gateway, MAC: s.Net.MAC, Owner: s.Net.Leases}); nErr == nil {
				vethUp = up
			}
		}
	}()
	wg.Wait()
	if err := errors.Join(joinErr, diskErr, nErr); err != nil {
		deleteVeth(veth)
		return abort(err)
	}
	start, err := procStart(pid)
	if err != nil {
		return abort(err)
	}
	if _, err := syncW.Write([]byte("go")); err != nil {
		return abort(fmt.Errorf("release guest init: %w", err))
	}
	syncW.Close()
	// The port's guard and link-up while the guest builds its root and
	// boots: its host end is down until then, so nothing crosses the
	// bridge unfiltered, and Start returns only once it is up.
	upErr := make(chan error, 1)
	go func() { upErr <- vethUp() }()
	// Wait until the init has built the guest's root and exec'd the
	// guest's init, so Start fails (and says why) when that went wrong
	// rather than reporting a guest that is about to crash.
	msg, _ := io.ReadAll(io.LimitReader(errR, 4096))
	err = <-upErr
	if len(msg) > 0 {
		err = errors.New(strings.TrimSpace(string(msg)))
	}
	if err != nil {
		deleteVeth(veth)
		return abort(err)
	}
	trace("guest-init-exec")
	mstart, _ := procStart(os.Getpid())
	rt := Runtime{UserNS: s.UserNS, NetRaw: s.NetRaw, IDBase: s.idBase, MonitorPID: os.Getpid(), MonitorStart: mstart, InitPID: pid, InitStart: start, Cgroups: cg, Veth: veth, Started: time.Now()}
	b, _ := json.Marshal(rt)
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, runtimeFile), b, 0o600); err != nil {
		return abort(err)
	}
	trace("runtime-recorded")
	signalReady()
	// The guest runs: continue as a fresh process of this binary, without
	// the threads, heap and descriptors the setup left. It returns only
	// when that exec failed; this process then waits itself.
	if err := settle(dir, boot, pid, master, locks); err != nil {
		logf("monitor: %v; waiting in this process", err)
	}
	// Later, not now: the guest is booting on the same CPUs. (A settled
	// monitor needs neither: it starts on one P, and a GC it would force
	// costs more than its small heap holds.)
	time.AfterFunc(2*time.Second, lean)
	return awaitGuest(dir, cg, console, master, func() (syscall.WaitStatus, error) {
		err := cmd.Wait()
		ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
		return ws, err
	})
}

// awaitGuest copies the guest's console to its log until the guest's
// init ends (wait), and says how it ended and whether it rebooted.
func awaitGuest(dir string, cg *Cgroups, console, master *os.File, wait func() (syscall.WaitStatus, error)) (Exit, bool) {
	copied := make(chan struct{})
	go func() {
		// A console is slow: a small buffer (io.Copy's is 32 KiB, per guest).
		io.CopyBuffer(struct{ io.Writer }{console}, struct{ io.Reader }{master}, make([]byte, 4096))
		close(copied) // EIO once every slave fd is closed
	}()
	ws, waitErr := wait()
	select {
	case <-copied:
	case <-time.After(500 * time.Millisecond):
	}
	_, stopErr := os.Stat(filepath.Join(dir, stopFile))
	stopped := stopErr == nil
	switch {
	case stopped:
		return Exit{State: driver.Stopped, Reason: "stopped by tinyfarm"}, false
	case ws.Signaled() && ws.Signal() == syscall.SIGHUP:
		return Exit{State: driver.Stopped, Reason: "rebooted"}, true
	case ws.Signaled() && ws.Signal() == syscall.SIGINT:
		return Exit{State: driver.Stopped, Reason: "powered off from inside the guest"}, false
	case ws.Signaled():
		reason := fmt.Sprintf("init killed by signal %d (%s)", ws.Signal(), ws.Signal())
		if n := cg.OOMKills(); n > 0 {
			reason += fmt.Sprintf("; %d OOM kills in the guest", n)
		}
		return Exit{State: driver.Crashed, Reason: reason}, false
	case ws.Exited() && ws.ExitStatus() == 0:
		return Exit{State: driver.Stopped, Reason: "init exited"}, false
	}
	return Exit{State: driver.Crashed, Reason: fmt.Sprintf("init ended: %v", waitErr)}, false
}

// sendDisks hands the guest's init its disk, the base of a layered guest
// and its shares, in that order, each a detached mount idmapped to the
// guest's user namespace (a user namespace may not mount ext4).
func sendDisks(s *monitorSpec, pid int, sock *os.File) error {
	mfd, err := idmappedDisk(s.Disks[0].Path, s.Disks[0].ReadOnly, pid)
	if err != nil {
		return err
	}
	err = sendFD(sock, mfd)
	unix.Close(mfd)
	if err != nil {
		return fmt.Errorf("userns: hand the disk to the guest: %w", err)
	}
	if s.Base != "" {
		bfd, err := sharedBase(s.Base, pid)
		if err != nil {
			return err
		}
		err = sendFD(sock, bfd)
		unix.Close(bfd)
		if err != nil {
			return fmt.Errorf("userns: hand the base to the guest: %w", err)
		}
	}
	// Shared host directories likewise: a bind mount of a host path made
	// inside the guest's user namespace is refused (EINVAL: the source is
	// in another mount namespace), so the monitor clones each one,
	// idmapped, and hands it over.
	for _, sh := range s.Shares {
		sfd, err := idmappedShare(sh.HostPath, sh.ReadOnly, pid)
		if err != nil {
			return err
		}
		err = sendFD(sock, sfd)
		unix.Close(sfd)
		if err != nil {
			return fmt.Errorf("userns: hand share %s to the guest: %w", sh.HostPath, err)
		}
	}
	return nil
}

// lean gives the heap the monitor's setup used back to the kernel.
func lean() {
	runtime.GOMAXPROCS(1)
	debug.FreeOSMemory()
}

// openPty allocates a pseudo-terminal for the guest console. Output
// post-processing is off, so the console log has plain \n line ends.
func openPty() (*os.File, string, error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", fmt.Errorf("console pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("console pty: unlock: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		return nil, "", fmt.Errorf("console pty: number: %w", err)
	}
	if t, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		t.Oflag &^= unix.OPOST
		unix.IoctlSetTermios(fd, unix.TCSETS, t)
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), "/dev/pts/" + strconv.FormatUint(uint64(n), 10), nil
}

// initMain is the guest's first process (PID 1 of its namespaces). It
// waits for the monitor's go-ahead, builds the root, pivots into it and
// execs the guest's own /sbin/init.
func initMain(dir string) {
	// The monitor's error pipe: closed by the exec of the guest's init.
	var errPipe *os.File
	if fd, err := strconv.Atoi(os.Getenv("TINYFARM_NS_ERRFD")); err == nil {
		unix.CloseOnExec(fd)
		errPipe = os.NewFile(uintptr(fd), "errpipe")
		os.Unsetenv("TINYFARM_NS_ERRFD")
	}
	die := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "tinyfarm-ns-init: "+format+"\n", args...)
		if errPipe != nil {
			fmt.Fprintf(errPipe, "guest init: "+format, args...)
		}
		os.Exit(1)
	}
	// Namespaces are per thread: the cgroup namespace made below must be
	// the one of the thread that execs the guest's init.
	runtime.LockOSThread()
	sync := os.NewFile(3, "sync")
	buf := make([]byte, 2)
	if _, err := io.ReadFull(sync, buf); err != nil {
		die("monitor went away before the guest started: %v", err)
	}
	sync.Close()
	// The monitor has put us into the guest's cgroups: a cgroup namespace
	// made now is rooted there, so the guest sees its own cgroup as "/"
	// and learns nothing of the host's cgroup layout.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		die("cgroup namespace: %v", err)
	}
	var s *monitorSpec
	var err error
	if js := os.Getenv("TINYFARM_NS_SPEC"); js != "" {
		s = &monitorSpec{}
		err = json.Unmarshal([]byte(js), s)
		os.Unsetenv("TINYFARM_NS_SPEC")
	} else {
		s, err = readSpec(dir)
	}
	if err != nil {
		die("%v", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		die("make mounts private: %v", err)
	}
	newRoot := filepath.Join(dir, "root")
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		die("%v", err)
	}
	switch s.Layout {
	case driver.Scatter:
		// A layered guest's disk is its layer, under the shared base.
		diskDir := newRoot
		if s.Base != "" {
			diskDir = filepath.Join(dir, "layer")
			for _, d := range []string{diskDir, filepath.Join(dir, "base")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					die("%v", err)
				}
			}
		}
		userns := os.Getenv("TINYFARM_NS_USERNS") == "1"
		if userns {
			mfd, err := recvFD(4)
			if err != nil {
				die("userns: receive the disk: %v", err)
			}
			if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, diskDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				die("userns: attach the disk: %v", err)
			}
			unix.Close(mfd)
		} else if err := mountDisk(s.Disks[0].Path, diskDir, s.Disks[0].ReadOnly); err != nil {
			die("%v", err)
		}
		if s.Base != "" {
			var bfd int
			if userns {
				bfd, err = recvFD(4) // the monitor's, idmapped
			} else {
				bfd, err = sharedBase(s.Base, 0)
			}
			if err != nil {
				die("base: %v", err)
			}
			if err := unix.MoveMount(bfd, "", unix.AT_FDCWD, filepath.Join(dir, "base"), unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
				die("attach the base: %v", err)
			}
			unix.Close(bfd)
			if err := overlayRoot(dir, newRoot); err != nil {
				die("%v", err)
			}
		}
	case driver.Frugal:
		if err := frugalRoot(s, newRoot); err != nil {
			die("%v", err)
		}
	}
	var shares []shareMount
	for _, sh := range s.Shares {
		m := shareMount{Share: sh, fd: -1}
		if os.Getenv("TINYFARM_NS_USERNS") == "1" {
			// The monitor sent each share, idmapped, after the disk.
			if m.fd, err = recvFD(4); err != nil {
				die("userns: receive share %s: %v", sh.HostPath, err)
			}
		}
		shares = append(shares, m)
	}
	if os.Getenv("TINYFARM_NS_USERNS") == "1" {
		unix.Close(4)
	}
	if err := prepareRoot(newRoot, filepath.Join(dir, "cmdline"), os.Getenv("TINYFARM_NS_CONSOLE"), shares); err != nil {
		die("%v", err)
	}
	if !s.Unhardened {
		if err := maskProc(newRoot); err != nil {
			die("%v", err)
		}
	}
	if err := pivotInto(newRoot); err != nil {
		die("%v", err)
	}
	host := s.Name
	for _, w := range strings.Fields(guestCmdline(s.Spec)) {
		if v, ok := strings.CutPrefix(w, "host="); ok {
			host = v
		}
	}
	if err := unix.Sethostname([]byte(host)); err != nil {
		die("sethostname: %v", err)
	}
	init := "/sbin/init"
	if _, err := os.Lstat(init); err != nil {
		die("guest root has no %s: %v", init, err)
	}
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=linux", "HOME=/", "container=tinyfarm"}
	if !s.Unhardened {
		if err := dropCaps(s.NetRaw); err != nil {
			die("%v", err)
		}
		if err := loadSeccomp(); err != nil {
			die("%v", err)
		}
	}
	err = unix.Exec(init, []string{"init"}, env)
	die("exec %s: %v", init, err)
}

// execInner runs inside the guest's namespaces and root: it takes the
// guest's security profile and becomes the command.
func execInner(argv []string) {
	// The capability bounding set and the ambient set belong to a thread:
	// dropping them on one thread and calling execve from another (the Go
	// scheduler moves goroutines between threads) ran the command with
	// every capability. One thread from the drop to the exec.
	runtime.LockOSThread()
	if fd, err := strconv.Atoi(os.Getenv("_TINYFARM_NS_SELFFD")); err == nil {
		unix.Close(fd)
	}
	os.Unsetenv("_TINYFARM_NS_SELFFD")
	cgFDs := strings.Fields(strings.ReplaceAll(os.Getenv("_TINYFARM_NS_CGFDS"), ",", " "))
	os.Unsetenv("_TINYFARM_NS_CGFDS")
	for _, s := range cgFDs {
		fd, _ := strconv.Atoi(s)
		// Moving a process into a cgroup is not limited by pids.max, so
		// this works even in a guest that is at its process limit.
		if _, err := unix.Write(fd, []byte(strconv.Itoa(os.Getpid()))); err != nil {
			fmt.Fprintf(os.Stderr, "tinyfarm-ns-exec: join cgroup: %v\n", err)
			os.Exit(126)
		}
		unix.Close(fd)
	}
	netRaw := os.Getenv(netRawEnv) == "1"
	os.Unsetenv(netRawEnv)
	if err := dropCaps(netRaw); err != nil {
		fmt.Fprintf(os.Stderr, "tinyfarm-ns-exec: %v\n", err)
		os.Exit(126)
	}
	if err := loadSeccomp(); err != nil {
		fmt.Fprintf(os.Stderr, "tinyfarm-ns-exec: %v\n", err)
		os.Exit(126)
	}
	if len(argv) == 0 {
		os.Exit(2)
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "tinyfarm-ns-exec: %v\n", err)
		os.Exit(127)
	}
	err = unix.Exec(path, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "tinyfarm-ns-exec: exec %s: %v\n", path, err)
	os.Exit(126)
}

// shareMount is a host directory bind-mounted into the guest: from its
// host path, or (user-namespace mode) from fd, a detached idmapped clone
// of it the monitor made.
type shareMount struct {
	driver.Share
	fd int
}

// execMain joins the guest's cgroups, then becomes nsenter into all of the
// guest's namespaces and its root. Args: PID DIR CGROUP... -- ARGV...
func execMain(args []string) {
	sep := -1
	for i, a := range args {
		if a == "--" {
			sep = i
			break
		}
	}
	if sep < 2 || sep == len(args)-1 {
		fmt.Fprintln(os.Stderr, "tinyfarm-ns-exec: usage: PID DIR CGROUP... -- ARGV...")
		os.Exit(2)
	}
	pid, dir := args[0], args[1]
	// The command joins the guest's cgroups from inside (execInner), after
	// nsenter's fork: joining here would count nsenter and this Go process
	// against the guest's pids limit, and a guest at its limit could then
	// never be entered. The cgroup.procs files are opened now, while the
	// host's cgroup tree is visible, and inherited under the numbers they
	// got (named in the environment): duplicating them onto fixed numbers
	// could replace a descriptor the Go runtime holds (its epoll fd, when
	// its stdio was non-blocking) and crash it ("epollwait on fd 6 failed
	// with 22", seen with g:exec given stdin through machine mode).
	var cgFDs []string
	for _, cg := range args[2:sep] {
		fd, err := unix.Open(filepath.Join(cg, "cgroup.procs"), unix.O_WRONLY, 0) // no O_CLOEXEC: inherited
		if err != nil {
			fmt.Fprintf(os.Stderr, "tinyfarm-ns-exec: open %s: %v\n", cg, err)
			os.Exit(126)
		}
		cgFDs = append(cgFDs, strconv.Itoa(fd))
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tinyfarm-ns-exec: nsenter (util-linux) not found")
		os.Exit(127)
	}
	// nsenter needs the host's capabilities to enter the namespaces, so
	// the command must shed them itself: nsenter runs this binary again,
	// reached through an inherited descriptor (the guest's root does not
	// contain it), which drops the capabilities, loads the seccomp filter
	// and only then execs the command: the same profile as the guest's init.
	self, err := os.Executable()
	selfFD := -1
	if err == nil {
		selfFD, err = unix.Open(self, unix.O_RDONLY, 0) // no O_CLOEXEC: nsenter's child inherits it
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tinyfarm-ns-exec: open own binary: %v\n", err)
		os.Exit(126)
	}
	argv := []string{"nsenter", "-t", pid, "-m", "-u", "-i", "-n", "-p", "-C", "-r", "--wd=" + dir, "--", "/proc/self/fd/" + strconv.Itoa(selfFD)}
	if os.Args[0] == "tinyfarm-ns-exec-userns" {
		argv = append([]string{"nsenter", "-U"}, argv[1:]...)
	}
	argv = append(argv, args[sep+1:]...)
	env := append(os.Environ(), reexecEnv+"=exec-inner", "_TINYFARM_NS_CGFDS="+strings.Join(cgFDs, ","), "_TINYFARM_NS_SELFFD="+strconv.Itoa(selfFD))
	err = syscall.Exec(nsenter, argv, env)
	fmt.Fprintf(os.Stderr, "tinyfarm-ns-exec: %v\n", errors.Join(err))
	os.Exit(127)
}
