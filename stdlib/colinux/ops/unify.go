package ops

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// UnifyOptions choose what Unify shares.
type UnifyOptions struct {
	// Guests are the guest names to unify. Default: every guest of the farm.
	Guests []string
	// Exclude are more paths left alone, relative to a guest's root:
	// "dir/" excludes a directory tree, anything else is a path.Match
	// pattern on the whole path ("usr/local/lib/*.so*"). They add to
	// DefaultUnifyExclude().
	Exclude []string
	// Check finds and measures what would be shared and changes nothing
	// (check mode; the Lua option is dry_run).
	Check bool
}

// DefaultUnifyExclude are the configuration and data paths unify never
// shares: whatever makes a guest itself rather than a copy of its
// packages.
func DefaultUnifyExclude() []string {
	return []string{
		"etc/", "home/", "root/", "opt/", "var/", "tmp/",
		"tce/*.lst", "tce/mydata.tgz", "usr/local/etc/",
	}
}

// UnifyResult is what Unify found and did.
type UnifyResult struct {
	// Guests are the guests whose disks were examined.
	Guests []string `lua:"guests"`
	// Skipped are guests left out, with the reason (running, frugal,
	// on another filesystem than the others).
	Skipped map[string]string `lua:"skipped"`
	// Files counts file copies (beyond the first) that are identical to a
	// file of another guest and outside the excluded paths.
	Files int `lua:"files"`
	// Identical is the size of those copies.
	Identical int64 `lua:"identical"`
	// Shareable is the part of Identical in whole host blocks that line
	// up in both images: what block-level sharing can reach at all.
	Shareable int64 `lua:"shareable"`
	// Unaligned is the part of Identical that block sharing cannot reach:
	// file blocks whose position in the two images differ by a
	// non-multiple of the host block size, and partial host blocks.
	Unaligned int64 `lua:"unaligned"`
	// AlreadyShared is Shareable storage that was shared before this run.
	AlreadyShared int64 `lua:"already_shared"`
	// BytesShared is storage this run newly shared: ranges of one image
	// now pointing at the same host blocks as the other's (with Check or
	// where unsupported: what it would share).
	BytesShared int64 `lua:"bytes_shared"`
	// BytesFreed is what the host file system gained, as df sees it: its
	// used space (statfs, after a sync commits the change) before the run
	// minus after. It is less than BytesShared when the host file system
	// keeps a whole extent while any part of it is still referenced (btrfs
	// does: an image written by a plain copy holds extents of up to 128
	// MiB, so sharing a file inside one frees nothing until all of that
	// extent is shared), and can be a little negative (the new references
	// take metadata). Other writers on that file system during the run
	// show in it too. 0 with Check or where unsupported.
	BytesFreed int64 `lua:"bytes_freed"`
	// Differed is storage the kernel refused to share because its bytes
	// were not identical after all (a file changed meanwhile).
	Differed int64 `lua:"differed"`
	// Filesystem is the host filesystem the images live on.
	Filesystem string `lua:"filesystem"`
	// Supported is false when that filesystem cannot share extents.
	Supported bool `lua:"supported"`
	// Check is true when nothing was changed on purpose (check mode).
	Check bool `lua:"dry_run"`
}

// unifyExcluded reports whether the guest path p (relative, slash
// separated, no leading slash) is left alone.
func unifyExcluded(p string, patterns []string) bool {
	for _, pat := range patterns {
		pat = strings.TrimPrefix(pat, "/")
		if dir, ok := strings.CutSuffix(pat, "/"); ok {
			if p == dir || strings.HasPrefix(p, dir+"/") {
				return true
			}
			continue
		}
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
	}
	return false
}

// blockRange is one stretch of identical data in two images that can be
// shared: length bytes at srcOff in the source image and dstOff in the
// destination image, both aligned to the host block size.
type blockRange struct {
	srcOff, dstOff, length int64
}

// extent maps length bytes at logical offset logical of a file to
// physical offset physical of its device (for a file in a guest
// filesystem: a byte offset in the disk image).
type extent struct {
	logical, physical, length int64
}

// alignedRanges pairs two copies of the same file (their extents in their
// own images, data up to size) and returns the stretches that can be
// shared at block granularity bs, plus the bytes that cannot (positions
// that do not line up, partial blocks).
func alignedRanges(src, dst []extent, size, bs int64) (out []blockRange, unaligned int64) {
	find := func(es []extent, l int64) (extent, bool) {
		for _, e := range es { // extents are few per file; linear is fine
			if l >= e.logical && l < e.logical+e.length {
				return e, true
			}
		}
		return extent{}, false
	}
	for l := int64(0); l < size; {
		a, ok1 := find(src, l)
		b, ok2 := find(dst, l)
		if !ok1 || !ok2 { // a hole in one of them: nothing to share here
			next := size
			for _, es := range [][]extent{src, dst} {
				for _, e := range es {
					if e.logical > l && e.logical < next {
						next = e.logical
					}
				}
			}
			l = next
			continue
		}
		run := min(a.logical+a.length-l, b.logical+b.length-l, size-l)
		pa, pb := a.physical+(l-a.logical), b.physical+(l-b.logical)
		l += run
		if (pa-pb)%bs != 0 {
			unaligned += run
			continue
		}
		start := pa + (bs-pa%bs)%bs
		end := (pa + run) / bs * bs
		if end <= start {
			unaligned += run
			continue
		}
		unaligned += run - (end - start)
		shift := start - pa
		if n := len(out); n > 0 && out[n-1].srcOff+out[n-1].length == start && out[n-1].dstOff+out[n-1].length == pb+shift {
			out[n-1].length += end - start
			continue
		}
		out = append(out, blockRange{srcOff: start, dstOff: pb + shift, length: end - start})
	}
	return out, unaligned
}

// Unify (vunify, vhashify) finds files that are identical across guests'
// disks and makes the guests share their storage, so that N guests with
// the same packages take little more host disk than one. A write in one
// guest never shows in another.
//
// How: every guest's root is one ext3/ext4 filesystem inside its own
// image file, so a file in guest A and its copy in guest B live in two
// filesystems, and file-level hardlinks or reflinks between them cannot
// exist. Unify shares at block level instead: it reads each stopped
// guest's disk offline (image.View), hashes every regular file outside
// the excluded paths (DefaultUnifyExclude plus o.Exclude), finds for each
// identical pair the file's data in both images (FIEMAP inside the loop
// mount gives byte offsets in the image), and asks the host filesystem to
// share those ranges of the two image files (FIDEDUPERANGE). The kernel
// compares the bytes itself under its locks and shares them copy-on-write,
// so a later write by either guest gets its own copy: isolation is the
// host filesystem's guarantee, not tinyfarm's.
//
// Trade-offs, measured and stated:
//   - The images must be on a filesystem that shares extents between files
//     (btrfs, or xfs made with reflink=1). On ext4 (FIDEDUPERANGE:
//     "operation not supported") and others Unify measures what it could
//     save and returns an error of kind unsupported naming the remedy;
//     with Check it returns the measurement and Supported=false.
//   - Only whole host blocks (4 KiB) whose positions in the two images
//     line up can be shared. A guest filesystem with 1 KiB blocks (mkfs's
//     default below 512 MiB) places a file at any 1 KiB offset, so a copy
//     at a different position modulo 4 KiB cannot be shared (Unaligned
//     says how much). Disks built from the same inputs have the same
//     layout, which is the common case of a farm.
//   - Running guests are skipped (their disks change under a loop mount;
//     stop them first), as are frugal guests' extra disks and guests whose
//     images are on another filesystem than the first guest's.
//
// A second run finds everything shared already (AlreadyShared) and saves
// nothing more.
func Unify(ctx context.Context, f *farm.Farm, o UnifyOptions) (UnifyResult, error) {
	res := UnifyResult{Skipped: map[string]string{}, Check: o.Check}
	fail := func(err error) (UnifyResult, error) { return res, fmt.Errorf("unify: %w", err) }
	names := o.Guests
	if len(names) == 0 {
		all, err := f.List()
		if err != nil {
			return fail(err)
		}
		for _, d := range all {
			names = append(names, d.Name)
		}
	}
	unlock, err := f.Lock() // no guest starts while its disk is shared
	if err != nil {
		return fail(err)
	}
	defer unlock()
	var disks []unifyDisk
	for _, name := range names {
		d, err := f.Get(name)
		if err != nil {
			return fail(err)
		}
		g := f.GuestOf(d)
		switch {
		case d.Disk == "":
			res.Skipped[name] = "no disk"
		case g.Running(ctx):
			res.Skipped[name] = "running: stop it first (its disk changes under it)"
		default:
			disks = append(disks, unifyDisk{guest: name, path: d.Disk})
		}
	}
	exclude := append(DefaultUnifyExclude(), o.Exclude...)
	if err := unifyDisks(ctx, disks, exclude, &res); err != nil {
		return fail(err)
	}
	return res, nil
}

// unifyDisk is one guest's disk image to unify.
type unifyDisk struct {
	guest, path string
}
