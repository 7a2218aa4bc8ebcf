package target_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/target/targettest"
)

func newDir(t *testing.T, opts target.DirOptions) *target.Dir {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := target.OpenDir(root, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestDirConformance(t *testing.T) {
	targettest.Run(t, func(t *testing.T) target.Target { return newDir(t, target.DirOptions{}) })
}

func TestDirConformanceDevices(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("device nodes need root")
	}
	targettest.Run(t, func(t *testing.T) target.Target { return newDir(t, target.DirOptions{AllowDevices: true}) })
}

// TestDirEscapeHost checks the host side: nothing is written next to the root.
func TestDirEscapeHost(t *testing.T) {
	ctx := context.Background()
	d := newDir(t, target.DirOptions{})
	parent := filepath.Dir(d.Path())
	for _, ln := range []string{"..", "/", parent, "../.."} {
		os.Remove(filepath.Join(d.Path(), "esc"))
		if err := d.Apply(ctx, target.Change{Entry: target.Entry{Name: "esc", Type: target.TypeSymlink, Linkname: ln}}); err != nil {
			t.Fatal(err)
		}
		err := target.WriteFile(ctx, d, "esc/escaped", []byte("x"), 0o644, 0, 0)
		if !errors.Is(err, target.ErrUnsafePath) {
			t.Errorf("write through symlink -> %s: %v, want ErrUnsafePath", ln, err)
		}
		if _, err := d.Open(ctx, "esc/escaped"); err == nil {
			t.Errorf("open through symlink -> %s succeeded", ln)
		}
		err = d.Apply(ctx, target.Change{Entry: target.Entry{Name: "esc/sub", Type: target.TypeDir}})
		if err == nil {
			t.Errorf("mkdir through symlink -> %s succeeded", ln)
		}
	}
	if _, err := os.Lstat(filepath.Join(parent, "escaped")); err == nil {
		t.Fatal("a file escaped the root")
	}
	if _, err := os.Lstat(filepath.Join(parent, "sub")); err == nil {
		t.Fatal("a directory escaped the root")
	}
	// Hardlink to a host file outside the root via a symlinked parent.
	outside := filepath.Join(parent, "secret")
	os.WriteFile(outside, []byte("s"), 0o600)
	os.Remove(filepath.Join(d.Path(), "esc"))
	os.Symlink(parent, filepath.Join(d.Path(), "esc"))
	err := d.Apply(ctx, target.Change{Entry: target.Entry{Name: "h", Type: target.TypeHardlink, Linkname: "esc/secret"}})
	if !errors.Is(err, target.ErrUnsafePath) {
		t.Errorf("hardlink via escaping symlink: %v, want ErrUnsafePath", err)
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"/opt/bootlocal.sh": "opt/bootlocal.sh", "a//b/./c": "a/b/c", "/": ".", "": ".", "a/": "a",
	} {
		if got, err := target.Clean(in); err != nil || got != want {
			t.Errorf("Clean(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "../a", "a/../../b", "a/..", "x\x00"} {
		if _, err := target.Clean(in); !errors.Is(err, target.ErrUnsafePath) {
			t.Errorf("Clean(%q) = %v, want ErrUnsafePath", in, err)
		}
	}
}

func TestTCEDir(t *testing.T) {
	ctx := context.Background()
	d := newDir(t, target.DirOptions{})
	if got, _ := target.TCEDir(ctx, d); got != "tce" {
		t.Errorf("default TCEDir = %q", got)
	}
	target.MkdirAll(ctx, d, "etc/sysconfig", 0o755, target.MkdirOptions{})
	os.Symlink("/mnt/sda1/tce", filepath.Join(d.Path(), "etc/sysconfig/tcedir"))
	if got, _ := target.TCEDir(ctx, d); got != "mnt/sda1/tce" {
		t.Errorf("TCEDir via link = %q", got)
	}
}

func TestWriteTar(t *testing.T) {
	var buf bytes.Buffer
	changes := []target.Change{
		{Entry: target.Entry{Name: "usr", Type: target.TypeDir, Mode: 0o755}},
		{Entry: target.Entry{Name: "/usr/x", Mode: 0o4755, Uid: 0, Gid: 50}, Body: target.BytesBody([]byte("hello"))},
		{Entry: target.Entry{Name: "usr/y", Type: target.TypeHardlink, Linkname: "usr/x"}},
		{Entry: target.Entry{Name: "usr/z", Type: target.TypeSymlink, Linkname: "/usr/x"}},
	}
	changes[1].Mode = 0o755 | os.ModeSetuid
	if err := target.WriteTar(context.Background(), &buf, changes); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	var got []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		got = append(got, h.Name+":"+string(rune(h.Typeflag))+":"+string(b)+":"+h.Linkname)
		if h.Name == "usr/x" && (h.Mode != 0o4755 || h.Gid != 50) {
			t.Errorf("usr/x header mode %o gid %d", h.Mode, h.Gid)
		}
	}
	want := "usr/:5::,usr/x:0:hello:,usr/y:1::usr/x,usr/z:2::/usr/x"
	if s := join(got); s != want {
		t.Errorf("tar = %s\nwant  %s", s, want)
	}
	if err := target.WriteTar(context.Background(), io.Discard, []target.Change{{Entry: target.Entry{Name: "x", Type: target.TypeRemove}}}); !errors.Is(err, target.ErrUnsupported) {
		t.Errorf("remove in tar: %v", err)
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(x)
	}
	return b.String()
}
