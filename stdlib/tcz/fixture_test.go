package tcz

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

const testKernel = "6.1.0-tc"

func needMksquashfs(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not installed (scripts/deps.sh installs squashfs-tools)")
	}
}

// pkgSpec is one fixture extension: files maps a name to content
// ("->target" makes a symlink, "=>other" a hardlink), modes overrides 0644.
type pkgSpec struct {
	files  map[string]string
	modes  map[string]fs.FileMode
	owner  map[string][2]int
	deps   []string
	pseudo []string
}

// mirror is a fixture Tiny Core mirror served on 127.0.0.1.
type mirror struct {
	root string // mirror base dir
	tcz  string // <root>/15.x/x86_64/tcz
	srv  *httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func (m *mirror) count(file string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hits[file]
}

func newMirror(t testing.TB) *mirror {
	t.Helper()
	needMksquashfs(t)
	m := &mirror{root: t.TempDir(), hits: map[string]int{}}
	m.tcz = filepath.Join(m.root, "15.x", "x86_64", "tcz")
	if err := os.MkdirAll(m.tcz, 0o755); err != nil {
		t.Fatal(err)
	}
	fsrv := http.FileServer(http.Dir(m.root))
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.hits[filepath.Base(r.URL.Path)]++
		m.mu.Unlock()
		fsrv.ServeHTTP(w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// add packs spec as name into the mirror.
func (m *mirror) add(t testing.TB, name string, spec pkgSpec) {
	t.Helper()
	src := filepath.Join(t.TempDir(), name)
	os.MkdirAll(src, 0o755)
	names := make([]string, 0, len(spec.files))
	for n := range spec.files {
		names = append(names, n)
	}
	sort.Strings(names) // hardlink sources before links by naming convention
	var links []string
	for _, n := range names {
		p := filepath.Join(src, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		c := spec.files[n]
		switch {
		case strings.HasPrefix(c, "->"):
			if err := os.Symlink(c[2:], p); err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(c, "=>"):
			links = append(links, n)
		case strings.HasSuffix(n, "/"):
			os.MkdirAll(p, 0o755)
		default:
			if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range links {
		if err := os.Link(filepath.Join(src, spec.files[n][2:]), filepath.Join(src, n)); err != nil {
			t.Fatal(err)
		}
	}
	for n, o := range spec.owner {
		if err := os.Lchown(filepath.Join(src, n), o[0], o[1]); err != nil {
			t.Fatal(err)
		}
	}
	for n, md := range spec.modes {
		if err := os.Chmod(filepath.Join(src, n), md); err != nil {
			t.Fatal(err)
		}
	}
	if len(spec.pseudo) > 0 {
		m.packPseudo(t, name, src, spec)
		return
	}
	_, err := Pack(context.Background(), PackOptions{Dir: src, Name: name, Out: m.tcz, Epoch: 1600000000, Info: map[string]string{"Description": name + " fixture", "Tags": "fixture " + name}})
	if err != nil {
		t.Fatal(err)
	}
	if len(spec.deps) > 0 { // raw, so fixtures can hold messy .dep files
		os.WriteFile(filepath.Join(m.tcz, name+".tcz.dep"), []byte(strings.Join(spec.deps, "\n")+"\n"), 0o644)
	}
}

func (m *mirror) packPseudo(t testing.TB, name, src string, spec pkgSpec) {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".tcz")
	args := []string{src, out, "-b", "4k", "-no-xattrs", "-noappend", "-comp", "gzip", "-quiet", "-no-progress"}
	for _, p := range spec.pseudo {
		args = append(args, "-p", p)
	}
	if b, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, b)
	}
	data, _ := os.ReadFile(out)
	m.addRaw(t, name, data, spec.deps)
}

// addRaw puts data as name.tcz with a matching md5.txt.
func (m *mirror) addRaw(t testing.TB, name string, data []byte, deps []string) {
	t.Helper()
	sum := md5.Sum(data)
	os.WriteFile(filepath.Join(m.tcz, name+".tcz"), data, 0o644)
	os.WriteFile(filepath.Join(m.tcz, name+".tcz.md5.txt"), []byte(hex.EncodeToString(sum[:])+"  "+name+".tcz\n"), 0o644)
	if len(deps) > 0 {
		os.WriteFile(filepath.Join(m.tcz, name+".tcz.dep"), []byte(strings.Join(deps, "\n")+"\n"), 0o644)
	}
}

func (m *mirror) client(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = m.srv.URL
	}
	if cfg.Cache == "" {
		cfg.Cache = t.TempDir()
	}
	if cfg.Kernel == "" {
		cfg.Kernel = testKernel
	}
	cfg.Logf = t.Logf
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// standard fixture: hello -> libfoo -> libbar, hello -> mod-KERNEL.
func standardMirror(t testing.TB) *mirror {
	m := newMirror(t)
	m.add(t, "hello", pkgSpec{
		files: map[string]string{
			"usr/local/bin/hello":             "#!/bin/sh\necho hello\n",
			"usr/local/bin/hello2":            "=>usr/local/bin/hello",
			"usr/local/bin/hi":                "->hello",
			"usr/local/bin/abs":               "->/usr/local/bin/hello",
			"usr/local/bin/suid":              "suid",
			"usr/local/share/hello/data.txt":  strings.Repeat("data ", 3000),
			"usr/local/tce.installed/hello":   "#!/bin/sh\necho setup\n",
			"usr/local/share/hello/empty.txt": "",
		},
		modes: map[string]fs.FileMode{"usr/local/bin/hello": 0o755, "usr/local/bin/suid": 0o755 | fs.ModeSetuid, "usr/local/tce.installed/hello": 0o755, "usr/local/share/hello/data.txt": 0o640},
		owner: map[string][2]int{"usr/local/share/hello/data.txt": {1001, 50}, "usr/local/tce.installed": {0, 50}},
		deps:  []string{"libfoo.tcz", "mod-KERNEL.tcz"},
	})
	m.add(t, "libfoo", pkgSpec{files: map[string]string{"usr/local/lib/libfoo.so.1": "foo"}, deps: []string{"  libbar.tcz  ", "", "libbar.tcz"}})
	m.add(t, "libbar", pkgSpec{files: map[string]string{"usr/local/lib/libbar.so.1": "bar"}})
	m.add(t, "mod-"+testKernel, pkgSpec{files: map[string]string{"usr/local/lib/modules/" + testKernel + "/kernel/x.ko": "ko"}})
	// tags.db.gz
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte("hello.tcz\tgreeting demo\nlibfoo.tcz\tlibrary\nlibbar.tcz\tlibrary Greeting-helper\n"))
	zw.Close()
	os.WriteFile(filepath.Join(m.tcz, "tags.db.gz"), b.Bytes(), 0o644)
	os.WriteFile(filepath.Join(m.tcz, "provides.db"), []byte("hello.tcz\nusr/local/bin/hello\n\nlibfoo.tcz\nusr/local/lib/libfoo.so.1\n\n"), 0o644)
	return m
}

func newTarget(t testing.TB) *target.Dir {
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

// snapshot describes every entry under dir (mode, owner, content or link).
func snapshot(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b.WriteString(rel + " " + fi.Mode().String())
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			b.WriteString(" -> " + l)
		case fi.Mode().IsRegular():
			c, _ := os.ReadFile(p)
			s := md5.Sum(c)
			b.WriteString(" " + hex.EncodeToString(s[:]))
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

func openDir(t testing.TB, root string, devices bool) (*target.Dir, error) {
	d, err := target.OpenDir(root, target.DirOptions{AllowDevices: devices})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, nil
}
