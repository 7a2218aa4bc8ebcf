//go:build linux

package minicore

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDropbearSFTP installs dropbear.tcz and its dependencies into an
// extracted core (offline, unsquashfs -f as tinyfarm's image builder does),
// runs the guest's dropbear in a chroot on a loopback port with an ed25519
// host key, and uses OpenSSH's sftp to upload and download as user tc.
func TestDropbearSFTP(t *testing.T) {
	r := Require(t)
	needRoot(t)
	needTool(t, "cpio", "chroot", "unsquashfs", "ssh-keygen", "sftp", "mknod")
	tmp := t.TempDir()
	root := filepath.Join(tmp, "root")
	if err := r.ExtractCore(root); err != nil {
		t.Fatal(err)
	}
	// dropbear and its dependency closure, deps first does not matter here.
	todo, seen := []string{"dropbear"}, map[string]bool{}
	for len(todo) > 0 {
		n := todo[0]
		todo = todo[1:]
		if seen[n] {
			continue
		}
		seen[n] = true
		if out, err := exec.Command("unsquashfs", "-q", "-n", "-f", "-d", root, r.TCZ(n)).CombinedOutput(); err != nil {
			t.Fatalf("unsquashfs %s: %v\n%s", n, err, out)
		}
		deps, err := r.Deps(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range deps {
			todo = append(todo, r.ExtName(d))
		}
	}
	for _, n := range []string{"null:1:3", "zero:1:5", "urandom:1:9", "random:1:8"} {
		f := strings.Split(n, ":")
		if out, err := exec.Command("mknod", "-m", "666", filepath.Join(root, "dev", f[0]), "c", f[1], f[2]).CombinedOutput(); err != nil {
			t.Fatalf("mknod: %v\n%s", err, out)
		}
	}
	chroot := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("chroot", append([]string{root}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("chroot %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	chroot("/sbin/ldconfig")
	chroot("/bin/mkdir", "-p", "/usr/local/etc/dropbear")
	chroot("/usr/local/bin/dropbearkey", "-t", "ed25519", "-f", "/usr/local/etc/dropbear/dropbear_ed25519_host_key")

	key := filepath.Join(tmp, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(root, "home", "tc")
	writeFile(t, filepath.Join(home, ".ssh", "authorized_keys"), string(pub), 0o600)
	for _, p := range []string{home, filepath.Join(home, ".ssh"), filepath.Join(home, ".ssh", "authorized_keys")} {
		if err := os.Chown(p, 1001, 50); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	db := exec.Command("chroot", root, "/usr/local/sbin/dropbear", "-F", "-E", "-s",
		"-p", "127.0.0.1:"+strconv.Itoa(port), "-r", "/usr/local/etc/dropbear/dropbear_ed25519_host_key", "-P", "/tmp/dropbear.pid")
	db.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var dblog strings.Builder
	db.Stdout, db.Stderr = &dblog, &dblog
	if err := db.Start(); err != nil {
		t.Fatalf("start dropbear: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-db.Process.Pid, syscall.SIGKILL) // dropbear and its session children
		_ = db.Wait()
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dropbear does not listen on %d: %v\n%s", port, err, dblog.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	local := filepath.Join(tmp, "upload.txt")
	writeFile(t, local, "uploaded over sftp\n", 0o644)
	batch := filepath.Join(tmp, "batch")
	writeFile(t, batch, "put "+local+" /home/tc/upload.txt\nget /etc/os-release "+filepath.Join(tmp, "os-release")+"\n", 0o644)
	sftp := exec.Command("sftp", "-b", batch, "-i", key, "-P", strconv.Itoa(port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "HostKeyAlgorithms=ssh-ed25519", "tc@127.0.0.1")
	if out, err := sftp.CombinedOutput(); err != nil {
		t.Fatalf("sftp: %v\n%s\ndropbear:\n%s", err, out, dblog.String())
	}
	if b, err := os.ReadFile(filepath.Join(home, "upload.txt")); err != nil || string(b) != "uploaded over sftp\n" {
		t.Errorf("uploaded file in the guest = %q, %v", b, err)
	}
	st, err := os.Stat(filepath.Join(home, "upload.txt"))
	if err == nil && st.Sys().(*syscall.Stat_t).Uid != 1001 {
		t.Errorf("uploaded file owned by uid %d, want tc (1001)", st.Sys().(*syscall.Stat_t).Uid)
	}
	if b, err := os.ReadFile(filepath.Join(tmp, "os-release")); err != nil || !strings.Contains(string(b), "VERSION_ID="+VersionID) {
		t.Errorf("downloaded os-release = %q, %v", b, err)
	}
}
