package playbooks_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// TestTinycolinuxOpenSSH is issue #12's acceptance, run as a user runs it
// (the real binary, the driver's default configuration): tinycolinux.lua
// with no core builds the disk from the mirror's official core for the
// arch (corepure64.gz), with extensions=openssh; the guest's bootlocal.sh
// starts Tiny Core's `openssh start`, which serves the host keys
// image.build placed: tinyfarm's pinned connection reaches OpenSSH's sshd,
// SFTP works through its sftp-server, and tcz.install over that connection
// installs hello-site (whose install script runs in the guest).
func TestTinycolinuxOpenSSH(t *testing.T) {
	for _, driver := range []string{"ns", "qemu"} {
		t.Run(driver, func(t *testing.T) {
			bin, mirror, work, state, env := e2e(t)
			args := []string{"run", filepath.Join(repoPlaybooks(t), "tinycolinux.lua"), "-e", "mirror=" + mirror,
				"-e", "disk=" + filepath.Join(work, "oss.img"), "-e", "extensions=openssh", "-e", "hostname=oss",
				"-e", "guest=oss", "-e", "driver=" + driver, "-e", "install=hello-site"}
			if driver == "qemu" {
				if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
					t.Skip("qemu-system-x86_64 not installed (scripts/deps.sh)")
				}
				// The mini release's kernel, booting the scatter disk (root=).
				out := filepath.Dir(strings.TrimPrefix(mirror, "file://"))
				args = append(args, "-e", "kernel="+filepath.Join(out, "kernel", "vmlinux"), "-e", "initrd="+filepath.Join(out, "kernel", "modules.gz"))
			}
			farm := colinux.New(state, colinux.Options{Drivers: colinux.DefaultDrivers()})
			t.Cleanup(func() {
				if g, err := farm.Guest(context.Background(), "oss"); err == nil {
					g.Destroy(context.Background(), false)
				}
			})
			cmd := exec.Command(bin, args...)
			cmd.Dir, cmd.Env = work, env
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "failed=0") {
				t.Fatalf("tinyfarm %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			// The core came from the mirror by its official name.
			if _, err := os.Stat(filepath.Join(state, "tcz", "release", "corepure64.gz")); err != nil {
				t.Errorf("core not fetched as corepure64.gz: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			g, err := farm.Guest(ctx, "oss")
			if err != nil {
				t.Fatal(err)
			}
			if n := len(strings.Split(g.Def.HostKey, "\n")); n != 3 {
				t.Errorf("guest pins %d host keys, want the set of 3:\n%s", n, g.Def.HostKey)
			}
			c, err := g.SSH(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if v := c.ServerVersion(); !strings.Contains(v, "OpenSSH") {
				t.Errorf("server %q, want OpenSSH's sshd", v)
			}
			// bootlocal.sh started it the Tiny Core way, and it is the only server.
			r, err := c.Run(ctx, "ps; cat /opt/bootlocal.sh", ssh.RunOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if ps := string(r.Stdout); !strings.Contains(ps, "/usr/local/sbin/sshd -f /usr/local/etc/ssh/sshd_config") ||
				!strings.Contains(ps, "/usr/local/etc/init.d/openssh start") || strings.Contains(ps, "dropbear") {
				t.Errorf("guest processes and bootlocal.sh:\n%s", ps)
			}
			// Each key of the set is served (an sshd without ed25519 would be
			// verified with the ecdsa or rsa key).
			pubs, _ := ssh.ParsePublicKeys(g.Def.HostKey)
			host, port, _ := g.SSHAddr()
			fk, _ := ssh.EnsureFarmKey(state)
			for _, p := range pubs {
				c1, err := ssh.Dial(ctx, ssh.Config{Host: host, Port: port, User: "tc", Signer: fk.Signer, HostKey: p, Retries: 3})
				if err != nil {
					t.Errorf("pinning %s alone: %v", p.Type(), err)
					continue
				}
				c1.Close()
			}
			// SFTP through /usr/local/lib/openssh/sftp-server.
			if err := c.WriteFile(ctx, "/home/tc/sftp.txt", []byte("over sftp\n"), 0o644); err != nil {
				t.Fatalf("sftp write: %v", err)
			}
			if b, err := c.ReadFile(ctx, "/home/tc/sftp.txt"); err != nil || string(b) != "over sftp\n" {
				t.Errorf("sftp read back %q, %v", b, err)
			}
			// tcz.install over this connection ran hello-site's install script.
			if b, err := c.ReadFile(ctx, "/usr/local/share/hello-site/www/installed.txt"); err != nil || !strings.Contains(string(b), "hello-site installed on oss") {
				t.Errorf("hello-site's installed.txt: %q, %v", b, err)
			}
		})
	}
}
