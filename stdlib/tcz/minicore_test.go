package tcz

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
)

// minicoreMirror returns the mini Tiny Core mirror built by
// testdata/minicore/build.sh (make minicore), or skips.
func minicoreMirror(t *testing.T) string {
	t.Helper()
	return minicore.Require(t).Mirror
}

func TestMinicoreInstall(t *testing.T) {
	dir := minicoreMirror(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	c, err := New(Config{URL: srv.URL, Cache: t.TempDir(), Kernel: "6.1.0-56-amd64", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	tg := newTarget(t)
	r, err := c.Install(ctx, tg, "nginx", InstallOptions{Onboot: true})
	if err != nil {
		t.Fatal(err)
	}
	if r.Order[len(r.Order)-1] != "nginx" || !slices.Contains(r.Order, "pcre2") {
		t.Errorf("order %q", r.Order)
	}
	if _, err := c.Install(ctx, tg, "dropbear", InstallOptions{Onboot: true}); err != nil {
		t.Fatal(err)
	}
	// Every file the mirror's .list names for nginx is there.
	list, _ := os.ReadFile(filepath.Join(dir, "15.x/x86_64/tcz/nginx.tcz.list"))
	for _, l := range strings.Fields(string(list)) {
		if _, err := os.Lstat(filepath.Join(tg.Path(), strings.TrimPrefix(l, "/"))); err != nil {
			t.Errorf("nginx file %s missing: %v", l, err)
		}
	}
	got, _ := Installed(ctx, tg)
	for _, want := range []string{"nginx", "dropbear", "pcre2"} {
		if !slices.Contains(got, want) {
			t.Errorf("Installed = %q lacks %s", got, want)
		}
	}
	ob, _ := os.ReadFile(filepath.Join(tg.Path(), "tce/onboot.lst"))
	if string(ob) != "nginx.tcz\ndropbear.tcz\n" {
		t.Errorf("onboot.lst %q", ob)
	}
	if r, err := c.Install(ctx, tg, "nginx", InstallOptions{Onboot: true}); err != nil || r.Changed {
		t.Errorf("second install %+v %v", r, err)
	}
	if _, err := c.Remove(ctx, tg, "nginx", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Fields(string(list)) {
		if _, err := os.Lstat(filepath.Join(tg.Path(), strings.TrimPrefix(l, "/"))); err == nil {
			t.Errorf("nginx file %s left after remove", l)
		}
	}
}

// TestMinicoreListings checks the validator against unsquashfs on every
// extension of the mini release.
func TestMinicoreListings(t *testing.T) {
	dir := minicoreMirror(t)
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Skip("no unsquashfs")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "15.x/x86_64/tcz/*.tcz"))
	for _, f := range files {
		a, cl, err := OpenArchive(f, Limits{})
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		out, _ := exec.Command("unsquashfs", "-lln", f).Output()
		want := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			fl := strings.Fields(l)
			p := strings.TrimPrefix(strings.TrimPrefix(fl[5], "squashfs-root"), "/")
			if p != "" {
				want[p] = fl[0] + " " + fl[1]
			}
		}
		for _, e := range a.Entries {
			got := lsMode(e) + " " + itoa(e.Uid) + "/" + itoa(e.Gid)
			if want[e.Name] != got {
				t.Errorf("%s: %s: %q, unsquashfs %q", filepath.Base(f), e.Name, got, want[e.Name])
			}
		}
		if len(a.Entries) != len(want) {
			t.Errorf("%s: %d entries vs %d", filepath.Base(f), len(a.Entries), len(want))
		}
		if err := a.Verify(ctx); err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
		}
		cl.Close()
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
