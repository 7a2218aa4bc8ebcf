//go:build linux

package image

import (
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// TestTreeCache builds disks from real core and openssh through the tree
// cache: the second build links both trees from it and its image equals
// one built without the cache; no build writes into a cached tree (each
// still equals a fresh unpack after builds that write hostname, keys,
// files and install records over them); a damaged entry (a file gone, a
// bad marker) and a killed build's temporary are noticed and replaced.
func TestTreeCache(t *testing.T) {
	needRoot(t)
	rel := minicore.Require(t)
	c := mirrorClient(t, rel)
	dir, stage := t.TempDir(), t.TempDir()
	cache := filepath.Join(stage, TreeCacheName)
	var mu sync.Mutex
	var logs []string
	build := func(name, host string, noCache bool) string {
		t.Helper()
		mu.Lock()
		logs = nil
		mu.Unlock()
		img := filepath.Join(dir, name)
		_, err := Build(ctx, Options{Path: img, Core: []string{rel.Core}, Mirror: c, Extensions: []string{"openssh"},
			Size: 64 << 20, Hostname: host, TempDir: stage, NoTreeCache: noCache,
			AuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOy8wqKmJ0uO4o7vEuTPvtnOy0ZbhQmP7M5mBp8Un0Dq farm"},
			Files:          map[string]string{"/etc/motd": "hello " + host + "\n", "/usr/local/etc/ssh/extra.conf": "x\n"},
			Logf: func(f string, a ...any) {
				mu.Lock()
				logs = append(logs, fmt.Sprintf(f, a...))
				mu.Unlock()
			}})
		if err != nil {
			t.Fatal(err)
		}
		fsck(t, img)
		return img
	}
	hits := func(want string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, l := range logs {
			if strings.Contains(l, "tree cache") {
				got = append(got, l)
			}
		}
		slices.Sort(got) // core and extensions are staged concurrently
		if s := strings.Join(got, "; "); s != want {
			t.Errorf("tree cache: %q, want %q", s, want)
		}
	}
	build("a.img", "web1", false)
	hits("image: core from the tree cache: false; image: extensions from the tree cache: false")
	b := build("b.img", "web2", false)
	hits("image: core from the tree cache: true; image: extensions from the tree cache: true")
	nc := build("c.img", "web2", true)
	hits("")

	// b (linked from the cache) and c (unpacked) hold the same tree but
	// for their own host keys.
	got, want := imageTree(t, b), imageTree(t, nc)
	for _, m := range []map[string]entry{got, want} {
		maps.DeleteFunc(m, func(p string, _ entry) bool {
			for _, d := range []string{ssh.OpenSSHKeyDir, ssh.DropbearKeyDir, ssh.DropbearDefaultKeyDir} {
				if strings.HasPrefix(p, d+"/ssh_host_") || strings.HasPrefix(p, d+"/dropbear_") {
					return true
				}
			}
			return false
		})
	}
	if !maps.Equal(got, want) {
		for _, p := range sortedKeys(want) {
			if got[p] != want[p] {
				t.Errorf("%s: cached build %v, uncached %v", p, got[p], want[p])
			}
		}
		for _, p := range sortedKeys(got) {
			if _, ok := want[p]; !ok {
				t.Errorf("%s: only in the cached build", p)
			}
		}
	}

	// The cached trees are what unpacking and installing afresh give.
	coreRef, extRef := filepath.Join(dir, "core"), filepath.Join(dir, "ext")
	if _, err := UnpackAll(ctx, []string{rel.Core}, coreRef, UnpackOptions{}); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(extRef, 0o755)
	et, err := target.OpenDir(extRef, target.DirOptions{AllowDevices: true, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Install(ctx, et, "openssh", tcz.InstallOptions{TCEDir: "tce"}); err != nil {
		t.Fatal(err)
	}
	et.Close()
	entries := func() (core, ext string) {
		t.Helper()
		for _, n := range readNames(cache) {
			switch {
			case strings.HasPrefix(n, "core"):
				core = filepath.Join(cache, n)
			case strings.HasPrefix(n, "ext"):
				ext = filepath.Join(cache, n)
			default:
				t.Errorf("tree cache holds %s", n)
			}
		}
		if core == "" || ext == "" {
			t.Fatalf("tree cache: %v", readNames(cache))
		}
		return core, ext
	}
	same := func(what, cached, ref string) {
		t.Helper()
		if g, w := dirTree(t, filepath.Join(cached, "tree")), dirTree(t, ref); !maps.Equal(g, w) {
			t.Errorf("cached %s differs from a fresh one (%d vs %d entries)", what, len(g), len(w))
			for _, p := range sortedKeys(w) {
				if g[p] != w[p] {
					t.Errorf("%s: cached %v, fresh %v", p, g[p], w[p])
				}
			}
		}
	}
	coreEntry, extEntry := entries()
	same("core", coreEntry, coreRef)
	same("extensions", extEntry, extRef)

	// Damage: a file gone from core's entry, ext's marker garbled, and a
	// killed build's half-filled entry.
	if err := os.Remove(filepath.Join(coreEntry, "tree/etc/passwd")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(extEntry, "complete"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(cache, fmt.Sprintf("fill-%d-1", dead.Process.Pid))
	if err := os.MkdirAll(filepath.Join(stale, "tree/etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	build("d.img", "web3", false)
	hits("image: core from the tree cache: false; image: extensions from the tree cache: false")
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("%s left", stale)
	}
	coreEntry, extEntry = entries()
	same("core", coreEntry, coreRef)
	same("extensions", extEntry, extRef)
	build("e.img", "web4", false)
	hits("image: core from the tree cache: true; image: extensions from the tree cache: true")
}

// checkEntry reports whether a tree cache entry holds what its marker
// says (fs.ErrNotExist: evicted meanwhile).
func checkEntry(entry string) error {
	m, err := readMarker(entry)
	if err != nil {
		return err
	}
	got := marker{Format: treeCacheFormat}
	err = filepath.WalkDir(filepath.Join(entry, "tree"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		got.Entries++
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			got.Bytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return err
	}
	if got != m {
		return fmt.Errorf("%s: holds %+v, its marker says %+v", entry, got, m)
	}
	return nil
}

// TestTreeCacheConcurrent: builds racing to fill the same entries all
// succeed with whole images, and leave whole entries and no temporaries.
func TestTreeCacheConcurrent(t *testing.T) {
	needRoot(t)
	rel := minicore.Require(t)
	c := mirrorClient(t, rel)
	dir, stage := t.TempDir(), t.TempDir()
	// The extensions fetched once, so that the builds race on the cache.
	if _, err := c.Fetch(ctx, tcz.FetchOptions{}, "openssh"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	imgs := make([]string, 3)
	for i := range imgs {
		imgs[i] = filepath.Join(dir, fmt.Sprintf("%d.img", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Build(ctx, Options{Path: imgs[i], Core: []string{rel.Core}, Mirror: c, Extensions: []string{"openssh"},
				Size: 64 << 20, Hostname: fmt.Sprintf("web%d", i), TempDir: stage}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	want := imageTree(t, imgs[0])
	for _, img := range imgs {
		fsck(t, img)
		if got := imageTree(t, img); len(got) != len(want) {
			t.Errorf("%s: %d entries, %s has %d", img, len(got), imgs[0], len(want))
		}
	}
	cache := filepath.Join(stage, TreeCacheName)
	names := readNames(cache)
	if len(names) != 2 {
		t.Errorf("tree cache holds %v, want a core and an extension set", names)
	}
	for _, n := range names {
		if err := checkEntry(filepath.Join(cache, n)); err != nil {
			t.Error(err)
		}
	}
}

// TestTreeCacheRefusesPlantedDir: /dev/shm is writable by anyone, so a
// cache directory someone else prepared (a symlink to their directory,
// one others may write, one owned by another user) is never used: what
// it holds would end up in the images.
func TestTreeCacheRefusesPlantedDir(t *testing.T) {
	plant := map[string]func(t *testing.T, dir string){
		"symlink": func(t *testing.T, dir string) {
			target := t.TempDir()
			if err := os.Chmod(target, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, dir); err != nil {
				t.Fatal(err)
			}
		},
		"world-writable": func(t *testing.T, dir string) {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		},
		"another user's": func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to give the directory away")
			}
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, fn := range plant {
		t.Run(name, func(t *testing.T) {
			base := t.TempDir()
			fn(t, filepath.Join(base, TreeCacheName))
			if c := openTreeCache(base); c != nil {
				t.Errorf("a planted cache directory (%s) was used: %s", name, c.dir)
			}
		})
	}
	if c := openTreeCache(t.TempDir()); c == nil {
		t.Error("a cache directory of our own was refused")
	}
}
