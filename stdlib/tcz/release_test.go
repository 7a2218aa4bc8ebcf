package tcz

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReleaseFilesOfficialNames(t *testing.T) {
	for arch, want := range map[string]ReleaseNames{
		"x86_64": {Core: "corepure64.gz", Rootfs: "rootfs64.gz", Modules: "modules64.gz", Kernel: "vmlinuz64"},
		"x86":    {Core: "core.gz", Rootfs: "rootfs.gz", Modules: "modules.gz", Kernel: "vmlinuz"},
	} {
		if got, err := ReleaseFiles(arch); err != nil || got != want {
			t.Errorf("ReleaseFiles(%s) = %+v, %v; want %+v", arch, got, err, want)
		}
	}
	if _, err := ReleaseFiles("armv7"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "local core") {
		t.Errorf("armv7: %v", err)
	}
}

// writeRelease lays out release files under mirror/<15.x>/<arch>/release/distribution_files.
func writeRelease(t *testing.T, mirror, arch string, files map[string]string) {
	t.Helper()
	d := filepath.Join(mirror, "15.x", arch, "release", "distribution_files")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for n, c := range files {
		s := md5.Sum([]byte(c))
		os.WriteFile(filepath.Join(d, n), []byte(c), 0o644)
		os.WriteFile(filepath.Join(d, n+".md5.txt"), []byte(hex.EncodeToString(s[:])+"  "+n+"\n"), 0o644)
	}
}

func TestFetchRelease(t *testing.T) {
	mirror := t.TempDir()
	writeRelease(t, mirror, "x86_64", map[string]string{"corepure64.gz": "core64", "vmlinuz64": "kernel"})
	writeRelease(t, mirror, "x86", map[string]string{"core.gz": "core32"})
	srv := httptest.NewServer(http.FileServer(http.Dir(mirror)))
	t.Cleanup(srv.Close)
	for _, arch := range []string{"x86_64", "x86"} {
		c, err := New(Config{URL: srv.URL, Arch: arch, Cache: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		rn, _ := ReleaseFiles(arch)
		// check mode: nothing cached, nothing downloaded
		if p, sum, err := c.FetchRelease(ctx, rn.Core, FetchOptions{Check: true}); err != nil || p != "" || len(sum) != 32 {
			t.Errorf("%s check: %q %q %v", arch, p, sum, err)
		}
		p, _, err := c.FetchRelease(ctx, rn.Core, FetchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p != c.ReleaseCachePath(rn.Core) || filepath.Base(p) != rn.Core {
			t.Errorf("%s: cached at %s", arch, p)
		}
		if b, _ := os.ReadFile(p); !bytes.HasPrefix(b, []byte("core")) {
			t.Errorf("%s: content %q", arch, b)
		}
	}
	c, _ := New(Config{URL: srv.URL, Arch: "x86_64", Cache: t.TempDir()})
	// The real mirror has no core.gz for x86_64: the error names the official files.
	_, _, err := c.FetchRelease(ctx, "core.gz", FetchOptions{})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "corepure64.gz, rootfs64.gz + modules64.gz, vmlinuz64") {
		t.Errorf("core.gz on x86_64: %v", err)
	}
	// A corrupt cached copy is fetched again; a file not matching its md5 is refused.
	p, _, _ := c.FetchRelease(ctx, "vmlinuz64", FetchOptions{})
	os.WriteFile(p, []byte("rotten"), 0o644)
	if p2, _, err := c.FetchRelease(ctx, "vmlinuz64", FetchOptions{}); err != nil || p2 != p {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "kernel" {
		t.Errorf("corrupt cache kept: %q", b)
	}
	// A tampered download is refused and the cached copy stays as it was
	// (the download goes to a temporary file, renamed only once verified).
	os.WriteFile(filepath.Join(mirror, "15.x/x86_64/release/distribution_files/vmlinuz64"), []byte("tampered"), 0o644)
	os.WriteFile(p, []byte("rotten"), 0o644)
	if _, _, err := c.FetchRelease(ctx, "vmlinuz64", FetchOptions{}); !errors.Is(err, ErrChecksum) {
		t.Errorf("tampered file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "rotten" {
		t.Errorf("a refused download replaced the cached copy: %q", b)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".tf-*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	// The release download draws the same progress bar as extensions.
	var prog bytes.Buffer
	pc, _ := New(Config{URL: srv.URL, Arch: "x86", Cache: t.TempDir(), Progress: &prog, ForceProgress: true})
	if _, _, err := pc.FetchRelease(ctx, "core.gz", FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(prog.String(), "tcz: fetching core.gz") {
		t.Errorf("progress output %q", prog.String())
	}
	if _, _, err := c.FetchRelease(ctx, "../x", FetchOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad name: %v", err)
	}
}

// TestFetchReleaseMinicore fetches the mini release's core over HTTP by its
// official name and gets the published file.
func TestFetchReleaseMinicore(t *testing.T) {
	dir := minicoreMirror(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL, Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rn, _ := ReleaseFiles(c.Config().Arch)
	for _, n := range []string{rn.Core, rn.Rootfs, rn.Modules, rn.Kernel} {
		p, _, err := c.FetchRelease(ctx, n, FetchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		a, _ := os.ReadFile(p)
		b, _ := os.ReadFile(filepath.Join(dir, "15.x/x86_64/release/distribution_files", n))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: fetched %d bytes, mirror has %d", n, len(a), len(b))
		}
	}
}
