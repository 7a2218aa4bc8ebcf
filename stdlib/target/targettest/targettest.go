// Package targettest is the conformance suite every [target.Target]
// implementation passes: a directory, a disk image, a guest over SSH.
//
//	func TestConformance(t *testing.T) {
//		targettest.Run(t, func(t *testing.T) target.Target { return newMyTarget(t) })
//	}
//
// newTarget must return an empty root (a fresh, writable directory tree with
// nothing in it) and register its own cleanup with t.Cleanup.
package targettest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// Run runs the conformance suite against fresh targets from newTarget.
func Run(t *testing.T, newTarget func(t *testing.T) target.Target) {
	ctx := context.Background()
	sub := func(name string, f func(t *testing.T, tg target.Target)) {
		t.Run(name, func(t *testing.T) { f(t, newTarget(t)) })
	}

	sub("WriteReadFile", func(t *testing.T, tg target.Target) {
		mustApply(t, tg, dir("opt", 0o775))
		if err := target.WriteFile(ctx, tg, "opt/bootlocal.sh", []byte("#!/bin/sh\n"), 0o775, 0, 50); err != nil {
			t.Fatal(err)
		}
		got, err := target.ReadFile(ctx, tg, "/opt/bootlocal.sh") // leading slash = target root
		if err != nil || string(got) != "#!/bin/sh\n" {
			t.Fatalf("ReadFile = %q, %v", got, err)
		}
		e, err := tg.Lstat(ctx, "opt/bootlocal.sh")
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != target.TypeRegular || e.Size != 10 || e.Mode.Perm() != 0o775 || e.Name != "opt/bootlocal.sh" {
			t.Fatalf("Lstat = %+v, want regular 0775 size 10", e)
		}
		if target.CapsOf(tg).Chown && e.Gid != 50 {
			t.Errorf("gid = %d, want 50 (target claims Chown)", e.Gid)
		}
	})

	sub("ReplaceAtomically", func(t *testing.T, tg target.Target) {
		writeFile(t, tg, "f", "old content")
		rc, err := tg.Open(ctx, "f")
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		writeFile(t, tg, "f", "new")
		if got := readFile(t, tg, "f"); got != "new" {
			t.Fatalf("after replace: %q", got)
		}
		// A reader opened before the replace keeps the old file (rename, not truncate).
		old, _ := io.ReadAll(rc)
		if string(old) != "old content" {
			t.Errorf("reader opened before replace saw %q: the write was not a rename", old)
		}
		assertNoTemp(t, tg, ".")
	})

	sub("DefaultModes", func(t *testing.T, tg target.Target) {
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "d", Type: target.TypeDir}})
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "d/f"}})
		if e := lstat(t, tg, "d"); e.Mode.Perm() != 0o755 {
			t.Errorf("dir default mode %v, want 0755", e.Mode)
		}
		if e := lstat(t, tg, "d/f"); e.Mode.Perm() != 0o644 || e.Size != 0 {
			t.Errorf("file default %v size %d, want 0644 empty", e.Mode, e.Size)
		}
	})

	sub("DirExistingUpdatesMode", func(t *testing.T, tg target.Target) {
		mustApply(t, tg, dir("d", 0o700))
		writeFile(t, tg, "d/keep", "x")
		mustApply(t, tg, dir("d", 0o775))
		if e := lstat(t, tg, "d"); e.Mode.Perm() != 0o775 {
			t.Errorf("mode %v, want 0775", e.Mode)
		}
		if readFile(t, tg, "d/keep") != "x" {
			t.Error("existing directory content lost")
		}
	})

	sub("MissingParent", func(t *testing.T, tg target.Target) {
		err := tg.Apply(ctx, target.Change{Entry: target.Entry{Name: "no/such/f"}, Body: target.BytesBody([]byte("x"))})
		if err == nil {
			t.Fatal("Apply into a missing parent succeeded; want an error")
		}
		made, err := target.MkdirAll(ctx, tg, "no/such", 0o755, target.MkdirOptions{})
		if err != nil || len(made) != 2 {
			t.Fatalf("MkdirAll = %v, %v", made, err)
		}
		writeFile(t, tg, "no/such/f", "x")
	})

	sub("Lstat", func(t *testing.T, tg target.Target) {
		_, err := tg.Lstat(ctx, "absent")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Lstat(absent) = %v, want fs.ErrNotExist", err)
		}
		if _, err := tg.Open(ctx, "absent"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("Open(absent) = %v, want fs.ErrNotExist", err)
		}
		e := lstat(t, tg, ".")
		if e.Type != target.TypeDir {
			t.Fatalf("root is %v", e.Type)
		}
	})

	sub("Symlink", func(t *testing.T, tg target.Target) {
		writeFile(t, tg, "real", "data")
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "rel", Type: target.TypeSymlink, Linkname: "real"}})
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "abs", Type: target.TypeSymlink, Linkname: "/usr/local/bin/x"}})
		if e := lstat(t, tg, "rel"); e.Type != target.TypeSymlink || e.Linkname != "real" {
			t.Errorf("Lstat(rel) = %+v", e)
		}
		if e := lstat(t, tg, "abs"); e.Linkname != "/usr/local/bin/x" {
			t.Errorf("absolute link target not kept verbatim: %+v", e)
		}
		if readFile(t, tg, "rel") != "data" {
			t.Error("Open did not follow an in-root symlink")
		}
		// Replacing a symlink replaces the link, never writes through it.
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "rel", Type: target.TypeSymlink, Linkname: "other"}})
		if e := lstat(t, tg, "rel"); e.Linkname != "other" {
			t.Errorf("symlink not replaced: %+v", e)
		}
		writeFile(t, tg, "rel", "file now")
		if readFile(t, tg, "real") != "data" {
			t.Error("writing a file over a symlink wrote through it")
		}
		if e := lstat(t, tg, "rel"); e.Type != target.TypeRegular {
			t.Errorf("after write, rel is %v; want regular file", e.Type)
		}
	})

	sub("Hardlink", func(t *testing.T, tg target.Target) {
		writeFile(t, tg, "a", "same")
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "b", Type: target.TypeHardlink, Linkname: "a"}})
		if readFile(t, tg, "b") != "same" {
			t.Fatal("hardlink content differs")
		}
		err := tg.Apply(ctx, target.Change{Entry: target.Entry{Name: "c", Type: target.TypeHardlink, Linkname: "../../etc/passwd"}})
		if !errors.Is(err, target.ErrUnsafePath) {
			t.Errorf("hardlink to outside: %v, want ErrUnsafePath", err)
		}
	})

	sub("Remove", func(t *testing.T, tg target.Target) {
		writeFile(t, tg, "f", "x")
		mustApply(t, tg, dir("d", 0o755))
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "f", Type: target.TypeRemove}})
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "d", Type: target.TypeRemove}})
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "f", Type: target.TypeRemove}}) // absent: fine
		for _, n := range []string{"f", "d"} {
			if ok, _ := target.Exists(ctx, tg, n); ok {
				t.Errorf("%s still exists", n)
			}
		}
		mustApply(t, tg, dir("full", 0o755))
		writeFile(t, tg, "full/x", "x")
		if err := tg.Apply(ctx, target.Change{Entry: target.Entry{Name: "full", Type: target.TypeRemove}}); err == nil {
			t.Error("removing a non-empty directory succeeded")
		}
	})

	sub("DirOverFile", func(t *testing.T, tg target.Target) {
		writeFile(t, tg, "f", "x")
		if err := tg.Apply(ctx, dir("f", 0o755)); err == nil {
			t.Error("mkdir over a regular file succeeded")
		}
		mustApply(t, tg, dir("d", 0o755))
		if err := tg.Apply(ctx, target.Change{Entry: target.Entry{Name: "d"}, Body: target.BytesBody([]byte("x"))}); err == nil {
			t.Error("writing a file over a directory succeeded")
		}
	})

	sub("Escapes", func(t *testing.T, tg target.Target) {
		for _, n := range []string{"../x", "a/../../x", "..", "x\x00y"} {
			err := tg.Apply(ctx, target.Change{Entry: target.Entry{Name: n}, Body: target.BytesBody([]byte("pwned"))})
			if !errors.Is(err, target.ErrUnsafePath) {
				t.Errorf("Apply(%q) = %v, want ErrUnsafePath", n, err)
			}
			if _, err := tg.Lstat(ctx, n); !errors.Is(err, target.ErrUnsafePath) {
				t.Errorf("Lstat(%q) = %v, want ErrUnsafePath", n, err)
			}
		}
		// Writing through a symlink that points at "/" either fails or
		// lands inside the target; it never reaches the host.
		mustApply(t, tg, target.Change{Entry: target.Entry{Name: "esc", Type: target.TypeSymlink, Linkname: "../../../../.."}})
		err := tg.Apply(ctx, target.Change{Entry: target.Entry{Name: "esc/tinyfarm-escape"}, Body: target.BytesBody([]byte("x"))})
		if err == nil {
			if ok, _ := target.Exists(ctx, tg, "tinyfarm-escape"); !ok {
				t.Error("write through esc/ succeeded but the file is not inside the target")
			}
		}
	})

	sub("Setuid", func(t *testing.T, tg target.Target) {
		if !target.CapsOf(tg).Setuid {
			t.Skip("target does not keep setuid")
		}
		m := fs.FileMode(0o755) | fs.ModeSetuid
		if err := target.WriteFile(ctx, tg, "su", []byte("x"), m, 0, 0); err != nil {
			t.Fatal(err)
		}
		if e := lstat(t, tg, "su"); e.Mode != m {
			t.Errorf("mode %v, want %v", e.Mode, m)
		}
	})

	sub("Fifo", func(t *testing.T, tg target.Target) {
		err := tg.Apply(ctx, target.Change{Entry: target.Entry{Name: "p", Type: target.TypeFifo, Mode: 0o600}})
		if errors.Is(err, target.ErrUnsupported) {
			t.Skip("fifos unsupported")
		}
		if err != nil {
			t.Fatal(err)
		}
		if e := lstat(t, tg, "p"); e.Type != target.TypeFifo {
			t.Errorf("type %v", e.Type)
		}
	})

	sub("Devices", func(t *testing.T, tg target.Target) {
		err := tg.Apply(ctx, target.Change{Entry: target.Entry{Name: "null", Type: target.TypeChar, Mode: 0o666, Major: 1, Minor: 3}})
		if !target.CapsOf(tg).Devices {
			if !errors.Is(err, target.ErrUnsupported) {
				t.Fatalf("device node on a target without Devices: %v, want ErrUnsupported", err)
			}
			if ok, _ := target.Exists(ctx, tg, "null"); ok {
				t.Fatal("refused device node exists anyway")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if e := lstat(t, tg, "null"); e.Type != target.TypeChar || e.Major != 1 || e.Minor != 3 {
			t.Errorf("Lstat = %+v", e)
		}
	})

	sub("ApplyAllAndReadDir", func(t *testing.T, tg target.Target) {
		mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
		changes := []target.Change{
			dir("usr", 0o755), dir("usr/local", 0o755), dir("usr/local/bin", 0o755),
			{Entry: target.Entry{Name: "usr/local/bin/b", Mode: 0o755, ModTime: mt}, Body: target.BytesBody([]byte("bbb"))},
			{Entry: target.Entry{Name: "usr/local/bin/a", Type: target.TypeSymlink, Linkname: "b"}},
		}
		if err := target.ApplyAll(ctx, tg, changes); err != nil {
			t.Fatal(err)
		}
		if e := lstat(t, tg, "usr/local/bin/b"); !e.ModTime.Equal(mt) {
			t.Errorf("mtime %v, want %v", e.ModTime, mt)
		}
		dr, ok := tg.(target.DirReader)
		if !ok {
			t.Skip("no DirReader")
		}
		es, err := dr.ReadDir(ctx, "usr/local/bin")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name)
		}
		if strings.Join(names, ",") != "usr/local/bin/a,usr/local/bin/b" || es[0].Linkname != "b" {
			t.Errorf("ReadDir = %+v", es)
		}
	})

	sub("Canceled", func(t *testing.T, tg target.Target) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		err := tg.Apply(cctx, target.Change{Entry: target.Entry{Name: "f"}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Apply with canceled ctx = %v, want context.Canceled", err)
		}
	})
}

func dir(n string, m fs.FileMode) target.Change {
	return target.Change{Entry: target.Entry{Name: n, Type: target.TypeDir, Mode: m}}
}

func mustApply(t *testing.T, tg target.Target, c target.Change) {
	t.Helper()
	if err := tg.Apply(context.Background(), c); err != nil {
		t.Fatalf("Apply(%s %s): %v", c.Type, c.Name, err)
	}
}

func writeFile(t *testing.T, tg target.Target, n, s string) {
	t.Helper()
	if err := target.WriteFile(context.Background(), tg, n, []byte(s), 0o644, 0, 0); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, tg target.Target, n string) string {
	t.Helper()
	b, err := target.ReadFile(context.Background(), tg, n)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lstat(t *testing.T, tg target.Target, n string) target.Entry {
	t.Helper()
	e, err := tg.Lstat(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func assertNoTemp(t *testing.T, tg target.Target, n string) {
	t.Helper()
	dr, ok := tg.(target.DirReader)
	if !ok {
		return
	}
	es, err := dr.ReadDir(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if bytes.Contains([]byte(e.Name), []byte(".tf-")) {
			t.Errorf("temporary file left behind: %s", e.Name)
		}
	}
}
