//go:build linux

package image

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// seedDisk builds a scatter disk the seed's way: zcat core.gz | cpio -idm,
// unsquashfs -f -d per extension in dependency order, mkfs.ext3 -d.
func seedDisk(t testing.TB, core, tczDir string, order []string, img string) {
	t.Helper()
	root := filepath.Join(filepath.Dir(img), "seedroot")
	script := `set -e; mkdir -p "$ROOT"; cd "$ROOT"; zcat "$CORE" | cpio -idm --quiet
for p in $ORDER; do unsquashfs -q -n -f -d "$ROOT" "$TCZ/$p.tcz" >/dev/null; done
mkfs.ext3 -q -F -L root -d "$ROOT" "$IMG" 64M`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "ROOT="+root, "CORE="+core, "TCZ="+tczDir, "ORDER="+strings.Join(order, " "), "IMG="+img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("seed pipeline: %v\n%s", err, out)
	}
	os.RemoveAll(root)
}

// intended reports whether a difference at p is tinyfarm's own doing (see
// the package documentation of Build): the installed database and its
// file lists, the first-boot queue and its bootsync block, the bootlocal
// block, the tce directory, tc's home made from /etc/skel with the farm
// key, the hostname and the host keys.
func intended(p string) bool {
	// The host key set and its directories (no extension ships keys).
	for _, d := range []string{ssh.OpenSSHKeyDir, ssh.DropbearKeyDir, ssh.DropbearDefaultKeyDir} {
		if p == d || strings.HasPrefix(p, d+"/ssh_host_") || strings.HasPrefix(p, d+"/dropbear_") {
			return true
		}
	}
	for _, pre := range []string{
		"usr/local/tce.installed", // markers, .files/*.list, .firstboot.lst (seed: only what archives ship)
		"opt/bootsync.sh",         // tcz-firstboot block
		"opt/bootlocal.sh",        // image block (dropbear start, user lines)
		"tce",                     // tce/, optional/, ondemand/, onboot.lst
		"home/tc",                 // made from etc/skel as tc-config would, plus .ssh/authorized_keys
		"etc/hostname",
	} {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}

func TestCompareWithSeedPipeline(t *testing.T) {
	needRoot(t, "unsquashfs", "cpio", "zcat")
	rel := minicore.Require(t)
	c := mirrorClient(t, rel)
	dir := t.TempDir()
	img := filepath.Join(dir, "tf.img")
	// rootfs64.gz, one archive: the seed's `zcat | cpio -idm` stops at the
	// first archive's trailer, so on corepure64.gz it would drop modules64.gz
	// (which Build unpacks, as the kernel does).
	r, err := Build(ctx, Options{Path: img, Core: []string{rel.Rootfs}, Mirror: c, Hostname: "web1", Size: 64 << 20,
		AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOy8wqKmJ0uO4o7vEuTPvtnOy0ZbhQmP7M5mBp8Un0Dq farm"},
		Extensions:     []string{"nginx", "dropbear"}})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	seed := filepath.Join(dir, "seed.img")
	seedDisk(t, rel.Rootfs, rel.TCZDir, r.Extensions, seed)
	fsck(t, seed)
	got, want := imageTree(t, img), imageTree(t, seed)
	same, extra := 0, 0
	for _, p := range sortedKeys(want) {
		g, ok := got[p]
		switch {
		case intended(p):
		case !ok:
			t.Errorf("missing %s (seed: %s)", p, want[p])
		case g != want[p]:
			t.Errorf("%s: tinyfarm %s, seed %s", p, g, want[p])
		default:
			same++
		}
	}
	for _, p := range sortedKeys(got) {
		if _, ok := want[p]; !ok {
			if !intended(p) {
				t.Errorf("extra %s: %s", p, got[p])
			}
			extra++
		}
	}
	t.Logf("%d entries identical, %d extra intended entries, order %v", same, extra, r.Extensions)
	if same < 300 {
		t.Errorf("only %d entries compared", same)
	}
}
