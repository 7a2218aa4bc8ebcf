package tcz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

var ctx = context.Background()

func TestParseDep(t *testing.T) {
	got, err := ParseDep([]byte("  libfoo.tcz \n\n\tlib bar.tcz\r\nmod-KERNEL.tcz\nlibfoo\n"), "6.1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"libfoo", "libbar", "mod-6.1"}; !slices.Equal(got, want) {
		t.Errorf("ParseDep = %q, want %q", got, want)
	}
	if _, err := ParseDep([]byte("mod-KERNEL.tcz\n"), ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("-KERNEL without kernel: %v", err)
	}
	for _, bad := range []string{"../../etc/passwd.tcz", "a/b.tcz", ".hidden.tcz"} {
		if _, err := ParseDep([]byte(bad+"\n"), "k"); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDep(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestParseInfo(t *testing.T) {
	in := "Title:          nano.tcz\nDescription:    small editor\nVersion:  7.2\nChange-log:     2010/01/01 first\n                2011/02/02 second\nCurrent:        2024/01/01 x\n"
	info, err := ParseInfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if info.Get("Title") != "nano.tcz" || info.Get("Version") != "7.2" || info.Get("Change-log") != "2010/01/01 first\n2011/02/02 second" {
		t.Errorf("ParseInfo = %#v", info)
	}
	if want := []string{"Title", "Description", "Version", "Change-log", "Current"}; !slices.Equal(info.Keys, want) {
		t.Errorf("keys %q", info.Keys)
	}
	if _, err := ParseInfo([]byte("  orphan continuation\n")); !errors.Is(err, ErrInvalid) {
		t.Errorf("orphan continuation: %v", err)
	}
	// RenderInfo round-trips through ParseInfo.
	r := RenderInfo("x", 5000, map[string]string{"Description": "d", "Change-log": "a\nb"})
	info, err = ParseInfo(r)
	if err != nil || info.Get("Title") != "x.tcz" || info.Get("Size") != "5K" || info.Get("Change-log") != "a\nb" {
		t.Errorf("RenderInfo round trip: %#v %v\n%s", info, err, r)
	}
}

func TestNewConfig(t *testing.T) {
	c, err := New(Config{URL: "file:///srv/m/", Version: "15.0", Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.URL("x.tcz"); got != "file:///srv/m/15.x/x86_64/tcz/x.tcz" {
		t.Errorf("URL = %s", got)
	}
	for _, cfg := range []Config{{URL: "ftp://x"}, {Version: "fifteen"}, {Arch: "../x"}} {
		cfg.Cache = t.TempDir()
		if _, err := New(cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("New(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}

func TestDepsOrderAndKernel(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{})
	d, err := c.Deps(ctx, "hello.tcz")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"libbar", "libfoo", "mod-" + testKernel, "hello"}
	if !slices.Equal(d.Order, want) || len(d.Warnings) != 0 {
		t.Errorf("Deps = %q %q, want %q", d.Order, d.Warnings, want)
	}
	if m.count("libbar.tcz.dep") != 1 {
		t.Errorf("libbar.tcz.dep requested %d times, want 1 (404 = no deps)", m.count("libbar.tcz.dep"))
	}
	// Missing package: no .dep (404) means no deps; Fetch then fails naming it.
	_, err = c.Fetch(ctx, FetchOptions{}, "nosuch")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Fetch(nosuch) = %v", err)
	}
}

func TestDepsCycle(t *testing.T) {
	m := newMirror(t)
	m.add(t, "cyca", pkgSpec{files: map[string]string{"a": "a"}, deps: []string{"cycb.tcz"}})
	m.add(t, "cycb", pkgSpec{files: map[string]string{"b": "b"}, deps: []string{"cycc.tcz"}})
	m.add(t, "cycc", pkgSpec{files: map[string]string{"c": "c"}, deps: []string{"cyca.tcz", "cycc.tcz"}})
	c := m.client(t, Config{})
	d, err := c.Deps(ctx, "cyca")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"cycc", "cycb", "cyca"}; !slices.Equal(d.Order, want) {
		t.Errorf("order %q, want %q", d.Order, want)
	}
	if len(d.Warnings) != 2 || !strings.Contains(d.Warnings[0], "cyca -> cycb -> cycc -> cyca") {
		t.Errorf("warnings %q", d.Warnings)
	}
}

func TestFetchCacheAndConcurrency(t *testing.T) {
	m := standardMirror(t)
	var prog bytes.Buffer
	c := m.client(t, Config{Progress: &prog, ForceProgress: true, Concurrency: 2})
	r, err := c.Fetch(ctx, FetchOptions{Check: true}, "hello")
	if err != nil || !r.Changed || len(r.Downloaded) != 4 {
		t.Fatalf("check fetch = %+v, %v", r, err)
	}
	if len(r.MD5) != 0 {
		t.Errorf("check fetch of an empty cache knows md5s: %v", r.MD5)
	}
	if _, err := os.Stat(c.CachePath("hello.tcz")); err == nil {
		t.Fatal("check mode wrote to the cache")
	}
	r, err = c.Fetch(ctx, FetchOptions{}, "hello")
	if err != nil || !r.Changed || len(r.Downloaded) != 4 {
		t.Fatalf("fetch = %+v, %v", r, err)
	}
	for _, n := range r.Order {
		if want, _ := fileMD5(c.CachePath(n + ".tcz")); r.MD5[n] != want {
			t.Errorf("FetchResult.MD5[%s] = %q, the cached file's is %q", n, r.MD5[n], want)
		}
	}
	for _, f := range []string{"hello.tcz", "hello.tcz.md5.txt", "hello.tcz.dep", "libbar.tcz.dep", "libfoo.tcz"} {
		if _, err := os.Stat(c.CachePath(f)); err != nil {
			t.Errorf("cache lacks %s", f)
		}
	}
	if !strings.Contains(prog.String(), "fetching 4 extension") {
		t.Errorf("progress output %q", prog.String())
	}
	// Second fetch: nothing downloaded, no .tcz requested again.
	before := m.count("hello.tcz")
	r, err = c.Fetch(ctx, FetchOptions{}, "hello")
	if err != nil || r.Changed || len(r.Downloaded) != 0 || m.count("hello.tcz") != before {
		t.Fatalf("refetch = %+v, %v (hello.tcz hits %d -> %d)", r, err, before, m.count("hello.tcz"))
	}
	// No progress on a non-terminal writer unless forced.
	var quiet bytes.Buffer
	c2 := m.client(t, Config{Progress: &quiet})
	if _, err := c2.Fetch(ctx, FetchOptions{}, "libbar"); err != nil || quiet.Len() != 0 {
		t.Errorf("progress on non-tty: %q %v", quiet.String(), err)
	}
}

// An already-cached package's missing deps are fetched (tce-load does not).
func TestFetchMissingDepOfCachedPackage(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{})
	if _, err := c.Fetch(ctx, FetchOptions{}, "hello"); err != nil {
		t.Fatal(err)
	}
	os.Remove(c.CachePath("libbar.tcz"))
	r, err := c.Fetch(ctx, FetchOptions{}, "hello")
	if err != nil || !slices.Equal(r.Downloaded, []string{"libbar"}) {
		t.Fatalf("fetch = %+v, %v; want libbar fetched again", r, err)
	}
}

func TestFetchChecksumMismatch(t *testing.T) {
	m := standardMirror(t)
	os.WriteFile(filepath.Join(m.tcz, "libbar.tcz.md5.txt"), []byte("0123456789abcdef0123456789abcdef  libbar.tcz\n"), 0o644)
	c := m.client(t, Config{})
	_, err := c.Fetch(ctx, FetchOptions{}, "libbar")
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "libbar") || !strings.Contains(msg, "0123456789abcdef0123456789abcdef") {
		t.Errorf("message %q lacks the name or expected md5", msg)
	}
	ents, _ := os.ReadDir(filepath.Join(c.Config().Cache, "optional"))
	if len(ents) != 0 {
		t.Errorf("cache not untouched after mismatch: %v", ents)
	}
	// Bit rot in the cache is caught at install time too.
	m2 := standardMirror(t)
	c2 := m2.client(t, Config{})
	if _, err := c2.Fetch(ctx, FetchOptions{}, "libbar"); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(c2.CachePath("libbar.tcz"), os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte("rot"))
	f.Close()
	if ok, err := c2.verifyCached("libbar"); ok || !errors.Is(err, ErrChecksum) {
		t.Errorf("verifyCached after rot = %v %v", ok, err)
	}
}

func TestFetchCanceled(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{})
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Fetch(cctx, FetchOptions{}, "hello"); !errors.Is(err, context.Canceled) {
		t.Errorf("Fetch(canceled) = %v", err)
	}
}

func TestFileMirror(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{URL: "file://" + m.root})
	r, err := c.Fetch(ctx, FetchOptions{}, "hello")
	if err != nil || len(r.Order) != 4 {
		t.Fatalf("file mirror fetch = %+v, %v", r, err)
	}
}

func TestInfoSearchProvides(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{})
	info, err := c.Info(ctx, "hello")
	if err != nil || info.Get("Title") != "hello.tcz" || info.Get("Description") != "hello fixture" {
		t.Fatalf("Info = %#v, %v", info, err)
	}
	if _, err := c.Info(ctx, "nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Info(nosuch) = %v", err)
	}
	got, err := c.Search(ctx, "greeting")
	if err != nil || !slices.Equal(got, []string{"hello", "libbar"}) {
		t.Errorf("Search(greeting) = %q, %v", got, err)
	}
	got, err = c.Provides(ctx, "/usr/local/lib/libfoo.so.1")
	if err != nil || !slices.Equal(got, []string{"libfoo"}) {
		t.Errorf("Provides = %q, %v", got, err)
	}
	// Without tags.db.gz: info.lst, then the cache.
	os.Remove(filepath.Join(m.tcz, "tags.db.gz"))
	os.WriteFile(filepath.Join(m.tcz, "info.lst"), []byte("hello.tcz\nlibfoo.tcz\nlibbar.tcz\n"), 0o644)
	if got, _ := c.Search(ctx, "LIB"); !slices.Equal(got, []string{"libbar", "libfoo"}) {
		t.Errorf("Search via info.lst = %q", got)
	}
	os.Remove(filepath.Join(m.tcz, "info.lst"))
	c.Fetch(ctx, FetchOptions{}, "libfoo")
	if got, _ := c.Search(ctx, "lib"); !slices.Equal(got, []string{"libbar", "libfoo"}) {
		t.Errorf("Search via cache = %q", got)
	}
}

// lsMode renders an entry's mode the way unsquashfs -lln does.
func lsMode(e target.Entry) string {
	c := map[target.Type]byte{target.TypeRegular: '-', target.TypeHardlink: '-', target.TypeDir: 'd', target.TypeSymlink: 'l', target.TypeChar: 'c', target.TypeBlock: 'b', target.TypeFifo: 'p'}[e.Type]
	s := []byte{c}
	const rwx = "rwxrwxrwx"
	for i := 0; i < 9; i++ {
		if e.Mode&(1<<uint(8-i)) != 0 {
			s = append(s, rwx[i])
		} else {
			s = append(s, '-')
		}
	}
	if e.Mode&fs.ModeSetuid != 0 {
		s[3] = map[byte]byte{'x': 's', '-': 'S'}[s[3]]
	}
	if e.Mode&fs.ModeSetgid != 0 {
		s[6] = map[byte]byte{'x': 's', '-': 'S'}[s[6]]
	}
	if e.Mode&fs.ModeSticky != 0 {
		s[9] = map[byte]byte{'x': 't', '-': 'T'}[s[9]]
	}
	return string(s)
}

// TestArchiveMatchesUnsquashfs compares the listing (modes incl. setuid,
// owners, link targets) with `unsquashfs -lln`.
func TestArchiveMatchesUnsquashfs(t *testing.T) {
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Skip("unsquashfs not installed")
	}
	m := standardMirror(t)
	file := filepath.Join(m.tcz, "hello.tcz")
	a, cl, err := OpenArchive(file, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out, err := exec.Command("unsquashfs", "-lln", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		p := strings.TrimPrefix(f[5], "squashfs-root")
		p = strings.TrimPrefix(p, "/")
		if p == "" {
			continue
		}
		line := f[0] + " " + f[1]
		if i := strings.Index(l, " -> "); i >= 0 {
			line += " -> " + l[i+4:]
		}
		want[p] = line
	}
	got := map[string]string{}
	for _, e := range a.Entries {
		line := fmt.Sprintf("%s %d/%d", lsMode(e), e.Uid, e.Gid)
		if e.Type == target.TypeSymlink {
			line += " -> " + e.Linkname
		}
		got[e.Name] = line
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: got %q, unsquashfs says %q", p, got[p], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d entries, unsquashfs lists %d", len(got), len(want))
	}
	if !strings.Contains(want["usr/local/bin/suid"], "rwsr-xr-x") {
		t.Errorf("fixture lost setuid: %q", want["usr/local/bin/suid"])
	}
	if err := a.Verify(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestInstall(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{})
	tg := newTarget(t)
	root := tg.Path()
	os.MkdirAll(filepath.Join(root, "opt"), 0o775)
	os.WriteFile(filepath.Join(root, "opt/bootsync.sh"), []byte("#!/bin/sh\n/opt/bootlocal.sh &\n"), 0o775)
	os.MkdirAll(filepath.Join(root, "tce"), 0o775)
	os.WriteFile(filepath.Join(root, "tce/onboot.lst"), []byte("nano.tcz\n"), 0o664)
	// An existing file is kept (cp -ai).
	os.MkdirAll(filepath.Join(root, "usr/local/lib"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/local/lib/libbar.so.1"), []byte("mine"), 0o644)

	// Check mode: reports, changes nothing.
	before := snapshot(t, root)
	r, err := c.Install(ctx, tg, "hello", InstallOptions{Onboot: true, Check: true})
	if err != nil || !r.Changed || len(r.Installed) != 4 {
		t.Fatalf("check install = %+v, %v", r, err)
	}
	if after := snapshot(t, root); after != before {
		t.Fatalf("check mode changed the target:\n%s\nvs\n%s", before, after)
	}
	r, err = c.Install(ctx, tg, "hello", InstallOptions{Onboot: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Changed || !slices.Equal(r.Installed, []string{"libbar", "libfoo", "mod-" + testKernel, "hello"}) {
		t.Fatalf("install = %+v", r)
	}
	if !slices.Contains(r.Kept, "usr/local/lib/libbar.so.1") {
		t.Errorf("Kept = %q", r.Kept)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "usr/local/lib/libbar.so.1")); string(b) != "mine" {
		t.Errorf("existing file overwritten: %q", b)
	}
	// Modes, setuid, owners, links.
	st := func(p string) fs.FileInfo {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if m := st("usr/local/bin/suid").Mode(); m&fs.ModeSetuid == 0 || m.Perm() != 0o755 {
		t.Errorf("suid mode %v", m)
	}
	if l, _ := os.Readlink(filepath.Join(root, "usr/local/bin/abs")); l != "/usr/local/bin/hello" {
		t.Errorf("abs symlink -> %q", l)
	}
	if os.SameFile(st("usr/local/bin/hello"), st("usr/local/bin/hello2")) != true {
		t.Error("hello2 is not a hardlink of hello")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "usr/local/share/hello/data.txt")); len(b) != 15000 {
		t.Errorf("data.txt %d bytes", len(b))
	}
	if os.Geteuid() == 0 {
		if s := st("usr/local/share/hello/data.txt").Sys().(interface{}); fmt.Sprint(s) == "" {
			t.Fatal()
		}
		e, _ := tg.Lstat(ctx, "usr/local/share/hello/data.txt")
		if e.Uid != 1001 || e.Gid != 50 || e.Mode.Perm() != 0o640 {
			t.Errorf("data.txt owner %d:%d mode %v", e.Uid, e.Gid, e.Mode)
		}
	}
	// Markers, lists, queue, onboot.
	if b, _ := os.ReadFile(filepath.Join(root, InstalledDir, "hello")); !strings.Contains(string(b), "echo setup") {
		t.Errorf("hello install script: %q", b)
	}
	if fi := st(InstalledDir + "/libbar"); fi.Size() != 0 {
		t.Error("libbar marker not empty")
	}
	list, _ := os.ReadFile(filepath.Join(root, FilesDir, "hello.list"))
	if !strings.Contains(string(list), "usr/local/bin/suid\n") {
		t.Errorf("hello.list = %q", list)
	}
	if l, _ := os.ReadFile(filepath.Join(root, FilesDir, "libbar.list")); strings.Contains(string(l), "libbar.so.1") {
		t.Errorf("libbar.list claims the kept file: %q", l)
	}
	q, _ := os.ReadFile(filepath.Join(root, FirstbootQueue))
	if string(q) != "/usr/local/tce.installed/hello\n" {
		t.Errorf("firstboot queue %q", q)
	}
	bs, _ := os.ReadFile(filepath.Join(root, "opt/bootsync.sh"))
	if !strings.Contains(string(bs), "# BEGIN tinyfarm tcz-firstboot") || !strings.HasPrefix(string(bs), "#!/bin/sh\n/opt/bootlocal.sh &\n") {
		t.Errorf("bootsync.sh = %q", bs)
	}
	if fi := st("opt/bootsync.sh"); fi.Mode().Perm()&0o111 == 0 {
		t.Error("bootsync.sh not executable")
	}
	ob, _ := os.ReadFile(filepath.Join(root, "tce/onboot.lst"))
	if string(ob) != "nano.tcz\nhello.tcz\n" {
		t.Errorf("onboot.lst = %q", ob)
	}
	got, _ := Installed(ctx, tg)
	if !slices.Equal(got, []string{"hello", "libbar", "libfoo", "mod-" + testKernel}) {
		t.Errorf("Installed = %q", got)
	}
	// Idempotent.
	snap := snapshot(t, root)
	r, err = c.Install(ctx, tg, "hello", InstallOptions{Onboot: true})
	if err != nil || r.Changed || len(r.Installed) != 0 {
		t.Fatalf("second install = %+v, %v", r, err)
	}
	if snapshot(t, root) != snap {
		t.Error("second install changed the target")
	}

	// Remove hello: its files go, shared and dependency files stay.
	os.MkdirAll(filepath.Join(root, "usr/local/share/hello/user"), 0o755) // a user dir inside: kept
	rr, err := c.Remove(ctx, tg, "hello", RemoveOptions{Check: true})
	if err != nil || !rr.Changed {
		t.Fatalf("check remove = %+v, %v", rr, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "usr/local/bin/hello")); err != nil {
		t.Fatal("check-mode remove deleted a file")
	}
	rr, err = c.Remove(ctx, tg, "hello", RemoveOptions{})
	if err != nil || !rr.Changed {
		t.Fatalf("remove = %+v, %v", rr, err)
	}
	for _, p := range []string{"usr/local/bin/hello", "usr/local/bin/suid", "usr/local/bin/hi", InstalledDir + "/hello", FilesDir + "/hello.list", "usr/local/share/hello/data.txt"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s still present after remove", p)
		}
	}
	for _, p := range []string{"usr/local/lib/libfoo.so.1", "usr/local/share/hello/user", "usr/local/lib"} {
		if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
			t.Errorf("%s removed: %v", p, err)
		}
	}
	if ob, _ := os.ReadFile(filepath.Join(root, "tce/onboot.lst")); string(ob) != "nano.tcz\n" {
		t.Errorf("onboot.lst after remove = %q", ob)
	}
	rr, err = c.Remove(ctx, tg, "hello", RemoveOptions{})
	if err != nil || rr.Changed {
		t.Errorf("second remove = %+v, %v", rr, err)
	}
}

func TestInstallOverwrite(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{})
	tg := newTarget(t)
	os.MkdirAll(filepath.Join(tg.Path(), "usr/local/lib"), 0o755)
	os.WriteFile(filepath.Join(tg.Path(), "usr/local/lib/libbar.so.1"), []byte("mine"), 0o644)
	if _, err := c.Install(ctx, tg, "libbar", InstallOptions{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(tg.Path(), "usr/local/lib/libbar.so.1")); string(b) != "bar" {
		t.Errorf("overwrite: %q", b)
	}
}

// TestInstallSharedFile: two packages ship the same file; removing one
// keeps it.
func TestInstallSharedFile(t *testing.T) {
	m := newMirror(t)
	m.add(t, "pa", pkgSpec{files: map[string]string{"usr/local/share/common": "x", "usr/local/bin/pa": "a"}})
	m.add(t, "pb", pkgSpec{files: map[string]string{"usr/local/share/common": "x", "usr/local/bin/pb": "b"}})
	c := m.client(t, Config{})
	tg := newTarget(t)
	c.Install(ctx, tg, "pa", InstallOptions{Overwrite: true})
	c.Install(ctx, tg, "pb", InstallOptions{Overwrite: true})
	r, err := c.Remove(ctx, tg, "pa", RemoveOptions{})
	if err != nil || !slices.Contains(r.Shared, "usr/local/share/common") {
		t.Fatalf("remove = %+v, %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(tg.Path(), "usr/local/share/common")); err != nil {
		t.Error("shared file removed")
	}
	if _, err := os.Stat(filepath.Join(tg.Path(), "usr/local/bin/pa")); err == nil {
		t.Error("pa's own file kept")
	}
}

func TestPack(t *testing.T) {
	needMksquashfs(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "usr/local/bin"), 0o755)
	os.WriteFile(filepath.Join(src, "usr/local/bin/x"), []byte("x"), 0o755)
	os.Symlink("x", filepath.Join(src, "usr/local/bin/y"))
	out := t.TempDir()
	opts := PackOptions{Dir: src, Name: "x", Deps: []string{"a", "b.tcz"}, Out: out, Epoch: 1}
	r, err := Pack(ctx, opts)
	if err != nil || !r.Changed || len(r.Files) != 5 {
		t.Fatalf("Pack = %+v, %v", r, err)
	}
	r, err = Pack(ctx, opts)
	if err != nil || r.Changed {
		t.Errorf("second Pack = %+v, %v; want unchanged (Epoch makes it reproducible)", r, err)
	}
	for f, want := range map[string]string{"x.tcz.dep": "a.tcz\nb.tcz\n", "x.tcz.list": "usr/local/bin/x\nusr/local/bin/y\n", "x.tcz.md5.txt": r.MD5 + "  x.tcz\n"} {
		if b, _ := os.ReadFile(filepath.Join(out, f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	if out, err := exec.Command("unsquashfs", "-s", filepath.Join(out, "x.tcz")).Output(); err == nil {
		s := string(out)
		if !strings.Contains(s, "Compression gzip") || !strings.Contains(s, "Block size 4096") {
			t.Errorf("superblock: %s", s)
		}
	}
}
