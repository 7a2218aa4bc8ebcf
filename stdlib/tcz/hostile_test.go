package tcz

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// craft builds a squashfs from files with uncompressed metadata, then
// replaces each placeholder name in the directory table with its
// same-length substitute, so names mksquashfs refuses can be tested.
func craft(t testing.TB, files map[string]string, patch map[string]string) []byte {
	t.Helper()
	needMksquashfs(t)
	src := t.TempDir()
	for n, c := range files {
		p := filepath.Join(src, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if len(c) > 2 && c[:2] == "->" {
			os.Symlink(c[2:], p)
		} else {
			os.WriteFile(p, []byte(c), 0o644)
		}
	}
	out := filepath.Join(t.TempDir(), "x.sqfs")
	if b, err := exec.Command("mksquashfs", src, out, "-b", "4k", "-no-xattrs", "-noappend", "-comp", "gzip", "-noI", "-noD", "-noF", "-noX", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v %s", err, b)
	}
	data, _ := os.ReadFile(out)
	dirStart := int(binary.LittleEndian.Uint64(data[72:]))
	for from, to := range patch {
		if len(from) != len(to) {
			t.Fatalf("patch %q -> %q: lengths differ", from, to)
		}
		i := bytes.Index(data[dirStart:], []byte(from))
		if i < 0 {
			t.Fatalf("placeholder %q not in directory table", from)
		}
		copy(data[dirStart+i:], to)
	}
	return data
}

func TestHostileArchives(t *testing.T) {
	m := standardMirror(t)
	sparseDir := t.TempDir()
	os.MkdirAll(filepath.Join(sparseDir, "usr"), 0o755)
	f, _ := os.Create(filepath.Join(sparseDir, "usr/huge"))
	f.Truncate(64 << 20)
	f.Close()

	hello, _ := os.ReadFile(filepath.Join(m.tcz, "hello.tcz"))
	used := int(binary.LittleEndian.Uint64(hello[40:])) // bytes_used; the rest is padding
	corrupt := bytes.Clone(hello)
	for i := 120; i < 180; i++ { // inside the first data block
		corrupt[i] ^= 0x55
	}

	cases := []struct {
		name string
		data []byte
		spec *pkgSpec
		want error
	}{
		{name: "evil-dotdot", data: craft(t, map[string]string{"usr/ZZ/pwned": "x"}, map[string]string{"ZZ": ".."}), want: ErrUnsafePath},
		{name: "evil-slash", data: craft(t, map[string]string{"usr/ZZZZZZZZZZZZ": "x"}, map[string]string{"ZZZZZZZZZZZZ": "../../escape"}), want: ErrUnsafePath},
		{name: "evil-abs", data: craft(t, map[string]string{"ZZZZZZZZZZZZ": "x"}, map[string]string{"ZZZZZZZZZZZZ": "/tmp/escaped"}), want: ErrUnsafePath},
		{name: "evil-dup", data: craft(t, map[string]string{"usr/dupa": "->/", "usr/dupb/pwned": "x"}, map[string]string{"dupb": "dupa"}), want: ErrUnsafePath},
		{name: "evil-dev", spec: &pkgSpec{files: map[string]string{"usr/x": "x"}, pseudo: []string{"dev d 755 0 0", "dev/sda b 660 0 0 8 0", "dev/mem c 640 0 0 1 1"}}, want: ErrUnsafePath},
		{name: "evil-truncated", data: hello[:used*6/10], want: ErrInvalid},
		{name: "evil-corrupt", data: corrupt, want: ErrInvalid},
		{name: "evil-empty", data: []byte{}, want: ErrInvalid},
		{name: "evil-notsquashfs", data: bytes.Repeat([]byte("hsqs"), 100), want: ErrInvalid},
	}
	for _, tc := range cases {
		if tc.spec != nil {
			m.add(t, tc.name, *tc.spec)
		} else {
			m.addRaw(t, tc.name, tc.data, nil)
		}
	}
	// Huge: a sparse 64 MiB file under a 1 MiB limit.
	if b, err := exec.Command("mksquashfs", sparseDir, filepath.Join(m.tcz, "evil-huge.tcz"), "-noappend", "-comp", "gzip", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, b)
	}
	huge, _ := os.ReadFile(filepath.Join(m.tcz, "evil-huge.tcz"))
	m.addRaw(t, "evil-huge", huge, nil)
	cases = append(cases, struct {
		name string
		data []byte
		spec *pkgSpec
		want error
	}{name: "evil-huge", want: ErrInvalid})

	c := m.client(t, Config{Limits: Limits{MaxFileSize: 1 << 20}})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tg := newTarget(t)
			os.MkdirAll(filepath.Join(tg.Path(), "usr"), 0o755)
			before := snapshot(t, tg.Path())
			_, err := c.Install(ctx, tg, tc.name, InstallOptions{Onboot: true, Overwrite: true})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Install = %v, want %v", err, tc.want)
			}
			t.Logf("refused: %v", err)
			if after := snapshot(t, tg.Path()); after != before {
				t.Errorf("target changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if _, err := os.Lstat(filepath.Join(filepath.Dir(tg.Path()), "escape")); err == nil {
				t.Error("file escaped the root")
			}
		})
	}
}

// A symlink installed by one package must not let a later package write
// through it.
func TestSymlinkThenWriteThrough(t *testing.T) {
	m := newMirror(t)
	m.add(t, "evil-link", pkgSpec{files: map[string]string{"usr/local/share/x": "->../../../../../../tmp", "usr/local/share/y": "->/etc"}})
	m.add(t, "evil-through", pkgSpec{files: map[string]string{"usr/local/share/x/pwned": "x"}})
	m.add(t, "evil-through-abs", pkgSpec{files: map[string]string{"usr/local/share/y/passwd": "x"}})
	c := m.client(t, Config{})
	tg := newTarget(t)
	if _, err := c.Install(ctx, tg, "evil-link", InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, tg.Path())
	for _, n := range []string{"evil-through", "evil-through-abs"} {
		for _, ow := range []bool{false, true} {
			_, err := c.Install(ctx, tg, n, InstallOptions{Overwrite: ow})
			if !errors.Is(err, ErrUnsafePath) {
				t.Errorf("%s overwrite=%v: %v, want ErrUnsafePath", n, ow, err)
			}
		}
	}
	if after := snapshot(t, tg.Path()); after != before {
		t.Errorf("target changed:\n%s\n%s", before, after)
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Error("/tmp/pwned exists")
	}
}

// A hardlink whose first name already exists in the target (kept) is
// written as a copy of the archive's content, never linked to the existing
// file, which could be a symlink pointing anywhere.
func TestHardlinkToKeptFile(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{})
	tg := newTarget(t)
	root := tg.Path()
	os.MkdirAll(filepath.Join(root, "usr/local/bin"), 0o755)
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("secret"), 0o600)
	os.Symlink(secret, filepath.Join(root, "usr/local/bin/hello"))
	if _, err := c.Install(ctx, tg, "hello", InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(root, "usr/local/bin/hello2"))
	if string(b) != "#!/bin/sh\necho hello\n" {
		t.Errorf("hello2 = %q", b)
	}
	fi, _ := os.Lstat(filepath.Join(root, "usr/local/bin/hello2"))
	if !fi.Mode().IsRegular() {
		t.Errorf("hello2 mode %v", fi.Mode())
	}
	if s, _ := os.ReadFile(secret); string(s) != "secret" {
		t.Error("secret changed")
	}
}

func TestDevicesAllowed(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	m := newMirror(t)
	m.add(t, "devs", pkgSpec{files: map[string]string{"usr/x": "x"}, pseudo: []string{"dev d 755 0 0", "dev/null c 666 0 0 1 3"}})
	c := m.client(t, Config{Limits: Limits{AllowDevices: true}})
	root := filepath.Join(t.TempDir(), "root")
	os.Mkdir(root, 0o755)
	tg, _ := openDir(t, root, true)
	if _, err := c.Install(ctx, tg, "devs", InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	e, err := tg.Lstat(ctx, "dev/null")
	if err != nil || e.Major != 1 || e.Minor != 3 {
		t.Errorf("dev/null = %+v, %v", e, err)
	}
}
