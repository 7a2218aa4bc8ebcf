//go:build linux

package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

var ctx = context.Background()

// needRoot skips tests that build or mount images when not root or when a
// tool is missing, and checks that no loop device is left behind.
func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: staging keeps owners and setuid bits, loop mounts need CAP_SYS_ADMIN")
	}
	for _, tool := range append(tools, "mkfs.ext3", "e2fsck") {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	t.Cleanup(func() { checkNoLoop(t) })
}

func checkNoLoop(t *testing.T) {
	t.Helper()
	ms, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, m := range ms {
		b, _ := os.ReadFile(m)
		if strings.Contains(string(b), "/"+strings.SplitN(t.Name(), "/", 2)[0]) {
			t.Errorf("loop device left attached: %s -> %s", m, strings.TrimSpace(string(b)))
		}
	}
}

func mirrorClient(t *testing.T, rel *minicore.Release) *tcz.Client {
	t.Helper()
	c, err := tcz.New(tcz.Config{URL: "file://" + rel.Mirror, Cache: filepath.Join(t.TempDir(), "tcz"), Kernel: rel.KernelVersion})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// entry is one file of a tree as the comparison sees it.
type entry struct {
	Type     string
	Mode     uint32
	Uid, Gid uint32
	Link     string
	Sum      string
}

func (e entry) String() string {
	return fmt.Sprintf("%s %o %d:%d %s%s", e.Type, e.Mode, e.Uid, e.Gid, e.Link, e.Sum)
}

// readTree lists every entry of the tree under t (an image target or a
// host directory) with owner, mode, link target and content hash.
func readTree(t *testing.T, root *os.Root) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := root.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{Mode: st.Mode & 0o7777, Uid: st.Uid, Gid: st.Gid}
		switch st.Mode & cpioTypeMask {
		case cpioDir:
			e.Type = "dir"
		case cpioLink:
			e.Type = "link"
			e.Link, _ = root.Readlink(p)
		case cpioReg:
			e.Type = "file"
			f, err := root.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			e.Sum = hex.EncodeToString(h.Sum(nil))[:16]
		default:
			e.Type = fmt.Sprintf("other%o", st.Mode&cpioTypeMask)
		}
		out[p] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// imageTree reads an image's tree through a read-only private mount.
func imageTree(t *testing.T, img string) map[string]entry {
	t.Helper()
	m, err := mountImage(ctx, img, true)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	return readTree(t, m.root)
}

func TestBuildScatterIdempotentAndEdit(t *testing.T) {
	needRoot(t)
	rel := minicore.Require(t)
	c := mirrorClient(t, rel)
	farm := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOy8wqKmJ0uO4o7vEuTPvtnOy0ZbhQmP7M5mBp8Un0Dq farm"
	img := filepath.Join(t.TempDir(), "web1.img")
	opts := Options{Path: img, Core: []string{rel.Core}, Mirror: c, Hostname: "web1", AuthorizedKeys: []string{farm},
		Extensions: []string{"dropbear", "nginx"}, Files: map[string]string{"/etc/motd": "hello\n"}, Bootlocal: []string{"/usr/local/sbin/nginx"}, Logf: t.Logf}
	r, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Changed || r.Reason != "new image" || !strings.HasPrefix(r.HostKey, "ssh-ed25519 ") || len(strings.Split(r.HostKey, "\n")) != 3 || r.Bootcodes["host"] != "web1" {
		t.Fatalf("first build: %+v", r)
	}
	fsck(t, img)
	if bs := blockSize(t, img); bs != 4096 {
		t.Errorf("block size %d, want 4096", bs)
	}
	// Identical inputs: unchanged, same key.
	r2, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r2.Changed || r2.HostKey != r.HostKey || r2.UUID != r.UUID {
		t.Fatalf("second build changed: %+v", r2)
	}
	// Check mode with other inputs: would change, writes nothing.
	fi0, _ := os.Stat(img)
	o3 := opts
	o3.Hostname, o3.Check = "web2", true
	r3, err := Build(ctx, o3)
	if err != nil || !r3.Changed || r3.Reason != "inputs changed" {
		t.Fatalf("check build: %+v %v", r3, err)
	}
	if fi, _ := os.Stat(img); fi.ModTime() != fi0.ModTime() {
		t.Error("check mode wrote the image")
	}

	tree := imageTree(t, img)
	want := map[string]string{
		"etc/hostname":                             "file 644 0:0",
		"home/tc/.ssh":                             "dir 700 1001:50",
		"home/tc/.ssh/authorized_keys":             "file 600 1001:50",
		DropbearHostKey:                            "file 600 0:0",
		OpenSSHHostKey:                             "file 600 0:0",
		"usr/local/etc/ssh/ssh_host_rsa_key":       "file 600 0:0",
		"usr/local/etc/ssh/ssh_host_ecdsa_key.pub": "file 644 0:0",
		"etc/dropbear/dropbear_ecdsa_host_key":     "file 600 0:0",
		"tce/optional":                             "dir 775 1001:50",
		"tce/onboot.lst":                           "file 664 1001:50",
		"usr/local/sbin/nginx":                     "file 755 0:0",
		"usr/local/tce.installed/dropbear":         "file",
		"etc/motd":                                 "file 644 0:0",
		"opt/bootlocal.sh":                         "file",
	}
	for p, w := range want {
		e, ok := tree[p]
		if !ok {
			t.Errorf("%s missing", p)
			continue
		}
		if !strings.HasPrefix(e.String(), w) {
			t.Errorf("%s: %s, want %s", p, e, w)
		}
	}
	// The keys in the image, in every server's place, are the ones returned.
	err = View(ctx, img, func(tg target.Target) error {
		seen := map[string]bool{}
		for _, dir := range []string{ssh.OpenSSHKeyDir, ssh.DropbearKeyDir, ssh.DropbearDefaultKeyDir} {
			for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
				name := dir + "/ssh_host_" + typ + "_key"
				if dir != ssh.OpenSSHKeyDir {
					name = dir + "/dropbear_" + typ + "_host_key"
				}
				b, err := target.ReadFile(ctx, tg, name)
				if err != nil {
					return err
				}
				var one ssh.HostKeySet
				if err := one.ParseHostKeyFile(b); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				if !slices.Contains(strings.Split(r.HostKey, "\n"), one.AuthorizedKeys()) {
					t.Errorf("%s holds %s, not in the result's %s", name, one.AuthorizedKeys(), r.HostKey)
				}
				seen[one.AuthorizedKeys()] = true
			}
		}
		if len(seen) != 3 {
			t.Errorf("%d distinct keys in the image, want 3", len(seen))
		}
		bl, _ := target.ReadFile(ctx, tg, "opt/bootlocal.sh")
		if !strings.Contains(string(bl), "# BEGIN tinyfarm image\n"+DropbearStart+"\n/usr/local/sbin/nginx\n# END tinyfarm image\n") {
			t.Errorf("bootlocal.sh:\n%s", bl)
		}
		ak, _ := target.ReadFile(ctx, tg, "home/tc/.ssh/authorized_keys")
		if string(ak) != farm+"\n" {
			t.Errorf("authorized_keys %q", ak)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Edit: offline change through the target interface; Build keeps it.
	err = Edit(ctx, img, func(tg target.Target) error {
		return target.WriteFile(ctx, tg, "etc/motd", []byte("edited\n"), 0o644, 0, 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	r4, err := Build(ctx, opts)
	if err != nil || r4.Changed {
		t.Fatalf("build after edit: %+v %v", r4, err)
	}
	// A real input change rebuilds, keeping the host key.
	o5 := opts
	o5.Hostname = "web2"
	r5, err := Build(ctx, o5)
	if err != nil || !r5.Changed || r5.HostKey != r.HostKey {
		t.Fatalf("rebuild: %+v %v", r5, err)
	}
	if r5.UUID == r.UUID {
		t.Error("uuid did not follow the inputs")
	}
	fsck(t, img)
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(img), ".*tmp*")); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
	// An error in fn still unmounts.
	boom := errors.New("boom")
	if err := Edit(ctx, img, func(target.Target) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("edit error: %v", err)
	}
	// An attached image is refused.
	if out, err := exec.Command("losetup", "-f", "--show", img).Output(); err == nil {
		dev := strings.TrimSpace(string(out))
		err := Edit(ctx, img, func(target.Target) error { return nil })
		exec.Command("losetup", "-d", dev).Run()
		if !errors.Is(err, ErrBusy) {
			t.Errorf("edit of an attached image: %v", err)
		}
	}
}

func TestBuildFrugal(t *testing.T) {
	needRoot(t)
	rel := minicore.Require(t)
	c := mirrorClient(t, rel)
	img := filepath.Join(t.TempDir(), "f.img")
	r, err := Build(ctx, Options{Path: img, Mirror: c, Layout: Frugal, Hostname: "f1", FS: "ext4",
		AuthorizedKeys: []string{"ssh-ed25519 AAAA x"}, Extensions: []string{"dropbear"},
		Files: map[string]string{"/usr/local/etc/x.conf": "x\n", "/home/tc/hi": "hi\n"}})
	if err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	if r.Bootcodes["tce"] != "UUID="+r.UUID+"/tce" || r.Bootcodes["home"] == "" {
		t.Errorf("bootcodes %v", r.Bootcodes)
	}
	tree := imageTree(t, img)
	for _, p := range []string{"tce/optional/dropbear.tcz", "tce/optional/libtomcrypt.tcz.md5.txt", "tce/optional/dropbear.tcz.dep",
		"tce/onboot.lst", "tce/mydata.tgz", "home/tc/.ssh/authorized_keys", "home/tc/hi", "opt/bootlocal.sh", "opt/bootsync.sh", "opt/.filetool.lst"} {
		if _, ok := tree[p]; !ok {
			t.Errorf("%s missing", p)
		}
	}
	if _, ok := tree["usr"]; ok {
		t.Error("frugal disk holds usr/")
	}
	err = View(ctx, img, func(tg target.Target) error {
		ob, _ := target.ReadFile(ctx, tg, "tce/onboot.lst")
		if string(ob) != "dropbear.tcz\n" {
			t.Errorf("onboot.lst %q", ob)
		}
		tgz, _ := target.ReadFile(ctx, tg, "tce/mydata.tgz")
		out, err := exec.Command("tar", "-tzf", "-").Output()
		_ = out
		cmd := exec.Command("tar", "-tzf", "-")
		cmd.Stdin = bytes.NewReader(tgz)
		list, err := cmd.Output()
		if err != nil {
			return err
		}
		for _, w := range []string{DropbearHostKey, OpenSSHHostKey, "usr/local/etc/x.conf", "etc/hostname"} {
			if !strings.Contains(string(list), w+"\n") {
				t.Errorf("mydata.tgz lacks %s:\n%s", w, list)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// blockSize reads the block size from an ext superblock.
func blockSize(t *testing.T, img string) int {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sb [64]byte
	if _, err := f.ReadAt(sb[:], 1024); err != nil {
		t.Fatal(err)
	}
	if sb[56] != 0x53 || sb[57] != 0xef {
		t.Fatalf("%s: no ext superblock", img)
	}
	return 1024 << binary.LittleEndian.Uint32(sb[24:28])
}

// TestBuildErrorCleansUp: a build that fails while core is being
// extracted (a broken core; an unknown extension, found meanwhile) leaves
// no staging tree and no image.
func TestBuildErrorCleansUp(t *testing.T) {
	needRoot(t)
	rel := minicore.Require(t)
	c := mirrorClient(t, rel)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.gz")
	if err := os.WriteFile(bad, []byte("\x1f\x8b\x08\x00garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, o := range []Options{
		{Core: []string{bad}},
		{Core: []string{rel.Core}, Mirror: c, Extensions: []string{"no-such-extension"}},
		{Core: []string{bad}, Layout: Frugal},
	} {
		stage := t.TempDir()
		o.Path, o.TempDir = filepath.Join(dir, "x.img"), stage
		if _, err := Build(ctx, o); err == nil {
			t.Errorf("%+v: built", o)
		}
		// The tree cache stays, holding whole entries only (core's, when
		// it was unpacked before the extension was found missing).
		for _, e := range readNames(stage) {
			if e != TreeCacheName {
				t.Errorf("%+v: left %s in the staging base", o, e)
			}
		}
		for _, e := range readNames(filepath.Join(stage, TreeCacheName)) {
			if !strings.HasPrefix(e, "core") {
				t.Errorf("%+v: left %s in the tree cache", o, e)
			}
		}
		if _, err := os.Stat(o.Path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%+v: image: %v", o, err)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	for _, o := range []Options{
		{},
		{Path: "x.img", Core: []string{"core.gz"}, FS: "xfs"},
		{Path: "x.img", Core: []string{"core.gz"}, Layout: "iso"},
		{Path: "x.img", Core: []string{"core.gz"}, Hostname: "bad name"},
		{Path: "x.img", Core: []string{"core.gz"}, Extensions: []string{"nginx"}},
		{Path: "x.img"},
		{Path: "x.img", Core: []string{"core.gz"}, Files: map[string]string{"../etc/x": ""}},
	} {
		if _, err := Build(ctx, o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v", o, err)
		}
	}
}

func sortedKeys(m map[string]entry) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestCoreFromMirrorByArch: without core the mirror's official core for its
// arch is used (corepure64.gz on x86_64: there is no core.gz); rootfs64.gz +
// modules64.gz picked separately hash as that core does; a local path is
// used as is; a name the mirror lacks is a clear error.
func TestCoreFromMirrorByArch(t *testing.T) {
	rel := minicore.Require(t)
	c := mirrorClient(t, rel)
	resolve := func(core ...string) ([]string, error) {
		return coreFiles(ctx, &Options{Path: "x.img", Mirror: c, Core: core})
	}
	def, err := resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(def) != 1 || filepath.Base(def[0]) != "corepure64.gz" {
		t.Fatalf("default core %q, want the cached corepure64.gz", def)
	}
	parts, err := resolve("rootfs64.gz", "modules64.gz")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := filesSHA256(def)
	b, _ := filesSHA256(parts)
	if a == "" || a != b {
		t.Errorf("rootfs64.gz+modules64.gz hash %s, corepure64.gz %s", b, a)
	}
	if l, err := resolve(rel.Rootfs); err != nil || l[0] != rel.Rootfs {
		t.Errorf("local path: %q %v", l, err)
	}
	_, err = resolve("core.gz")
	if err == nil || !strings.Contains(err.Error(), "corepure64.gz") {
		t.Errorf("core.gz on an x86_64 mirror: %v", err)
	}
	if _, err := resolve("/no/such/core.gz"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing local core: %v", err)
	}
	// Both parts unpack to what the whole core does.
	d1, d2 := t.TempDir(), t.TempDir()
	r1, err := UnpackAll(ctx, def, d1, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := UnpackAll(ctx, parts, d2, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r1.Entries != r2.Entries || r1.Archives != 2 || r2.Archives != 2 {
		t.Errorf("unpack: %+v vs %+v", r1, r2)
	}
}

// TestDiskBuiltBeforeKeySets: a disk whose sidecar holds the ed25519 key
// alone (built before host key sets) is kept as it is while its inputs
// are unchanged (its guest still pins that one key), and a rebuild keeps
// that key and adds the ecdsa and rsa keys.
func TestDiskBuiltBeforeKeySets(t *testing.T) {
	needRoot(t)
	rel := minicore.Require(t)
	c := mirrorClient(t, rel)
	img := filepath.Join(t.TempDir(), "old.img")
	opts := Options{Path: img, Mirror: c, Hostname: "old", Extensions: []string{"dropbear"}}
	r, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	ed := strings.Split(r.HostKey, "\n")[0]
	// Make the sidecar what an earlier tinyfarm wrote.
	sc, err := readSidecar(img)
	if err != nil {
		t.Fatal(err)
	}
	sc.HostKeysPEM, sc.Result.HostKey = "", ed
	if err := writeSidecar(img, sc); err != nil {
		t.Fatal(err)
	}
	again, err := Build(ctx, opts)
	if err != nil || again.Changed || again.HostKey != ed {
		t.Fatalf("unchanged old disk: changed %v, host key %q, %v", again.Changed, again.HostKey, err)
	}
	opts.Bootlocal = []string{"echo new input"}
	re, err := Build(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(re.HostKey, "\n")
	if !re.Changed || len(lines) != 3 || lines[0] != ed || !strings.HasPrefix(lines[1], "ecdsa-sha2-nistp256 ") || !strings.HasPrefix(lines[2], "ssh-rsa ") {
		t.Errorf("rebuilt: changed %v, host keys %q", re.Changed, re.HostKey)
	}
}

// readNames lists dir's entries ("" when unreadable).
func readNames(dir string) []string {
	es, _ := os.ReadDir(dir)
	var ns []string
	for _, e := range es {
		ns = append(ns, e.Name())
	}
	return ns
}
