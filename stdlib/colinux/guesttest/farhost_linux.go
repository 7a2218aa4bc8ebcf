//go:build linux

package guesttest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// The far "host" of the migration tests: a network namespace joined to
// this one by a veth pair in 10.77.246.0/30 (.1 here, .2 there).
const (
	MigNS     = "tfmig9"
	migVethA  = "tfmig9a"
	migVethB  = "tfmig9b"
	migHereIP = "10.77.246.1"
	MigFarIP  = "10.77.246.2"
)

// Run runs a command (args[0] with the rest) and fails the test, with
// its output, when it fails.
func Run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// BuildTinyfarm builds the tinyfarm binary the far host runs.
func BuildTinyfarm(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "tinyfarm")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tinyfarm/tinyfarm/cmd/tinyfarm")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build tinyfarm: %v\n%s", err, out)
	}
	return bin
}

// FarHost makes the far host: the namespace, the veth pair, a dropbear on
// the far address that lets the returned key log in as root (with a home
// of its own: /etc/passwd bind-mounted in a private mount namespace), and a state dir. Everything goes in t.Cleanup.
func FarHost(t *testing.T, bin string) (ops.Remote, string) {
	t.Helper()
	dropbear, err := exec.LookPath("dropbear")
	if err != nil {
		t.Skip("dropbear not installed")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	exec.Command("ip", "netns", "del", MigNS).Run() // a leftover of a killed run
	exec.Command("ip", "link", "del", migVethA).Run()
	Run(t, "ip", "netns", "add", MigNS)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", MigNS).Run()
		exec.Command("ip", "link", "del", migVethA).Run()
	})
	Run(t, "ip", "link", "add", migVethA, "type", "veth", "peer", "name", migVethB, "netns", MigNS)
	Run(t, "ip", "addr", "add", migHereIP+"/30", "dev", migVethA)
	Run(t, "ip", "link", "set", migVethA, "up")
	Run(t, "ip", "-n", MigNS, "addr", "add", MigFarIP+"/30", "dev", migVethB)
	Run(t, "ip", "-n", MigNS, "link", "set", migVethB, "up")
	Run(t, "ip", "-n", MigNS, "link", "set", "lo", "up")

	dir := t.TempDir()
	client, _ := ssh.GenerateHostKey()
	server, _ := ssh.GenerateHostKey()
	pem, _ := client.OpenSSH()
	key := filepath.Join(dir, "id_ed25519")
	os.WriteFile(key, pem, 0o600)
	home := filepath.Join(dir, "home")
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.Chmod(home, 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), []byte(client.AuthorizedKey()+"\n"), 0o600)
	hostKey := filepath.Join(dir, "host_key")
	os.WriteFile(hostKey, server.Dropbear(), 0o600)
	passwd, _ := os.ReadFile("/etc/passwd")
	var lines []string
	for _, l := range strings.Split(strings.TrimSuffix(string(passwd), "\n"), "\n") {
		if f := strings.Split(l, ":"); len(f) == 7 && f[0] == "root" {
			f[5], f[6] = home, "/bin/sh"
			l = strings.Join(f, ":")
		}
		lines = append(lines, l)
	}
	fake := filepath.Join(dir, "passwd")
	os.WriteFile(fake, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	// nsenter + unshare -m rather than ip netns exec, which remounts /sys
	// (hiding the cgroup tree the far tinyfarm needs).
	cmd := exec.Command("nsenter", "--net=/run/netns/"+MigNS, "unshare", "-m", "--propagation", "slave", "/bin/sh", "-c", `mount --bind "$1" /etc/passwd && shift && exec "$@"`, "sh", fake,
		dropbear, "-F", "-E", "-s", "-p", MigFarIP+":22", "-r", hostKey, "-P", filepath.Join(dir, "dropbear.pid"))
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM) // only the dropbear this test started
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", MigFarIP+":22", 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if i > 50 {
			t.Fatalf("far dropbear does not listen: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	state := filepath.Join(dir, "state")
	return ops.Remote{Name: "far", Address: MigFarIP, Key: key, HostKey: server.AuthorizedKey(), StateDir: state, Binary: bin}, state
}

// InNetns runs fn on an OS thread that joined the network namespace
// name: sockets fn opens live there (the far host's QEMU forwards listen
// on its loopback). The thread stays locked and ends with its goroutine.
func InNetns(name string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// FarCounter reads the counter of a guest running on the far host, twice
// with pause between, over SSH from inside the far namespace.
func FarCounter(fg *farm.Guest, pause time.Duration) (int, int, error) {
	var n [2]int
	err := InNetns(MigNS, func() error {
		for i := range n {
			if i > 0 {
				time.Sleep(pause)
			}
			r, err := fg.Exec(context.Background(), []string{"cat", "/run/tf/n"}, driver.ExecOptions{})
			if err != nil {
				return err
			}
			if r.Code != 0 {
				return fmt.Errorf("cat /run/tf/n: exit %d: %s", r.Code, r.Stderr)
			}
			if n[i], err = strconv.Atoi(strings.TrimSpace(string(r.Stdout))); err != nil {
				return err
			}
		}
		return nil
	})
	return n[0], n[1], err
}
