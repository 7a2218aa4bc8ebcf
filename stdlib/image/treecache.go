//go:build linux

package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// TreeCacheName is the directory, next to the staging trees (see
// Options.TempDir), that holds unpacked trees of cores and extension sets,
// by content: a rebuild, or a second disk from the same inputs, links
// them into its staging tree instead of inflating and writing them again.
const TreeCacheName = "tinyfarm-trees"

// treeCacheKeep is how many trees the cache keeps (the most recently
// used): a core and an extension set of a few farms' images. In /dev/shm
// they take memory (CorePure64 with modules: about 14 MiB each).
const treeCacheKeep = 4

// treeCacheFormat changes when what fill functions put in a tree does.
const treeCacheFormat = 1

// treeCache is a directory of immutable trees, one per key:
// <dir>/<key>/tree and <dir>/<key>/complete. An entry is filled under a
// temporary name, its completion marker written last, then renamed into
// place: a build killed at any moment leaves either no entry or a whole
// one (and a temporary that the next build removes). A build never writes
// a cached file: it links them into its staging tree, where every later
// change (target.Dir) replaces a name with a new file, never writing into
// the linked inode; and mke2fs -d only reads.
type treeCache struct{ dir string }

// marker is <entry>/complete: what linking the tree must find, so an
// entry changed or removed behind the cache's back (an eviction while a
// build links from it) is noticed and not used.
type marker struct {
	Format  int   `json:"format"`
	Entries int   `json:"entries"`
	Bytes   int64 `json:"bytes"`
}

// openTreeCache returns the cache under base, or nil when it cannot be
// used safely: base is usually /dev/shm, which anyone may write, so the
// directory must be a real directory owned by this user and writable by
// it alone (otherwise its content could be planted in the images).
func openTreeCache(base string) *treeCache {
	dir := filepath.Join(base, TreeCacheName)
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil
	}
	fi, err := os.Lstat(dir)
	if err != nil || !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 {
		return nil
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || int(st.Uid) != os.Geteuid() {
		return nil
	}
	// What builds killed while filling or evicting left.
	fsutil.RemoveStale(dir, "fill-")
	fsutil.RemoveStale(dir, "evict-")
	return &treeCache{dir: dir}
}

// materialize makes dst (an empty directory) hold the tree cached under
// key, filling the entry first with fill (which writes a tree into the
// directory it is given) when there is none. hit reports whether the
// entry was there. A damaged or vanished entry is removed and filled
// again.
func (c *treeCache) materialize(ctx context.Context, key, dst string, fill func(ctx context.Context, dir string) error) (hit bool, err error) {
	entry := filepath.Join(c.dir, key)
	m, err := readMarker(entry)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.evict(key) // a bad marker: the entry would block its own refill
	}
	if err == nil {
		got, err := linkTree(ctx, filepath.Join(entry, "tree"), dst)
		if err == nil && got == m {
			now := time.Now()
			os.Chtimes(entry, now, now) // most recently used: evicted last
			return true, nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// Damaged: start again from an empty dst.
		c.evict(key)
		if err := emptyDir(dst); err != nil {
			return false, err
		}
	}
	tmp, err := os.MkdirTemp(c.dir, fsutil.PidPrefix("fill-"))
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp) // gone after the rename below
	tree := filepath.Join(tmp, "tree")
	if err := fill(ctx, tree); err != nil {
		return false, err
	}
	if m, err = linkTree(ctx, tree, dst); err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		// A file system without hardlinks (the staging dir is the
		// user's choice): the tree is made in dst itself.
		if err := emptyDir(dst); err != nil {
			return false, err
		}
		return false, fill(ctx, dst)
	}
	b, _ := json.Marshal(m)
	if err := os.WriteFile(filepath.Join(tmp, "complete"), b, 0o600); err != nil {
		return false, nil // dst is whole; the tree is not cached
	}
	// Another build may have published the same key meanwhile: its entry
	// is as good as this one, which is dropped.
	if err := os.Rename(tmp, entry); err == nil {
		c.trim()
	}
	return false, nil
}

func readMarker(entry string) (marker, error) {
	var m marker
	b, err := os.ReadFile(filepath.Join(entry, "complete"))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Format != treeCacheFormat {
		return m, fmt.Errorf("tree cache %s: bad marker", entry)
	}
	return m, nil
}

// evict removes an entry: renamed away first, so no build finds it half
// removed (one linking from it meanwhile finds its count short).
func (c *treeCache) evict(key string) {
	tmp := filepath.Join(c.dir, fsutil.PidPrefix("evict-")+key)
	if os.Rename(filepath.Join(c.dir, key), tmp) == nil {
		os.RemoveAll(tmp)
	}
}

// trim evicts the least recently used entries beyond treeCacheKeep.
func (c *treeCache) trim() {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return
	}
	type used struct {
		key string
		t   time.Time
	}
	var us []used
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "fill-") || strings.HasPrefix(e.Name(), "evict-") {
			continue
		}
		if fi, err := e.Info(); err == nil {
			us = append(us, used{e.Name(), fi.ModTime()})
		}
	}
	slices.SortFunc(us, func(a, b used) int { return b.t.Compare(a.t) })
	for _, u := range us[min(len(us), treeCacheKeep):] {
		c.evict(u.key)
	}
}

// emptyDir removes everything below dir.
func emptyDir(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// linkTree recreates src's directories in dst (an existing directory,
// which takes src's attributes) with their owners, modes and times, and
// hardlinks every other entry (files, symlinks, device nodes) into them.
// It returns what it found, for the marker.
func linkTree(ctx context.Context, src, dst string) (marker, error) {
	m := marker{Format: treeCacheFormat}
	type dirTime struct {
		p string
		t time.Time
	}
	var dirs []dirTime
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		m.Entries++
		if !d.IsDir() {
			if d.Type().IsRegular() {
				fi, err := d.Info()
				if err != nil {
					return err
				}
				m.Bytes += fi.Size()
			}
			return os.Link(p, to)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("link tree %s: no owner", p)
		}
		if rel != "." {
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
		}
		if err := os.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := os.Chmod(to, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		dirs = append(dirs, dirTime{to, fi.ModTime()})
		return nil
	})
	if err != nil {
		return m, fmt.Errorf("link tree %s: %w", src, err)
	}
	// Directory times last, deepest first: linking changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i].p, dirs[i].t, dirs[i].t); err != nil {
			return m, fmt.Errorf("link tree %s: %w", src, err)
		}
	}
	return m, nil
}
