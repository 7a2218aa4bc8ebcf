package playbooks_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/playbooks"
	"github.com/tinyfarm/tinyfarm/stdlib/all"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// TestTinycolinuxOpenSSH is issue #12's acceptance, run as a user runs it
// (the real binary, the driver's default configuration): tinycolinux.lua
// with no core builds the disk from the mirror's official core for the
// arch (corepure64.gz), with extensions=openssh; the guest's bootlocal.sh
// starts Tiny Core's `openssh start`, which serves the host keys
// image.build placed: tinyfarm's pinned connection reaches OpenSSH's sshd,
// SFTP works through its sftp-server, and tcz.install over that connection
// installs hello-site (whose install script runs in the guest).
//
// qemu-frugal boots the release as Tiny Core ships it: a frugal disk (tce=
// by UUID) and, from the mirror by their official names, vmlinuz64 with
// corepure64.gz as its initrd (a bzImage: the pc machine, not microvm).
func TestTinycolinuxOpenSSH(t *testing.T) {
	for _, mode := range []string{"ns", "qemu", "qemu-frugal"} {
		t.Run(mode, func(t *testing.T) {
			driver, _, frugal := strings.Cut(mode, "-")
			bin, mirror, work, state, env := e2e(t)
			args := []string{"-e", "mirror=" + mirror,
				"-e", "disk=" + filepath.Join(work, "oss.img"), "-e", "extensions=openssh", "-e", "hostname=oss",
				"-e", "guest=oss", "-e", "driver=" + driver, "-e", "install=hello-site"}
			if frugal {
				args = append(args, "-e", "layout=frugal")
			}
			if driver == "qemu" && !frugal {
				if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
					t.Skip("qemu-system-x86_64 not installed (scripts/deps.sh)")
				}
				// The mini release's kernel, booting the scatter disk (root=).
				out := filepath.Dir(strings.TrimPrefix(mirror, "file://"))
				args = append(args, "-e", "kernel="+filepath.Join(out, "kernel", "vmlinux"), "-e", "initrd="+filepath.Join(out, "kernel", "modules.gz"))
			}
			fm := runTinycolinux(t, bin, work, state, env, "oss", args...)
			// The core came from the mirror by its official name.
			if _, err := os.Stat(filepath.Join(state, "tcz", "release", "corepure64.gz")); err != nil {
				t.Errorf("core not fetched as corepure64.gz: %v", err)
			}
			if frugal {
				kernel := filepath.Join(state, "tcz", "release", "vmlinuz64")
				if _, err := os.Stat(kernel); err != nil {
					t.Errorf("kernel not fetched as vmlinuz64: %v", err)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			g, err := fm.Guest(ctx, "oss")
			if err != nil {
				t.Fatal(err)
			}
			if frugal && (filepath.Base(g.Def.Kernel) != "vmlinuz64" || len(g.Def.Initrds) != 1 || filepath.Base(g.Def.Initrds[0]) != "corepure64.gz") {
				t.Errorf("frugal qemu guest boots %s with %q, want the release's vmlinuz64 and corepure64.gz", g.Def.Kernel, g.Def.Initrds)
			}
			if driver == "qemu" {
				// The release's bzImage runs on pc, and the status says why.
				want := "microvm"
				if frugal {
					want = "pc: the kernel is a bzImage without the PVH entry microvm needs"
				}
				if st, err := g.Status(ctx); err != nil || !strings.Contains(st.Isolation, want) {
					t.Errorf("status isolation %q (%v), want it to name %q", st.Isolation, err, want)
				}
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

// TestInstallOpenSSHIntoRunningGuest: a running dropbear guest whose disk
// has host keys for dropbear only (as disks built before key sets did)
// gets openssh with tcz.install over SSH; the install places the guest's
// pinned keys in /usr/local/etc/ssh before sshd first starts, so the sshd
// that Tiny Core's init script then starts (on a second port, dropbear
// keeps 22) is verified with the guest's pinned set.
func TestInstallOpenSSHIntoRunningGuest(t *testing.T) {
	bin, mirror, work, state, env := e2e(t)
	args := []string{"-e", "mirror=" + mirror,
		"-e", "disk=" + filepath.Join(work, "db.img"), "-e", "extensions=dropbear", "-e", "hostname=db", "-e", "guest=db"}
	fm := runTinycolinux(t, bin, work, state, env, "db", args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := fm.Guest(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.ServerVersion(); !strings.Contains(v, "dropbear") {
		t.Fatalf("server %q, want dropbear", v)
	}
	if _, err := c.Run(ctx, "sudo rm -f /usr/local/etc/ssh/ssh_host_* /etc/dropbear/*", ssh.RunOptions{}); err != nil {
		t.Fatal(err)
	}
	tg, err := g.Target(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := tcz.New(tcz.Config{URL: mirror, Cache: filepath.Join(work, "tcz")})
	if err != nil {
		t.Fatal(err)
	}
	r, err := tc.Install(ctx, tg, "openssh", tcz.InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(r.Files, "usr/local/etc/ssh/ssh_host_ecdsa_key") {
		t.Errorf("install placed no ecdsa key for sshd: %q", r.Files)
	}
	if res, err := c.Run(ctx, "sudo sh -c 'echo Port 2222 >>/usr/local/etc/ssh/sshd_config; /usr/local/etc/init.d/openssh start'", ssh.RunOptions{}); err != nil {
		t.Fatalf("openssh start: %v\n%s%s", err, res.Stdout, res.Stderr)
	}
	pubs, _ := ssh.ParsePublicKeys(g.Def.HostKey)
	host, _, _ := g.SSHAddr()
	fk, _ := ssh.EnsureFarmKey(state)
	c2, err := ssh.Dial(ctx, ssh.Config{Host: host, Port: 2222, User: "tc", Signer: fk.Signer, HostKeys: pubs, Retries: 20, Backoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("sshd with the placed keys: %v", err)
	}
	defer c2.Close()
	if v := c2.ServerVersion(); !strings.Contains(v, "OpenSSH") {
		t.Errorf("port 2222: %q, want OpenSSH", v)
	}
}

// TestTinycolinux32Bit boots a 32-bit Tiny Core (the x86 mini release,
// `make minicore-x86`: Debian i386 binaries) as a namespace guest on this
// 64-bit host: tinycolinux.lua with arch=x86 builds the disk from the
// mirror's core.gz, and the guest answers SSH (dropbear) with its pinned
// keys. Skipped when the host kernel cannot run 32-bit binaries.
func TestTinycolinux32Bit(t *testing.T) {
	bin, _, work, state, env := e2e(t)
	out := os.Getenv("TINYFARM_MINICORE_X86")
	if out == "" {
		out = filepath.Join(filepath.Dir(repoPlaybooks(t)), "testdata", "minicore", "out-x86")
	}
	if _, err := os.Stat(filepath.Join(out, "mirror", "15.x", "x86", "release", "distribution_files", "core.gz")); err != nil {
		t.Skipf("x86 mini release not built (make minicore-x86): %v", err)
	}
	// The release's own 32-bit busybox, run on the host.
	if b, err := exec.Command(filepath.Join(out, "cache", "sysroot-i386", "bin", "busybox"), "true").CombinedOutput(); err != nil {
		t.Skipf("the host kernel cannot run 32-bit binaries (CONFIG_IA32_EMULATION): %v %s", err, b)
	}
	args := []string{"-e", "mirror=file://" + filepath.Join(out, "mirror"),
		"-e", "arch=x86", "-e", "disk=" + filepath.Join(work, "x86.img"), "-e", "extensions=dropbear", "-e", "hostname=tc32",
		"-e", "guest=tc32", "-e", "driver=ns"}
	fm := runTinycolinux(t, bin, work, state, env, "tc32", args...)
	if _, err := os.Stat(filepath.Join(state, "tcz", "release", "core.gz")); err != nil {
		t.Errorf("core not fetched as core.gz: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := fm.Guest(ctx, "tc32")
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Its userland is 32-bit: busybox is an ELFCLASS32 binary, the loader
	// is ld-linux.so.2 (tce-load then picks the x86 tcz directory).
	b, err := c.ReadFile(ctx, "/bin/busybox")
	if err != nil || len(b) < 5 || string(b[1:4]) != "ELF" || b[4] != 1 {
		t.Errorf("/bin/busybox is not a 32-bit ELF (%v)", err)
	}
	r, err := c.Run(ctx, "ls /lib/ld-linux.so.2 && ! ls /lib/ld-linux-x86-64.so.2 2>/dev/null && hostname", ssh.RunOptions{})
	if err != nil || !strings.Contains(string(r.Stdout), "tc32") {
		t.Errorf("32-bit loader check: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
}

// TestReadmePlaybook runs the README's "A playbook" example with the real
// binary against the mini release laid out like the official mirror: the
// example's text, with two lines changed for the test: a tcz.mirror line
// in front (it uses the default, official, mirror) and the proxy on a
// loopback port instead of ":80".
func TestReadmePlaybook(t *testing.T) {
	bin, mirror, work, state, env := e2e(t)
	readme, err := os.ReadFile(filepath.Join(filepath.Dir(repoPlaybooks(t)), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "## A playbook\n\n```lua\n")
	example, _, ok2 := strings.Cut(rest, "```\n")
	if !ok || !ok2 || !strings.Contains(example, `listen = ":80"`) {
		t.Fatalf("README has no \"A playbook\" Lua block with listen = \":80\"")
	}
	port := freePort(t)
	example = strings.Replace(example, `listen = ":80"`, fmt.Sprintf(`listen = "127.0.0.1:%d"`, port), 1)
	site := filepath.Join(work, "site.lua")
	if err := os.WriteFile(site, []byte(`require("tcz").mirror{ url = "`+mirror+`" }`+"\n"+example), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		destroy := exec.Command(bin, "repl")
		destroy.Dir, destroy.Env = work, env
		destroy.Stdin = strings.NewReader(`for _, g in ipairs(colinux.list()) do colinux.get(g.name):destroy() end; proxy.daemon{stop = true}`)
		if out, err := destroy.CombinedOutput(); err != nil {
			t.Errorf("teardown: %v\n%s", err, out)
		}
	})
	cmd := exec.Command(bin, "run", site)
	cmd.Dir, cmd.Env = work, env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "failed=0") {
		t.Fatalf("tinyfarm run site.lua: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(state, "tcz", "release", "corepure64.gz")); err != nil {
		t.Errorf("core not fetched as corepure64.gz: %v", err)
	}
	if body := getHost(t, fmt.Sprintf("http://127.0.0.1:%d/", port), "blog.example.com"); !strings.Contains(body, "<h1>hello</h1>") {
		t.Errorf("blog.example.com through the proxy: %q", body)
	}
}

// TestColinuxFrugalX86Conf: arch = "x86" flows to a coLinux guest: a
// frugal guest without core or initrd gets the x86 mirror's core.gz, and
// its coLinux configuration loads it (initrd=…/core.gz).
func TestColinuxFrugalX86Conf(t *testing.T) {
	out := os.Getenv("TINYFARM_MINICORE_X86")
	if out == "" {
		out = filepath.Join(filepath.Dir(repoPlaybooks(t)), "testdata", "minicore", "out-x86")
	}
	if _, err := os.Stat(filepath.Join(out, "mirror", "15.x", "x86", "release", "distribution_files", "core.gz")); err != nil {
		t.Skipf("x86 mini release not built (make minicore-x86): %v", err)
	}
	state := t.TempDir()
	// The disk must exist (a guest on a missing disk is refused when
	// defined); the conf only names it.
	disk := filepath.Join(t.TempDir(), "tce.img")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(engine.Options{Modules: all.Modules(), Lib: playbooks.FS, StateDir: state, Reporter: discard{}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	vals, err := eng.Eval(context.Background(), `
		require("tcz").mirror{ url = "file://`+filepath.Join(out, "mirror")+`", arch = "x86" }
		local g = require("colinux").guest{ name = "co1", driver = "colinux", layout = "frugal", kernel = "/srv/colinux/vmlinux",
		                         disk = "`+disk+`", mem = "64M", net = "user" }
		return g:conf()`, "colinux_x86", false)
	if err != nil {
		t.Fatal(err)
	}
	conf := vals[0].String()
	t.Logf("coLinux conf:\n%s", conf)
	if !strings.Contains(conf, "initrd="+filepath.Join(state, "tcz", "release", "core.gz")) {
		t.Errorf("coLinux conf does not load the x86 core.gz:\n%s", conf)
	}
}

// runTinycolinux runs playbooks/tinycolinux.lua with the real binary for
// one guest (extra -e arguments in args) and fails the test unless the
// recap says failed=0. The guest is destroyed (its disk kept) when the
// test ends; the farm is returned for inspection.
func runTinycolinux(t *testing.T, bin, work, state string, env []string, guest string, args ...string) *farm.Farm {
	t.Helper()
	args = append([]string{"run", filepath.Join(repoPlaybooks(t), "tinycolinux.lua")}, args...)
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers()})
	t.Cleanup(func() {
		if g, err := fm.Guest(context.Background(), guest); err == nil {
			g.Destroy(context.Background(), false)
		}
	})
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env = work, env
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "failed=0") {
		t.Fatalf("tinyfarm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return fm
}
