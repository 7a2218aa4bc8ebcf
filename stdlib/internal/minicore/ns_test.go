//go:build linux

package minicore

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nsSetup is the namespace guest's first process (run by the host's sh
// inside fresh PID/mount/UTS/net/IPC namespaces): it mounts proc, binds the
// guest's kernel line over /proc/cmdline (PLATFORM.md §10), mounts sysfs
// read-only and a small tmpfs /dev, then execs the guest's busybox init as
// PID 1. Every mount lives in the private mount namespace.
const nsSetup = `set -e
R=$1 CMDLINE=$2
mount --make-rprivate /
mount --bind "$R" "$R"
mount -t proc proc "$R/proc"
mount --bind "$CMDLINE" "$R/proc/cmdline"
mount -t sysfs -o ro sysfs "$R/sys"
mount -t tmpfs -o mode=755,size=1m dev "$R/dev"
for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
	IFS=: read -r name maj min <<EOF
$n
EOF
	mknod -m 666 "$R/dev/$name" c "$maj" "$min"
done
mkdir "$R/dev/pts"
mount -t devpts -o newinstance,ptmxmode=666 devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
echo NS-SETUP-DONE
exec chroot "$R" /sbin/init
`

// TestNamespaceBoot boots the extracted core as a namespace guest: no
// kernel modules, no udev, boot codes from a bind mount over /proc/cmdline.
// The boot script must honour them and run bootlocal.sh.
func TestNamespaceBoot(t *testing.T) {
	r := Require(t)
	needRoot(t)
	needTool(t, "unshare", "chroot", "cpio", "mknod")
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	if err := r.ExtractCore(root); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "opt", "bootlocal.sh"), `#!/bin/sh
echo "MARK-NS pid1=$(cat /proc/1/comm) host=$(hostname) tcedir=$(readlink /etc/sysconfig/tcedir) nics=$(ls /sys/class/net | tr '\n' ,) mods=$(ls /lib/modules 2>/dev/null | wc -l) user=$(id -un tc) sudo=$(su tc -c 'sudo id -u')"
`, 0o775)
	cmdline := filepath.Join(tmp, "cmdline")
	writeFile(t, cmdline, "quiet host=nsguest1 nodhcp norestore\n", 0o644)
	script := filepath.Join(tmp, "nssetup.sh")
	writeFile(t, script, nsSetup, 0o755)

	start := time.Now()
	cmd := exec.Command("unshare", "--pid", "--mount", "--uts", "--net", "--ipc", "--fork",
		"--propagation", "private", "sh", script, root, cmdline)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start unshare: %v", err)
	}
	t.Cleanup(func() {
		// Killing the guest's PID 1 ends every process in its PID
		// namespace, and with them the mount namespace and its mounts.
		if pid := childOf(cmd.Process.Pid); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		assertNoMountsUnder(t, tmp)
	})
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			lines <- s.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var out strings.Builder
	var mark string
	timeout := time.After(20 * time.Second)
wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("guest exited before bootlocal.sh reported:\n%s", out.String())
			}
			out.WriteString(l + "\n")
			if strings.Contains(l, "MARK-NS") {
				mark = l
				break wait
			}
		case <-timeout:
			t.Fatalf("no MARK-NS within 20s:\n%s", out.String())
		}
	}
	t.Logf("namespace guest ran bootlocal.sh %.0f ms after start: %s", float64(time.Since(start).Microseconds())/1000, mark)
	// mods=1: the core carries its kernel's modules (modules64.gz), which a
	// namespace guest leaves alone (uname -r is the host's kernel).
	for _, want := range []string{"pid1=init", "host=nsguest1", "tcedir=/tmp/tce", "nics=lo,", "mods=1", "user=tc", "sudo=0"} {
		if !strings.Contains(mark, want) {
			t.Errorf("report lacks %q:\n%s\noutput:\n%s", want, mark, out.String())
		}
	}
	if strings.Contains(out.String(), "udev") || strings.Contains(out.String(), "modprobe") {
		t.Errorf("boot mentioned udev/modprobe in a namespace guest:\n%s", out.String())
	}
	// The host's hostname is untouched (UTS namespace).
	if h, _ := os.Hostname(); h == "nsguest1" {
		t.Errorf("host hostname changed to the guest's")
	}
}

// childOf returns the first child PID of pid, or 0.
func childOf(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}

// assertNoMountsUnder checks the host mount table has nothing below dir
// (the guest's mounts were private to its namespace) and detaches any
// leftover so the temp dir can be removed.
func assertNoMountsUnder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("read mountinfo: %v", err)
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			t.Errorf("mount leaked into the host namespace: %s", l)
			_ = syscall.Unmount(f[4], syscall.MNT_DETACH)
		}
	}
}
