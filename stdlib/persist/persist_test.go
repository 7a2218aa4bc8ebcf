package persist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

var ctx = context.Background()

func newTarget(t *testing.T) *target.Dir {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	os.Mkdir(root, 0o755)
	d, err := target.OpenDir(root, target.DirOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func read(t *testing.T, d *target.Dir, n string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.Path(), n))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBootlocal(t *testing.T) {
	d := newTarget(t)
	// Missing file: created with a shebang, executable.
	r, err := Bootlocal(ctx, d, []string{"/usr/local/sbin/nginx"}, BlockOptions{ID: "web", Check: true})
	if err != nil || !r.Changed || !strings.Contains(r.Diff, "+/usr/local/sbin/nginx") {
		t.Fatalf("check = %+v, %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(d.Path(), "opt/bootlocal.sh")); err == nil {
		t.Fatal("check mode wrote the file")
	}
	if _, err := Bootlocal(ctx, d, []string{"/usr/local/sbin/nginx"}, BlockOptions{ID: "web"}); err != nil {
		t.Fatal(err)
	}
	want := "#!/bin/sh\n# BEGIN tinyfarm web\n/usr/local/sbin/nginx\n# END tinyfarm web\n"
	if got := read(t, d, "opt/bootlocal.sh"); got != want {
		t.Fatalf("bootlocal = %q, want %q", got, want)
	}
	fi, _ := os.Stat(filepath.Join(d.Path(), "opt/bootlocal.sh"))
	if fi.Mode().Perm() != 0o775 {
		t.Errorf("mode %v", fi.Mode())
	}
	// User lines kept; another id coexists; update in place; idempotent.
	os.WriteFile(filepath.Join(d.Path(), "opt/bootlocal.sh"), []byte(want+"echo mine\n"), 0o644)
	os.Chmod(filepath.Join(d.Path(), "opt/bootlocal.sh"), 0o644)
	r, err = Bootlocal(ctx, d, []string{"nginx -c /etc/n.conf", "echo 2"}, BlockOptions{ID: "web"})
	if err != nil || !r.Changed {
		t.Fatal(r, err)
	}
	Bootlocal(ctx, d, []string{"crond"}, BlockOptions{ID: "cron"})
	want = "#!/bin/sh\n# BEGIN tinyfarm web\nnginx -c /etc/n.conf\necho 2\n# END tinyfarm web\necho mine\n# BEGIN tinyfarm cron\ncrond\n# END tinyfarm cron\n"
	if got := read(t, d, "opt/bootlocal.sh"); got != want {
		t.Fatalf("bootlocal = %q\nwant %q", got, want)
	}
	fi, _ = os.Stat(filepath.Join(d.Path(), "opt/bootlocal.sh"))
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("exec bit not restored: %v", fi.Mode())
	}
	r, err = Bootlocal(ctx, d, []string{"crond"}, BlockOptions{ID: "cron"})
	if err != nil || r.Changed || r.Diff != "" {
		t.Errorf("second call = %+v, %v", r, err)
	}
	// Empty lines removes the block.
	Bootlocal(ctx, d, nil, BlockOptions{ID: "web"})
	if got := read(t, d, "opt/bootlocal.sh"); strings.Contains(got, "web") || !strings.Contains(got, "echo mine") {
		t.Errorf("after removal %q", got)
	}
	// Errors.
	if _, err := Bootsync(ctx, d, []string{"x"}, BlockOptions{ID: "bad id"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad id: %v", err)
	}
	if _, err := SetBlock("#!/bin/sh\n# BEGIN tinyfarm x\nfoo\n", "x", []string{"y"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unterminated block: %v", err)
	}
	if _, err := SetBlock("", "x", []string{"# END tinyfarm x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("marker in lines: %v", err)
	}
}

func TestOnbootExactNames(t *testing.T) {
	d := newTarget(t)
	os.MkdirAll(filepath.Join(d.Path(), "tce"), 0o755)
	os.WriteFile(filepath.Join(d.Path(), "tce/onboot.lst"), []byte("nginx-dev.tcz\n# comment\nopenssl\n"), 0o664)
	r, err := Onboot(ctx, d, []string{"nginx", "openssl.tcz", "nginx.tcz"}, ListOptions{})
	if err != nil || !r.Changed {
		t.Fatal(r, err)
	}
	if got := read(t, d, "tce/onboot.lst"); got != "nginx-dev.tcz\n# comment\nopenssl\nnginx.tcz\n" {
		t.Errorf("onboot = %q", got)
	}
	r, _ = Onboot(ctx, d, []string{"nginx"}, ListOptions{})
	if r.Changed {
		t.Error("duplicate add changed the file")
	}
	Onboot(ctx, d, []string{"nginx"}, ListOptions{Remove: true})
	if got := read(t, d, "tce/onboot.lst"); got != "nginx-dev.tcz\n# comment\nopenssl\n" {
		t.Errorf("after remove (substring names must stay) = %q", got)
	}
	if _, err := Onboot(ctx, d, []string{"a b"}, ListOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
}

func TestFiletool(t *testing.T) {
	d := newTarget(t)
	os.MkdirAll(filepath.Join(d.Path(), "opt"), 0o755)
	os.WriteFile(filepath.Join(d.Path(), "opt/.filetool.lst"), []byte("opt\nhome\n"), 0o664)
	r, err := Filetool(ctx, d, FiletoolOptions{Add: []string{"/usr/local/etc/nginx", "home"}, Exclude: []string{"Cache", "/home/tc/tmp"}})
	if err != nil || !r.Changed || len(r.Files) != 2 {
		t.Fatal(r, err)
	}
	if got := read(t, d, "opt/.filetool.lst"); got != "opt\nhome\nusr/local/etc/nginx\n" {
		t.Errorf("filetool = %q", got)
	}
	if got := read(t, d, "opt/.xfiletool.lst"); got != "Cache\n/home/tc/tmp\n" {
		t.Errorf("xfiletool = %q", got)
	}
	r, _ = Filetool(ctx, d, FiletoolOptions{Add: []string{"usr/local/etc/nginx"}})
	if r.Changed {
		t.Error("not idempotent")
	}
	if _, err := Filetool(ctx, d, FiletoolOptions{Add: []string{"../etc"}}); err == nil {
		t.Error("escaping entry accepted")
	}
}

func TestExcludeMatch(t *testing.T) {
	for _, c := range []struct {
		pat, name string
		want      bool
	}{
		{"Cache", "home/tc/.mozilla/Cache/x", true},
		{"Cache", "home/tc/Cache", true},
		{"Cache", "home/tc/Cachex", false},
		{"*.o", "home/tc/src/a.o", true},
		{"tc/.cache", "home/tc/.cache/f", true},
		{"/home/tc", "home/tc/x", false}, // anchored patterns see relative names
		{"/home/tc", "/home/tc/x", true},
		{"home/*", "home/tc/deep/x", true},
		{"h*e", "home/x", true},
		{"[!a]ome", "home", true},
	} {
		if got := ExcludeMatch(c.pat, c.name); got != c.want {
			t.Errorf("ExcludeMatch(%q, %q) = %v, want %v", c.pat, c.name, got, c.want)
		}
	}
}

func TestBootcodes(t *testing.T) {
	line, err := Bootcodes(map[string]string{"tce": "UUID=abc", "quiet": "", "nozswap": "", "host": "web1"})
	if err != nil || line != "host=web1 nozswap quiet tce=UUID=abc" {
		t.Fatalf("Bootcodes = %q, %v", line, err)
	}
	for _, bad := range []map[string]string{{"a b": ""}, {"k=v": ""}, {"k": "a b"}, {"": "x"}} {
		if _, err := Bootcodes(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Bootcodes(%q) = %v", bad, err)
		}
	}
	m, err := ParseBootcodes(` quiet  hometown=x tce=UUID=a=b  opt="a b" host=1 host=2 `)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"quiet": "", "hometown": "x", "tce": "UUID=a=b", "opt": "a b", "host": "2"}
	if len(m) != len(want) {
		t.Errorf("ParseBootcodes = %q", m)
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %q, want %q", k, m[k], v)
		}
	}
	if _, ok := m["home"]; ok {
		t.Error("prefix globbing: home matched hometown")
	}
	if _, err := ParseBootcodes(`a="b`); !errors.Is(err, ErrInvalid) {
		t.Errorf("unterminated quote: %v", err)
	}
}

func TestBackupRestore(t *testing.T) {
	d := newTarget(t)
	root := d.Path()
	for n, c := range map[string]string{
		"home/tc/.ashrc":         "alias l=ls\n",
		"home/tc/Cache/big":      "junk",
		"home/tc/notes.txt":      "notes",
		"opt/bootlocal.sh":       "#!/bin/sh\n",
		"opt/.filetool.lst":      "opt\nhome\nmissing/file\n",
		"opt/.xfiletool.lst":     "Cache\n",
		"usr/local/etc/not-kept": "x",
	} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(n)), 0o755)
		os.WriteFile(filepath.Join(root, n), []byte(c), 0o644)
	}
	os.Symlink(".ashrc", filepath.Join(root, "home/tc/link"))
	os.MkdirAll(filepath.Join(root, "tce"), 0o755)

	r, err := Backup(ctx, d, BackupOptions{Check: true})
	if err != nil || !slices.Contains(r.Entries, "home/tc/notes.txt") || slices.Contains(r.Entries, "home/tc/Cache/big") || !slices.Equal(r.Skipped, []string{"missing/file"}) {
		t.Fatalf("check backup = %+v, %v", r, err)
	}
	if _, err := os.Stat(filepath.Join(root, "tce/mydata.tgz")); err == nil {
		t.Fatal("check mode wrote the backup")
	}
	if _, err := Backup(ctx, d, BackupOptions{}); err != nil {
		t.Fatal(err)
	}
	names := tarNames(t, filepath.Join(root, "tce/mydata.tgz"))
	if !slices.Contains(names, "home/tc/.ashrc") || slices.Contains(names, "home/tc/Cache/") || slices.Contains(names, "usr/local/etc/not-kept") {
		t.Errorf("archive = %q", names)
	}
	first, _ := os.ReadFile(filepath.Join(root, "tce/mydata.tgz"))
	os.WriteFile(filepath.Join(root, "home/tc/notes.txt"), []byte("changed"), 0o644)
	if _, err := Backup(ctx, d, BackupOptions{Safe: true}); err != nil {
		t.Fatal(err)
	}
	if bk, _ := os.ReadFile(filepath.Join(root, "tce/mydatabk.tgz")); !bytes.Equal(bk, first) {
		t.Error("mydatabk.tgz is not the previous backup")
	}
	// Restore into a fresh target.
	d2 := newTarget(t)
	os.MkdirAll(filepath.Join(d2.Path(), "tce"), 0o755)
	data, _ := os.ReadFile(filepath.Join(root, "tce/mydata.tgz"))
	os.WriteFile(filepath.Join(d2.Path(), "tce/mydata.tgz"), data, 0o644)
	rr, err := Restore(ctx, d2, "tce/mydata.tgz", RestoreOptions{})
	if err != nil || !rr.Changed {
		t.Fatal(rr, err)
	}
	if got := read(t, d2, "home/tc/notes.txt"); got != "changed" {
		t.Errorf("restored notes %q", got)
	}
	if l, _ := os.Readlink(filepath.Join(d2.Path(), "home/tc/link")); l != ".ashrc" {
		t.Errorf("link %q", l)
	}
	rr, err = Restore(ctx, d2, "tce/mydata.tgz", RestoreOptions{})
	if err != nil || rr.Changed {
		t.Errorf("second restore = %+v, %v", rr, err)
	}
	if _, err := Restore(ctx, d2, "tce/none.tgz", RestoreOptions{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
}

func TestRestoreHostile(t *testing.T) {
	for name, hdrs := range map[string][]tar.Header{
		"dotdot":      {{Name: "home/../../escape", Typeflag: tar.TypeReg}},
		"absolute":    {{Name: "/etc/passwd", Typeflag: tar.TypeReg}},
		"linkthrough": {{Name: "home", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "home/l", Typeflag: tar.TypeSymlink, Linkname: "/"}, {Name: "home/l/etc/x", Typeflag: tar.TypeReg}},
		"hardlinkout": {{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}},
		"device":      {{Name: "sda", Typeflag: tar.TypeBlock, Devmajor: 8}},
	} {
		t.Run(name, func(t *testing.T) {
			d := newTarget(t)
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			tw := tar.NewWriter(zw)
			for _, h := range hdrs {
				h.Format = tar.FormatGNU
				tw.WriteHeader(&h)
			}
			tw.Close()
			zw.Close()
			os.WriteFile(filepath.Join(d.Path(), "b.tgz"), buf.Bytes(), 0o644)
			_, err := Restore(ctx, d, "b.tgz", RestoreOptions{})
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("Restore = %v, want ErrUnsafePath", err)
			}
			es, _ := os.ReadDir(d.Path())
			if len(es) != 1 {
				t.Errorf("target changed: %v", es)
			}
		})
	}
}

func tarNames(t *testing.T, p string) []string {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name)
	}
}
