package tcz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// noise returns n bytes that compress poorly (so a file spans many blocks
// and takes a while to inflate).
func noise(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return string(b)
}

// checkBudget fails unless every byte of c's InstallMemory is free again.
func checkBudget(t *testing.T, c *Client) {
	t.Helper()
	if c.mem == nil {
		return
	}
	c.mem.mu.Lock()
	defer c.mem.mu.Unlock()
	if c.mem.left != c.cfg.InstallMemory {
		t.Errorf("install memory: %d free of %d after Install", c.mem.left, c.cfg.InstallMemory)
	}
}

// memories are the Config.InstallMemory settings tried: default (all
// content held), none held, and a budget that holds only small files.
var memories = []int64{0, -1, 64 << 10}

// Two dependencies ship the same file: the first in dependency order
// wins, however the concurrent checking of the archives finishes, and
// whatever part of the content is held in memory.
func TestInstallConflictDepsFirst(t *testing.T) {
	m := newMirror(t)
	big := noise(1, 1<<20) // d1 is checked slowest: many blocks
	m.add(t, "d1", pkgSpec{files: map[string]string{"usr/local/share/common": "from d1\n", "usr/local/share/d1.bin": big}})
	m.add(t, "d2", pkgSpec{files: map[string]string{"usr/local/share/common": "from d2\n", "usr/local/bin/d2": "d2"}})
	m.add(t, "top", pkgSpec{files: map[string]string{"usr/local/bin/top": "top"}, deps: []string{"d1.tcz", "d2.tcz"}})
	var first string
	for _, mem := range memories {
		for range 3 {
			c := m.client(t, Config{InstallMemory: mem})
			tg := newTarget(t)
			r, err := c.Install(ctx, tg, "top", InstallOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkBudget(t, c)
			if !slices.Equal(r.Order, []string{"d1", "d2", "top"}) || !slices.Equal(r.Installed, r.Order) {
				t.Fatalf("order %v installed %v", r.Order, r.Installed)
			}
			if b, _ := os.ReadFile(filepath.Join(tg.Path(), "usr/local/share/common")); string(b) != "from d1\n" {
				t.Errorf("memory %d: common = %q, want d1's", mem, b)
			}
			if !slices.Equal(r.Kept, []string{"usr/local/share/common"}) {
				t.Errorf("memory %d: kept %v", mem, r.Kept)
			}
			if b, _ := os.ReadFile(filepath.Join(tg.Path(), "usr/local/share/d1.bin")); string(b) != big {
				t.Errorf("memory %d: d1.bin differs (%d bytes)", mem, len(b))
			}
			snap := snapshot(t, tg.Path())
			if first == "" {
				first = snap
			} else if snap != first {
				t.Errorf("memory %d: tree differs:\n%s\nvs\n%s", mem, snap, first)
			}
		}
	}
}

// corruptFile flips bytes in the first data block of file name inside the
// squashfs data, keeping everything else valid.
func corruptFile(t *testing.T, data []byte, name string) []byte {
	t.Helper()
	a, err := ReadArchive(bytes.NewReader(data), int64(len(data)), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	fd, ok := a.files[name]
	if !ok || len(fd.sizes) == 0 {
		t.Fatalf("%s: no data blocks", name)
	}
	out := bytes.Clone(data)
	for i := fd.blockStart + 20; i < fd.blockStart+60; i++ {
		out[i] ^= 0x55
	}
	return out
}

// A corrupt block in the last file of an archive (with an md5 that
// matches, as a hostile mirror would serve) is an ErrInvalid error and
// nothing is written, whether the content is held in memory or not.
func TestInstallCorruptLaterFile(t *testing.T) {
	m := newMirror(t)
	m.add(t, "okdep", pkgSpec{files: map[string]string{"usr/local/lib/ok": "ok"}})
	m.add(t, "src", pkgSpec{files: map[string]string{"usr/local/a/first": noise(2, 64<<10), "usr/local/z/last": noise(3, 64<<10)}})
	good, err := os.ReadFile(filepath.Join(m.tcz, "src.tcz"))
	if err != nil {
		t.Fatal(err)
	}
	m.addRaw(t, "bad", corruptFile(t, good, "usr/local/z/last"), []string{"okdep.tcz"})
	for _, mem := range memories {
		t.Run(fmt.Sprint(mem), func(t *testing.T) {
			c := m.client(t, Config{InstallMemory: mem})
			// Alone: nothing written.
			tg := newTarget(t)
			before := snapshot(t, tg.Path())
			m.addRaw(t, "bad-alone", corruptFile(t, good, "usr/local/z/last"), nil)
			if _, err := c.Install(ctx, tg, "bad-alone", InstallOptions{Onboot: true}); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Install = %v, want ErrInvalid", err)
			}
			if after := snapshot(t, tg.Path()); after != before {
				t.Errorf("target changed:\n%s", after)
			}
			checkBudget(t, c)
			// After a good dependency: the dependency is installed (as
			// before, in order), the corrupt extension not at all.
			tg = newTarget(t)
			r, err := c.Install(ctx, tg, "bad", InstallOptions{})
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "install bad") {
				t.Fatalf("Install = %v, want ErrInvalid for bad", err)
			}
			checkBudget(t, c)
			if !slices.Equal(r.Installed, []string{"okdep", "bad"}) {
				t.Errorf("installed %v", r.Installed)
			}
			for _, p := range []string{"usr/local/a", "usr/local/z", InstalledDir + "/bad"} {
				if _, err := os.Lstat(filepath.Join(tg.Path(), p)); err == nil {
					t.Errorf("%s written", p)
				}
			}
			if _, err := os.Stat(filepath.Join(tg.Path(), InstalledDir, "okdep")); err != nil {
				t.Error("okdep not installed")
			}
		})
	}
}

// The md5 check an Install trusts is of the file as it was: any change to
// the cached file (content, size or mtime) makes it read again.
func TestVerifiedStampInvalidated(t *testing.T) {
	m := standardMirror(t)
	c := m.client(t, Config{})
	if _, err := c.Fetch(ctx, FetchOptions{}, "libbar"); err != nil {
		t.Fatal(err)
	}
	p := c.CachePath("libbar.tcz")
	f, _, err := c.openVerified("libbar", true)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	data, _ := os.ReadFile(p)
	// Same size, different content (mtime moves with the write).
	rot := bytes.Clone(data)
	rot[len(rot)/2] ^= 1
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(p, rot, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.openVerified("libbar", true); !errors.Is(err, ErrChecksum) {
		t.Errorf("after in-place rot: %v, want ErrChecksum", err)
	}
	// Restored: verified again, then trusted.
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, _, err = c.openVerified("libbar", true)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	// Replaced by another file (new inode) with other content.
	tmp := p + ".new"
	os.WriteFile(tmp, rot, 0o644)
	os.Rename(tmp, p)
	if _, _, err := c.openVerified("libbar", true); !errors.Is(err, ErrChecksum) {
		t.Errorf("after replacement: %v, want ErrChecksum", err)
	}
	// Without trust the file is always read.
	os.WriteFile(p, data, 0o644)
	if ok, err := c.verifyCached("libbar"); !ok {
		t.Fatal(err)
	}
}

// Every file of the mini release's archives reads the same as unsquashfs
// extracts it, both held in memory by load (blocks inflated in parallel
// for large files) and streamed by Open.
func TestMinicoreContentMatchesUnsquashfs(t *testing.T) {
	dir := minicoreMirror(t)
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Skip("no unsquashfs")
	}
	files, _ := filepath.Glob(filepath.Join(dir, "15.x/x86_64/tcz/*.tcz"))
	for _, f := range files {
		out := filepath.Join(t.TempDir(), "x")
		if b, err := exec.Command("unsquashfs", "-q", "-n", "-d", out, f).CombinedOutput(); err != nil {
			t.Fatalf("unsquashfs %s: %v %s", f, err, b)
		}
		for _, mem := range []*budget{{left: 1 << 30}, nil} {
			a, cl, err := OpenArchive(f, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if err := a.load(ctx, mem); err != nil {
				t.Fatalf("%s: %v", filepath.Base(f), err)
			}
			if (mem != nil) != (len(a.held) > 0 || len(a.files) == 0) {
				t.Errorf("%s: held %d of %d files with budget %v", filepath.Base(f), len(a.held), len(a.files), mem != nil)
			}
			for name := range a.files {
				r, err := a.Open(name)
				if err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatalf("%s: %s: %v", filepath.Base(f), name, err)
				}
				want, _ := os.ReadFile(filepath.Join(out, name))
				if !bytes.Equal(got, want) {
					t.Errorf("%s: %s: %d bytes differ from unsquashfs's %d", filepath.Base(f), name, len(got), len(want))
				}
			}
			a.release(mem)
			cl.Close()
		}
	}
}
