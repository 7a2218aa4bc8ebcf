//go:build linux

package ops

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// unifyFile is one regular file of one guest, with where its data sits in
// the guest's image.
type unifyFile struct {
	disk    int // index into the disks
	name    string
	size    int64
	sum     [32]byte
	extents []extent
}

// maxDedupe is the most one FIDEDUPERANGE call is asked to share (btrfs
// caps a call at 16 MiB).
const maxDedupe = 16 << 20

func unifyDisks(ctx context.Context, disks []unifyDisk, exclude []string, res *UnifyResult) error {
	if len(disks) == 0 {
		res.Supported = true
		return nil
	}
	// Every image on one filesystem: extents are shared only within one.
	var dev uint64
	var sfs unix.Statfs_t
	var kept []unifyDisk
	for i, d := range disks {
		var st unix.Stat_t
		if err := unix.Stat(d.path, &st); err != nil {
			return fmt.Errorf("guest %s: disk %s: %w", d.guest, d.path, err)
		}
		if i == 0 {
			dev = st.Dev
			if err := unix.Statfs(d.path, &sfs); err != nil {
				return fmt.Errorf("guest %s: disk %s: %w", d.guest, d.path, err)
			}
		} else if st.Dev != dev {
			res.Skipped[d.guest] = "its disk is on another filesystem than " + disks[0].guest + "'s"
			continue
		}
		kept = append(kept, d)
		res.Guests = append(res.Guests, d.guest)
	}
	disks = kept
	res.Filesystem = fsName(sfs.Type)
	res.Supported = res.Filesystem == "btrfs" || res.Filesystem == "xfs"
	bs := sfs.Bsize
	if bs <= 0 {
		bs = 4096
	}

	// Read every disk offline: hash the files, map them into the image.
	var files []unifyFile
	for i, d := range disks {
		err := image.View(ctx, d.path, func(t target.Target) error {
			dr, ok := t.(target.DirReader)
			if !ok {
				return fmt.Errorf("disk %s: the image target cannot list directories", d.path)
			}
			return walkUnify(ctx, t, dr, ".", exclude, bs, func(f unifyFile) {
				f.disk = i
				files = append(files, f)
			})
		})
		if err != nil {
			return fmt.Errorf("guest %s: %w", d.guest, err)
		}
	}
	type key struct {
		size int64
		sum  [32]byte
	}
	groups := map[key][]int{}
	var keys []key
	for i, f := range files {
		k := key{f.size, f.sum}
		if groups[k] == nil {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}

	// The images, open, with their current extent maps (to see what is
	// shared already).
	imgs := make([]*os.File, len(disks))
	maps := make([][]extent, len(disks))
	defer func() {
		for _, f := range imgs {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i, d := range disks {
		f, err := os.OpenFile(d.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("guest %s: disk: %w", d.guest, err)
		}
		imgs[i] = f
		if maps[i], err = fiemap(f); err != nil {
			return fmt.Errorf("guest %s: disk %s: %w", d.guest, d.path, err)
		}
	}

	// Used space before and after, as df reports it: a sync first, so the
	// host file system has committed (and freed) what it will.
	used := func() (int64, error) {
		if err := unix.Syncfs(int(imgs[0].Fd())); err != nil {
			return 0, err
		}
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(imgs[0].Fd()), &st); err != nil {
			return 0, err
		}
		return int64(st.Blocks-st.Bfree) * st.Bsize, nil
	}
	measure := !res.Check && res.Supported
	var usedBefore int64
	if measure {
		var err error
		if usedBefore, err = used(); err != nil {
			return fmt.Errorf("host file system of %s: %w", disks[0].path, err)
		}
	}
	var unsupported error
	for _, k := range keys {
		idx := groups[k]
		src := files[idx[0]]
		for _, j := range idx[1:] {
			dst := files[j]
			if dst.disk == src.disk {
				continue // copies within one guest: its own business
			}
			res.Files++
			res.Identical += k.size
			ranges, unaligned := alignedRanges(src.extents, dst.extents, k.size, bs)
			res.Unaligned += unaligned
			for _, r := range ranges {
				res.Shareable += r.length
				if samePhysical(maps[src.disk], r.srcOff, maps[dst.disk], r.dstOff, r.length) {
					res.AlreadyShared += r.length
					continue
				}
				if res.Check || !res.Supported || unsupported != nil {
					res.BytesShared += r.length
					continue
				}
				saved, differed, err := dedupe(ctx, imgs[src.disk], imgs[dst.disk], r)
				if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTTY) {
					// xfs without reflink, or another filesystem that
					// looked able: measure on, then say so.
					unsupported, res.Supported = err, false
					res.BytesShared += r.length
					continue
				}
				if err != nil {
					return fmt.Errorf("share %s between %s and %s: %w", src.name, disks[src.disk].guest, disks[dst.disk].guest, err)
				}
				res.BytesShared += saved
				res.Differed += differed
			}
		}
	}
	if measure && res.Supported {
		after, err := used()
		if err != nil {
			return fmt.Errorf("host file system of %s: %w", disks[0].path, err)
		}
		res.BytesFreed = usedBefore - after
	}
	if !res.Supported && !res.Check {
		why := fmt.Sprintf("could save %s of %s identical in %d files, but %s cannot share extents between files (put the disks on btrfs, or xfs with reflink=1)",
			farm.HumanSize(res.BytesShared), farm.HumanSize(res.Identical), res.Files, res.Filesystem)
		if unsupported != nil {
			why += ": " + unsupported.Error()
		}
		return fmt.Errorf("unsupported on %s: %w", res.Filesystem, driver.Unsupported("tinyfarm", "unify", why))
	}
	return nil
}

// walkUnify calls fn for every regular file under dir that is not
// excluded and holds at least one host block.
func walkUnify(ctx context.Context, t target.Target, dr target.DirReader, dir string, exclude []string, bs int64, fn func(unifyFile)) error {
	ents, err := dr.ReadDir(ctx, dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := e.Name
		switch {
		case unifyExcluded(name, exclude):
		case e.Type == target.TypeDir:
			if err := walkUnify(ctx, t, dr, name, exclude, bs, fn); err != nil {
				return err
			}
		case e.Type == target.TypeRegular && e.Size >= bs:
			f, ok, err := hashAndMap(ctx, t, name)
			if err != nil {
				return err
			}
			if ok {
				fn(f)
			}
		}
	}
	return nil
}

func hashAndMap(ctx context.Context, t target.Target, name string) (unifyFile, bool, error) {
	rc, err := t.Open(ctx, name)
	if err != nil {
		return unifyFile{}, false, err
	}
	defer rc.Close()
	osf, ok := rc.(*os.File)
	if !ok {
		return unifyFile{}, false, nil
	}
	h := sha256.New()
	n, err := io.Copy(h, osf)
	if err != nil {
		return unifyFile{}, false, fmt.Errorf("read %s: %w", name, err)
	}
	exts, err := fiemap(osf)
	if err != nil {
		return unifyFile{}, false, fmt.Errorf("map %s: %w", name, err)
	}
	f := unifyFile{name: name, size: n, extents: exts}
	copy(f.sum[:], h.Sum(nil))
	return f, len(exts) > 0, nil
}

// dedupe asks the kernel to share r between the two images, at most
// maxDedupe at a time. It returns what was shared and what differed.
func dedupe(ctx context.Context, src, dst *os.File, r blockRange) (saved, differed int64, err error) {
	for off := int64(0); off < r.length; {
		if err := ctx.Err(); err != nil {
			return saved, differed, err
		}
		n := min(r.length-off, maxDedupe)
		arg := unix.FileDedupeRange{Src_offset: uint64(r.srcOff + off), Src_length: uint64(n),
			Info: []unix.FileDedupeRangeInfo{{Dest_fd: int64(dst.Fd()), Dest_offset: uint64(r.dstOff + off)}}}
		if err := unix.IoctlFileDedupeRange(int(src.Fd()), &arg); err != nil {
			return saved, differed, err
		}
		info := arg.Info[0]
		switch {
		case info.Status < 0:
			return saved, differed, unix.Errno(-info.Status)
		case info.Status == unix.FILE_DEDUPE_RANGE_DIFFERS:
			differed += n
		default:
			saved += int64(info.Bytes_deduped)
		}
		off += n
	}
	return saved, differed, nil
}

// samePhysical reports whether n bytes at offA of the file mapped by a
// and at offB of the file mapped by b are the same storage.
func samePhysical(a []extent, offA int64, b []extent, offB, n int64) bool {
	for x := int64(0); x < n; {
		ea, ok1 := extentAt(a, offA+x)
		eb, ok2 := extentAt(b, offB+x)
		if !ok1 || !ok2 {
			return false
		}
		pa, pb := ea.physical+(offA+x-ea.logical), eb.physical+(offB+x-eb.logical)
		if pa != pb {
			return false
		}
		x += min(ea.logical+ea.length-(offA+x), eb.logical+eb.length-(offB+x))
	}
	return true
}

// extentAt finds the extent holding logical offset l (es sorted).
func extentAt(es []extent, l int64) (extent, bool) {
	i := sort.Search(len(es), func(i int) bool { return es[i].logical+es[i].length > l })
	if i < len(es) && es[i].logical <= l {
		return es[i], true
	}
	return extent{}, false
}

// FIEMAP: struct fiemap is 32 bytes, struct fiemap_extent 56.
const (
	ioctlFIEMAP         = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapExtentLast    = 0x1
	fiemapUnusable      = 0x2 | 0x4 | 0x8 | 0x100 | 0x200 | 0x800 // unknown, delalloc, encoded, not aligned, inline, unwritten
	fiemapHeaderSize    = 32
	fiemapExtentSize    = 56
	fiemapExtentsPerRun = 512
)

// fiemap returns the file's data extents (logical -> physical), sorted.
// Extents whose physical place is unknown or not plain data (delayed,
// encoded, inline, unwritten) are left out: they cannot be shared.
func fiemap(f *os.File) ([]extent, error) {
	buf := make([]byte, fiemapHeaderSize+fiemapExtentsPerRun*fiemapExtentSize)
	var out []extent
	var start uint64
	for {
		clear(buf)
		ne := binary.NativeEndian
		ne.PutUint64(buf[0:], start)
		ne.PutUint64(buf[8:], ^uint64(0)-start)
		ne.PutUint32(buf[16:], 1) // FIEMAP_FLAG_SYNC
		ne.PutUint32(buf[24:], fiemapExtentsPerRun)
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), ioctlFIEMAP, uintptr(unsafe.Pointer(&buf[0]))); e != 0 {
			return nil, fmt.Errorf("fiemap: %w", e)
		}
		n := int(ne.Uint32(buf[20:]))
		if n == 0 {
			return out, nil
		}
		last := false
		for i := 0; i < n; i++ {
			p := buf[fiemapHeaderSize+i*fiemapExtentSize:]
			e := extent{logical: int64(ne.Uint64(p[0:])), physical: int64(ne.Uint64(p[8:])), length: int64(ne.Uint64(p[16:]))}
			flags := ne.Uint32(p[40:])
			if flags&fiemapUnusable == 0 {
				out = append(out, e)
			}
			start = uint64(e.logical + e.length)
			last = last || flags&fiemapExtentLast != 0
		}
		if last {
			return out, nil
		}
	}
}

// fsName names a filesystem by its statfs magic.
func fsName(magic int64) string {
	switch uint32(magic) {
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	}
	return fmt.Sprintf("filesystem 0x%x", uint32(magic))
}
