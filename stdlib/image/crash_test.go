//go:build linux

package image_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
)

const crashBuild = `
local image, tcz = require("image"), require("tcz")
tcz.mirror{ url = vars.mirror, kernel = vars.kernel }
task("build", function()
  local d = image.build{ path = vars.path, size = "32M", hostname = vars.h, extensions = { "dropbear" } }
  log("HOSTKEY " .. d.host_key:match("^[^\n]+"))
end)
`

// debugfsCat returns a file of an ext image, read without mounting it.
func debugfsCat(t *testing.T, img, p string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+p, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s %s: %v", img, p, err)
	}
	return string(out)
}

// TestCrashImageBuild kills `tinyfarm run` at random moments of an
// image.build, of a new image and of a rebuild with another hostname.
// After every kill the image is absent (new) or the old one, or the new
// one, whole: `e2fsck -fn` clean and with the hostname of one of them. A
// rerun builds the new image, the one after it is ok, the host key the
// build reports is the one in the image, and no temporary image or
// staging tree is left.
func TestCrashImageBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary many times")
	}
	if os.Geteuid() != 0 {
		t.Skip("image.build needs root")
	}
	for _, tool := range []string{"mkfs.ext3", "e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh)", tool)
		}
	}
	rel := minicore.Require(t)
	work, state := t.TempDir(), t.TempDir()
	pb := filepath.Join(work, "build.lua")
	if err := os.WriteFile(pb, []byte(crashBuild), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(img, h string) crashtest.Cmd {
		return crashtest.Cmd{
			Args: []string{"run", pb, "-e", "path=" + img, "-e", "h=" + h, "-e", "mirror=file://" + rel.Mirror, "-e", "kernel=" + rel.KernelVersion},
			Env:  []string{"TINYFARM_HOME=" + state}, Dir: work,
		}
	}
	hostname := func(img string) string {
		return strings.TrimSpace(debugfsCat(t, img, "/etc/hostname"))
	}
	// check asserts the invariant after r: the image at img is absent
	// (only when absent is allowed) or a whole image of one of hosts.
	check := func(t *testing.T, r crashtest.Result, img string, absentOK bool, hosts ...string) {
		if _, err := os.Stat(img); err != nil {
			if !absentOK {
				t.Errorf("%v: %v", r, err)
			}
		} else {
			if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
				t.Errorf("%v: e2fsck -fn: %v\n%s", r, err, out)
			}
			if h := hostname(img); !strings.Contains(strings.Join(hosts, " "), h) || h == "" {
				t.Errorf("%v: hostname %q, want one of %q", r, h, hosts)
			}
		}
		want := hosts[len(hosts)-1]
		out := crashtest.MustRun(t, build(img, want))
		if h := hostname(img); h != want {
			t.Errorf("%v: after the rerun the hostname is %q, want %q", r, h, want)
		}
		_, key, _ := strings.Cut(out, "HOSTKEY ")
		key, _, _ = strings.Cut(key, "\n")
		if disk := strings.TrimSpace(debugfsCat(t, img, "/usr/local/etc/ssh/ssh_host_ed25519_key.pub")); !strings.HasPrefix(disk, strings.TrimSpace(key)) || key == "" {
			t.Errorf("%v: the build reports host key %q, the image holds %q", r, key, disk)
		}
		if out := crashtest.MustRun(t, build(img, want)); !strings.Contains(out, "changed=0") {
			t.Errorf("%v: second rerun changed something:\n%s", r, out)
		}
		if tmp := crashtest.TempFiles(filepath.Dir(img)); len(tmp) > 0 {
			t.Errorf("%v: temporary files left: %v", r, tmp)
		}
		// Every published tree cache entry is whole.
		cache := filepath.Join("/dev/shm", image.TreeCacheName)
		ents, _ := os.ReadDir(cache)
		for _, e := range ents {
			if n := e.Name(); strings.HasPrefix(n, "core") || strings.HasPrefix(n, "ext") {
				if err := image.CheckTreeCacheEntry(filepath.Join(cache, n)); err != nil && !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%v: tree cache: %v", r, err)
				}
			}
		}
		for _, base := range []string{"/dev/shm", filepath.Dir(img)} {
			for _, p := range []string{"tinyfarm-image-", "tinyfarm-core-", image.TreeCacheName + "/fill-", image.TreeCacheName + "/evict-"} {
				if m, _ := filepath.Glob(filepath.Join(base, fmt.Sprintf("%s%d-*", p, r.Pid))); r.Pid > 0 && len(m) > 0 {
					t.Errorf("%v: staging tree of the killed build left: %v", r, m)
				}
			}
		}
	}
	dir := func(trial int) string {
		d := filepath.Join(work, fmt.Sprintf("trial%d", trial+1))
		os.RemoveAll(d)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	t.Run("new", func(t *testing.T) {
		var img string
		crashtest.RunOp(t, crashtest.Op{
			Name:   "image.build new",
			Trials: 4,
			Prepare: func(t *testing.T, trial int) crashtest.Cmd {
				img = filepath.Join(dir(trial), "disk.img")
				// A cold tree cache, so that kills land while it is
				// filled too (a concurrent build just fills it again).
				os.RemoveAll(filepath.Join("/dev/shm", image.TreeCacheName))
				return build(img, "one")
			},
			Check: func(t *testing.T, r crashtest.Result) { check(t, r, img, true, "one") },
		})
	})
	t.Run("rebuild", func(t *testing.T) {
		var img string
		crashtest.RunOp(t, crashtest.Op{
			Name:   "image.build rebuild",
			Trials: 4,
			Prepare: func(t *testing.T, trial int) crashtest.Cmd {
				img = filepath.Join(dir(trial), "disk.img")
				crashtest.MustRun(t, build(img, "one"))
				return build(img, "two")
			},
			Check: func(t *testing.T, r crashtest.Result) { check(t, r, img, false, "one", "two") },
		})
	})
}
