//go:build linux

package image

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
)

type tEntry struct {
	name string
	mode uint32
	data string
	ino  uint32
	nl   uint32
}

// archive renders entries as a newc archive (optionally gzipped).
func archive(gz bool, es ...tEntry) []byte {
	var b bytes.Buffer
	for i, e := range es {
		ino := e.ino
		if ino == 0 {
			ino = uint32(i + 1)
		}
		nl := e.nl
		if nl == 0 {
			nl = 1
		}
		b.Write(marshalHeader(cpioHeader{Name: e.name, Mode: e.mode, Ino: ino, Nlink: nl, Size: int64(len(e.data)), Mtime: 1700000000, RdevMajor: 1, RdevMinor: 3}))
		b.WriteString(e.data)
		b.Write(make([]byte, pad4(len(e.data))))
	}
	b.Write(marshalHeader(cpioHeader{Name: trailerName, Nlink: 1}))
	if !gz {
		return b.Bytes()
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(b.Bytes())
	zw.Close()
	return z.Bytes()
}

func unpackBytes(t testing.TB, data []byte, devices bool) (string, error) {
	t.Helper()
	parent := t.TempDir()
	f := filepath.Join(parent, "in.cpio")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, "root")
	_, err := Unpack(ctx, f, dir, UnpackOptions{Devices: &devices})
	return dir, err
}

func TestUnpackRefusesHostileEntries(t *testing.T) {
	for name, es := range map[string][]tEntry{
		"dotdot":              {{name: "../evil", mode: cpioReg | 0o644, data: "x"}},
		"dotdot inside":       {{name: "a/../../evil", mode: cpioReg | 0o644, data: "x"}},
		"absolute":            {{name: "/etc/evil", mode: cpioReg | 0o644, data: "x"}},
		"symlink then write":  {{name: "a", mode: cpioLink | 0o777, data: "/etc"}, {name: "a/passwd", mode: cpioReg | 0o644, data: "x"}},
		"relative link write": {{name: "b", mode: cpioDir | 0o755}, {name: "a", mode: cpioLink | 0o777, data: "b"}, {name: "a/x", mode: cpioReg | 0o644, data: "x"}},
		"file then write":     {{name: "a", mode: cpioReg | 0o644, data: "x"}, {name: "a/x", mode: cpioReg | 0o644, data: "x"}},
		"device":              {{name: "dev/null", mode: cpioChar | 0o666}},
		"socket":              {{name: "s", mode: cpioSock | 0o666}},
		"root not dir":        {{name: ".", mode: cpioReg | 0o644}},
	} {
		t.Run(name, func(t *testing.T) {
			dir, err := unpackBytes(t, archive(true, es...), false)
			if !errors.Is(err, ErrUnsafePath) && !errors.Is(err, ErrInvalid) {
				t.Fatalf("accepted: %v", err)
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "evil")); err == nil {
				t.Error("wrote outside the root")
			}
		})
	}
}

func TestUnpackOverlayHardlinksDevices(t *testing.T) {
	// Two archives, the second overlaying the first, one raw and one gzip;
	// a hardlink pair with the data on the last name (GNU cpio's way).
	a1 := archive(false, tEntry{name: ".", mode: cpioDir | 0o755}, tEntry{name: "etc", mode: cpioDir | 0o755},
		tEntry{name: "etc/motd", mode: cpioReg | 0o644, data: "old"}, tEntry{name: "bin/su", mode: cpioReg | 0o4755, data: "su"})
	a2 := archive(true, tEntry{name: "etc/motd", mode: cpioReg | 0o600, data: "new"},
		tEntry{name: "h1", mode: cpioReg | 0o644, ino: 77, nl: 2}, tEntry{name: "h2", mode: cpioReg | 0o644, ino: 77, nl: 2, data: "shared"},
		tEntry{name: "fifo", mode: cpioFifo | 0o600}, tEntry{name: "link", mode: cpioLink | 0o777, data: "/bin/busybox"})
	data := append(append(a1, make([]byte, 512)...), a2...)
	dir, err := unpackBytes(t, data, false)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/motd")); string(b) != "new" {
		t.Errorf("overlay: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "bin/su")); fi.Mode()&os.ModeSetuid == 0 {
		t.Error("setuid lost")
	}
	b1, _ := os.ReadFile(filepath.Join(dir, "h1"))
	f1, _ := os.Stat(filepath.Join(dir, "h1"))
	f2, _ := os.Stat(filepath.Join(dir, "h2"))
	if string(b1) != "shared" || !os.SameFile(f1, f2) {
		t.Errorf("hardlink: %q same=%v", b1, os.SameFile(f1, f2))
	}
	if ln, _ := os.Readlink(filepath.Join(dir, "link")); ln != "/bin/busybox" {
		t.Errorf("symlink %q", ln)
	}
	if os.Geteuid() == 0 {
		d, err := unpackBytes(t, archive(true, tEntry{name: "dev/null", mode: cpioChar | 0o666}), true)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Lstat(filepath.Join(d, "dev/null")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("device: %v %v", fi, err)
		}
	}
}

func TestPackRoundTripReproducible(t *testing.T) {
	rel := minicore.Require(t)
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("needs GNU cpio")
	}
	d := t.TempDir()
	root := filepath.Join(d, "root")
	r, err := Unpack(ctx, rel.Rootfs, root, UnpackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Archives != 1 || r.Entries < 100 {
		t.Errorf("unpack: %+v", r)
	}
	os.Link(filepath.Join(root, "etc/passwd"), filepath.Join(root, "etc/passwd.hl"))
	out := filepath.Join(d, "core.gz")
	p1, err := Pack(ctx, root, out, PackOptions{Mtime: 1700000000})
	if err != nil || !p1.Changed {
		t.Fatalf("pack: %+v %v", p1, err)
	}
	first, _ := os.ReadFile(out)
	if p2, err := Pack(ctx, root, out, PackOptions{Mtime: 1700000000}); err != nil || p2.Changed {
		t.Fatalf("second pack: %+v %v", p2, err)
	}
	// GNU cpio extracts our archive to the same tree.
	gnu := filepath.Join(d, "gnu")
	os.Mkdir(gnu, 0o755)
	cmd := exec.Command("bash", "-c", "zcat \"$1\" | cpio -idm --quiet", "x", out)
	cmd.Dir = gnu
	if o, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gnu cpio: %v %s", err, o)
	}
	ours := filepath.Join(d, "ours")
	if _, err := Unpack(ctx, out, ours, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	rt, gt, ot := dirTree(t, root), dirTree(t, gnu), dirTree(t, ours)
	delete(rt, ".")
	delete(gt, ".")
	delete(ot, ".")
	for p, e := range rt {
		if gt[p] != e {
			t.Errorf("gnu cpio %s: %s, want %s", p, gt[p], e)
		}
		if ot[p] != e {
			t.Errorf("round trip %s: %s, want %s", p, ot[p], e)
		}
	}
	if len(gt) != len(rt) || len(ot) != len(rt) {
		t.Errorf("entries: src %d gnu %d ours %d", len(rt), len(gt), len(ot))
	}
	f1, _ := os.Stat(filepath.Join(ours, "etc/passwd"))
	f2, _ := os.Stat(filepath.Join(ours, "etc/passwd.hl"))
	if !os.SameFile(f1, f2) {
		t.Error("hardlink lost in round trip")
	}
	// Same tree elsewhere, same bytes.
	out2 := filepath.Join(d, "again.gz")
	if _, err := Pack(ctx, ours, out2, PackOptions{Mtime: 1700000000}); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(out2); !bytes.Equal(first, second) {
		t.Error("pack is not reproducible across copies of the tree")
	}
	// A concatenated initramfs (corepure64.gz = rootfs64.gz + modules64.gz)
	// unpacks both archives.
	if r, err := Unpack(ctx, rel.Core, filepath.Join(d, "cat"), UnpackOptions{}); err != nil || r.Archives != 2 {
		t.Errorf("concatenated: %+v %v", r, err)
	}
}

func dirTree(t *testing.T, dir string) map[string]entry {
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return readTree(t, r)
}

// FuzzUnpack: whatever the archive, Unpack never writes outside its root
// and never panics.
func FuzzUnpack(f *testing.F) {
	f.Add(archive(false, tEntry{name: "a", mode: cpioDir | 0o755}, tEntry{name: "a/b", mode: cpioReg | 0o644, data: "hi"}))
	f.Add(archive(true, tEntry{name: "../x", mode: cpioReg | 0o644, data: "x"}))
	f.Add(archive(false, tEntry{name: "l", mode: cpioLink | 0o777, data: ".."}, tEntry{name: "l/x", mode: cpioReg | 0o644, data: "x"}))
	f.Add(archive(false, tEntry{name: "l", mode: cpioLink | 0o777, data: "/tmp"}, tEntry{name: "l/x", mode: cpioReg | 0o644, data: "x"}))
	f.Add(archive(false, tEntry{name: "h1", mode: cpioReg | 0o644, ino: 5, nl: 2, data: "a"}, tEntry{name: "h2", mode: cpioDir | 0o755, ino: 5, nl: 2}))
	f.Add(archive(false, tEntry{name: "d", mode: cpioBlock | 0o600}))
	f.Add([]byte("070701zzzz"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		in := filepath.Join(parent, "in")
		os.WriteFile(in, data, 0o644)
		no := false
		Unpack(ctx, in, filepath.Join(parent, "root"), UnpackOptions{Devices: &no, Limits: Limits{MaxFile: 1 << 20, MaxTotal: 4 << 20, MaxEntries: 1000}})
		es, _ := os.ReadDir(parent)
		for _, e := range es {
			if e.Name() != "in" && e.Name() != "root" {
				t.Fatalf("wrote outside the root: %s", e.Name())
			}
		}
	})
}

// readStream reads a file through a bufio.Reader and a core read whole in
// place: both must see the same entries in a mix of gzip members, raw
// archives and zero padding.
func TestReadStreamSources(t *testing.T) {
	a := archive(true, tEntry{name: "a", mode: cpioDir | 0o755}, tEntry{name: "a/b", mode: cpioReg | 0o644, data: "hello"})
	b := archive(false, tEntry{name: "c", mode: cpioReg | 0o600, data: "raw"})
	c := archive(true, tEntry{name: "a/d", mode: cpioLink | 0o777, data: "b"})
	var in []byte
	for _, part := range [][]byte{a, make([]byte, 7), b, make([]byte, 512), c, b, make([]byte, 3)} {
		in = append(in, part...)
	}
	list := func(r io.Reader) []string {
		var out []string
		err := readStream(ctx, r, Limits{}.withDefaults(), func(h cpioHeader, data []byte) error {
			out = append(out, fmt.Sprintf("%s %o %q", h.Name, h.Mode, data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	mem := list(bytes.NewReader(in))
	buffered := list(struct{ io.Reader }{bytes.NewReader(in)})
	if strings.Join(mem, "\n") != strings.Join(buffered, "\n") || len(mem) != 9 {
		t.Errorf("in memory:\n%s\nbuffered:\n%s", strings.Join(mem, "\n"), strings.Join(buffered, "\n"))
	}
}

// A truncated gzip member is an error wherever it ends (in the cpio data,
// in the gzip footer, before the first entry), never a shorter archive.
func TestUnpackTruncatedGzip(t *testing.T) {
	a := archive(true, tEntry{name: "a", mode: cpioReg | 0o644, data: strings.Repeat("tinyfarm ", 1000)})
	for _, n := range []int{15, len(a) / 2, len(a) - 4} {
		if _, err := unpackBytes(t, a[:n], false); !errors.Is(err, ErrInvalid) {
			t.Errorf("truncated to %d of %d bytes: %v", n, len(a), err)
		}
	}
}
