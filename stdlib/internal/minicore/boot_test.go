package minicore

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const bootTimeout = 60 * time.Second

func needQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a VM; skipped with -short")
	}
	needTool(t, "qemu-system-x86_64", "mkfs.ext3", "tar")
}

// mkfsExt3 makes a raw ext3 image of dir (mkfs.ext3 -d).
func mkfsExt3(t *testing.T, dir, label, size string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), label+".img")
	if out, err := exec.Command("mkfs.ext3", "-q", "-F", "-L", label, "-d", dir, img, size).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext3 -d %s: %v\n%s", dir, err, out)
	}
	return img
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dst, string(b), 0o644)
}

// TestBootFrugal boots corepure64.gz (rootfs + the modules initramfs) as the initrd
// with a tce disk holding extensions, onboot.lst and mydata.tgz: the boot
// script finds tce=LABEL=tce, installs the extensions with their
// dependencies (nginx and its libraries, the -KERNEL module package,
// dropbear), runs their install scripts, bind-mounts home= and opt= from the
// disk, restores mydata.tgz (which holds /opt/bootlocal.sh) and runs
// bootlocal.sh, which reports on the console.
func TestBootFrugal(t *testing.T) {
	r := Require(t)
	needQEMU(t)
	tce := filepath.Join(t.TempDir(), "disk")
	opt := filepath.Join(tce, "tce", "optional")
	for _, n := range []string{"hello-site", "nginx", "libxcrypt", "pcre2", "openssl", "libcrypto", "zlib",
		"overlayfs", "overlay-modules-" + r.KernelVersion, "dropbear", "libtomcrypt", "libtommath", "gmp"} {
		for _, ext := range []string{".tcz", ".tcz.md5.txt", ".tcz.dep"} {
			if _, err := os.Stat(filepath.Join(r.TCZDir, n+ext)); err == nil {
				copyFile(t, filepath.Join(r.TCZDir, n+ext), filepath.Join(opt, n+ext))
			}
		}
	}
	writeFile(t, filepath.Join(tce, "home", "tc", "persisted.txt"), "from-disk\n", 0o644)
	writeFile(t, filepath.Join(tce, "tce", "onboot.lst"), "hello-site.tcz\noverlayfs.tcz # comment\n\ndropbear.tcz\n", 0o644)
	data := filepath.Join(t.TempDir(), "mydata")
	writeFile(t, filepath.Join(data, "opt", "bootlocal.sh"), `#!/bin/sh
/usr/local/sbin/nginx
/usr/local/etc/init.d/dropbear start
sleep 0.3
echo "MARK-FRUGAL host=$(hostname) tcedir=$(readlink /etc/sysconfig/tcedir) site=[$(wget -qO- http://127.0.0.1/installed.txt)] $(overlay-check) ssh=$(netstat -ltn | grep -q ':22 ' && echo up) up=$(cut -d' ' -f1 /proc/uptime) sudo=$(su tc -c 'sudo id -u')"
echo "MARK-PERSIST home=$(cat /home/tc/persisted.txt) homedev=$(awk '$2 == "/home" { print $1 }' /proc/mounts) optdev=$(awk '$2 == "/opt" { print $1 }' /proc/mounts) seeded=$(ls /mnt/vda/opt/bootsync.sh /mnt/vda/opt/.filetool.lst /mnt/vda/opt/bootlocal.sh | wc -l)"
`, 0o755)
	if out, err := exec.Command("tar", "-C", data, "-czf", filepath.Join(tce, "tce", "mydata.tgz"), "opt").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	img := mkfsExt3(t, tce, "tce", "64M")

	start := time.Now()
	c := StartQEMU(t, QEMU{Kernel: r.Vmlinux, Initrd: r.FrugalInitrd(t), Disks: []string{img},
		Append: "tce=LABEL=tce home=LABEL=tce opt=vda host=frugal1 nodhcp tcdebug"})
	line, err := c.WaitFor("MARK-FRUGAL", bootTimeout)
	if err != nil {
		t.Fatalf("%v; console:\n%s", err, c.Output())
	}
	t.Logf("bootlocal.sh ran %.2fs after QEMU start: %s", time.Since(start).Seconds(), line)
	failed := false
	for _, want := range []string{
		"host=frugal1",                           // host= boot code
		"tcedir=/mnt/vda/tce",                    // tce=LABEL=tce resolved and linked from /etc/sysconfig/tcedir
		"site=[hello-site installed on frugal1]", // install script ran; nginx + libraries load and serve
		"overlay: available",                     // overlay-modules-KERNEL installed, depmod'ed and loaded
		"ssh=up",                                 // dropbear with its ed25519 key listens
		"sudo=0",                                 // tc escalates without a password
	} {
		if !strings.Contains(line, want) {
			t.Errorf("bootlocal report lacks %q", want)
			failed = true
		}
	}
	persist, err := c.WaitFor("MARK-PERSIST", 10*time.Second)
	if err != nil {
		t.Fatalf("%v; console:\n%s", err, c.Output())
	}
	// home= and opt= bind-mount the disk's home/ and opt/; opt/ was seeded
	// from core's /opt and then received the restored bootlocal.sh.
	for _, want := range []string{"home=from-disk", "homedev=/dev/vda", "optdev=/dev/vda", "seeded=3"} {
		if !strings.Contains(persist, want) {
			t.Errorf("persistence report lacks %q: %s", want, persist)
			failed = true
		}
	}
	if failed || testing.Verbose() {
		t.Logf("console:\n%s", c.Output())
	}
	if !strings.Contains(c.Output(), "restored /mnt/vda/tce/mydata.tgz") {
		t.Errorf("no restore message on the console:\n%s", c.Output())
	}
}

// TestBootScatter boots a disk made by mkfs.ext3 -d from the extracted core
// with root=/dev/vda (only the modules initramfs as initrd).
func TestBootScatter(t *testing.T) {
	r := Require(t)
	needQEMU(t)
	needTool(t, "cpio")
	root := filepath.Join(t.TempDir(), "root")
	if err := r.ExtractCore(root); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "opt", "bootlocal.sh"), `#!/bin/sh
echo "MARK-SCATTER host=$(hostname) root=$(awk '$2 == "/" { print $1 }' /proc/mounts | tail -n 1) tcedir=$(readlink /etc/sysconfig/tcedir) sudo=$(su tc -c 'sudo id -u')"
`, 0o775)
	img := mkfsExt3(t, root, "root", "64M")
	start := time.Now()
	c := StartQEMU(t, QEMU{Kernel: r.Vmlinux, Initrd: r.ModulesInitrd, Disks: []string{img},
		Append: "root=/dev/vda host=scatter1 nodhcp"})
	line, err := c.WaitFor("MARK-SCATTER", bootTimeout)
	if err != nil {
		t.Fatalf("%v; console:\n%s", err, c.Output())
	}
	t.Logf("bootlocal.sh ran %.2fs after QEMU start: %s", time.Since(start).Seconds(), line)
	wants := []string{"host=scatter1", "root=/dev/vda", "tcedir=/tmp/tce"}
	if os.Geteuid() == 0 { // only root extracts sudo setuid root
		wants = append(wants, "sudo=0")
	}
	for _, want := range wants {
		if !strings.Contains(line, want) {
			t.Errorf("bootlocal report lacks %q:\n%s\nconsole:\n%s", want, line, c.Output())
		}
	}
}
