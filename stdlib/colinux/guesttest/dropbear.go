package guesttest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// HostSSHD is an sshd (dropbear) a test runs for a "host" in a network
// namespace: root logs in with the authorized key, its home a directory of
// the test's (the machine's /root is never touched).
type HostSSHD struct {
	Addr    string // ip:22
	HostKey string // its public host key, authorized_keys format
	KeyFile string // the same in a file (for --ssh-host-key)
	Stop    func() // ends it before the test does (idempotent)
}

// StartHostSSHD runs dropbear on ip:22 inside network namespace netns
// (a name under /run/netns) until the test ends. Root's home there is a
// directory of the test (/etc/passwd bind-mounted in a private mount
// namespace) whose authorized_keys holds authorizedKey. nsenter and
// unshare -m rather than ip netns exec, which remounts /sys and hides the
// cgroup tree a tinyfarm there needs.
func StartHostSSHD(tb testing.TB, netns, ip, authorizedKey string) HostSSHD {
	tb.Helper()
	dropbear, err := exec.LookPath("dropbear")
	if err != nil {
		tb.Skip("dropbear not installed (scripts/deps.sh)")
	}
	dir := tb.TempDir()
	server, err := ssh.GenerateHostKey()
	if err != nil {
		tb.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(home, ".ssh"), 0o700))
	must(os.Chmod(home, 0o700))
	must(os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), []byte(authorizedKey+"\n"), 0o600))
	hostKey := filepath.Join(dir, "host_key")
	must(os.WriteFile(hostKey, server.Dropbear(), 0o600))
	pub := filepath.Join(dir, "host_key.pub")
	must(os.WriteFile(pub, []byte(server.AuthorizedKey()+"\n"), 0o644))
	passwd, err := os.ReadFile("/etc/passwd")
	must(err)
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(string(passwd), "\n"), "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == "root" {
			f[5], f[6] = home, "/bin/sh"
			l = strings.Join(f, ":")
		}
		lines = append(lines, l)
	}
	fake := filepath.Join(dir, "passwd")
	must(os.WriteFile(fake, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	addr := net.JoinHostPort(ip, "22")
	cmd := exec.Command("nsenter", "--net=/run/netns/"+netns, "unshare", "-m", "--propagation", "slave", "/bin/sh", "-c", `mount --bind "$1" /etc/passwd && shift && exec "$@"`, "sh", fake,
		dropbear, "-F", "-E", "-s", "-p", addr, "-r", hostKey, "-P", filepath.Join(dir, "dropbear.pid"))
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	must(cmd.Start())
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM) // only the dropbear this test started
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		})
	}
	tb.Cleanup(stop)
	// dropbear writes its pid file once it listens.
	for i := 0; ; i++ {
		if _, err := os.Stat(filepath.Join(dir, "dropbear.pid")); err == nil {
			break
		}
		select {
		case <-exited:
			tb.Fatalf("dropbear in %s on %s exited:\n%s", netns, addr, log)
		case <-time.After(50 * time.Millisecond):
		}
		if i > 100 {
			tb.Fatalf("dropbear in %s does not listen on %s\n%s", netns, addr, log)
		}
	}
	return HostSSHD{Addr: addr, HostKey: server.AuthorizedKey(), KeyFile: pub, Stop: stop}
}
