package tcz

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zlib"
	"golang.org/x/sync/errgroup"

	squashfslow "github.com/CalebQ42/squashfs/low"
	"github.com/CalebQ42/squashfs/low/inode"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// Limits bounds what an archive may contain. Zero fields take the default.
type Limits struct {
	// MaxEntries caps the number of entries. Default 200000.
	MaxEntries int
	// MaxFileSize caps one regular file's size. Default 1 GiB.
	MaxFileSize int64
	// MaxTotalSize caps the sum of regular file sizes. Default 4 GiB.
	MaxTotalSize int64
	// MaxDepth caps directory nesting. Default 64.
	MaxDepth int
	// AllowDevices accepts character and block device nodes. Default
	// false: an archive holding one is refused with ErrUnsafePath.
	AllowDevices bool
}

func (l Limits) withDefaults() Limits {
	if l.MaxEntries <= 0 {
		l.MaxEntries = 200000
	}
	if l.MaxFileSize <= 0 {
		l.MaxFileSize = 1 << 30
	}
	if l.MaxTotalSize <= 0 {
		l.MaxTotalSize = 4 << 30
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = 64
	}
	return l
}

// Archive is the validated listing of a .tcz (a gzip squashfs 4.0). Every
// entry has passed the safety checks of [ReadArchive]; its content can be
// read with Open.
type Archive struct {
	// Entries lists the archive in tree order (every directory before
	// its children), names relative to the root ("usr/local/bin/x"). The
	// root directory itself is not listed. A second name for an inode
	// already listed is a TypeHardlink whose Linkname is the first name.
	Entries []target.Entry

	ra        io.ReaderAt
	size      int64
	blockSize uint32
	fragStart uint64
	fragCount uint32
	files     map[string]fileData

	// held is content load decompressed and kept (heldBytes in all).
	held      map[string][]byte
	heldBytes int64
	inflaters sync.Pool
	fragMu    sync.Mutex
	fragIdx   uint32
	fragData  []byte // fragment fragIdx, decompressed; nil: none yet
}

type fileData struct {
	blockStart uint64
	sizes      []uint32
	fragInd    uint32
	fragOff    uint32
	size       uint64
}

// OpenArchive opens and validates the .tcz at file. The returned archive
// holds the file open; call Close.
func OpenArchive(file string, lim Limits) (*Archive, io.Closer, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("open archive %s: %w", file, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open archive %s: %w", file, err)
	}
	a, err := ReadArchive(f, fi.Size(), lim)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open archive %s: %w", path.Base(file), err)
	}
	return a, f, nil
}

// ReadArchive reads and validates the squashfs listing in ra (size bytes).
// It refuses, with ErrUnsafePath, any entry that would land outside the
// root: a name that is empty, ".", "..", or holds "/" or NUL; a device node
// unless lim.AllowDevices; a directory reached twice (a hardlinked
// directory, a loop). It refuses with ErrInvalid a malformed or truncated
// image, a compression other than gzip, or one beyond lim. Nothing is
// extracted: callers decide what to write only after the whole listing is
// known to be safe.
func ReadArchive(ra io.ReaderAt, size int64, lim Limits) (a *Archive, err error) {
	lim = lim.withDefaults()
	defer func() {
		if r := recover(); r != nil {
			a, err = nil, fmt.Errorf("corrupt squashfs (%v): %w", r, ErrInvalid)
		}
	}()
	if size < 96 {
		return nil, fmt.Errorf("squashfs: %d bytes, too short: %w", size, ErrInvalid)
	}
	r, err := squashfslow.NewReader(io.NewSectionReader(ra, 0, size))
	if err != nil {
		return nil, fmt.Errorf("squashfs: %v: %w", err, ErrInvalid)
	}
	sb := r.Superblock
	if sb.CompType != squashfslow.ZlibCompression {
		return nil, fmt.Errorf("squashfs: compression %d, Tiny Core needs gzip: %w", sb.CompType, ErrInvalid)
	}
	if sb.Size > uint64(size) {
		return nil, fmt.Errorf("squashfs: truncated: superblock says %d bytes, have %d: %w", sb.Size, size, ErrInvalid)
	}
	if sb.InodeCount > uint32(lim.MaxEntries)+1 {
		return nil, fmt.Errorf("squashfs: %d inodes, limit %d: %w", sb.InodeCount, lim.MaxEntries, ErrInvalid)
	}
	for _, off := range []uint64{sb.InodeTableStart, sb.DirTableStart, sb.IdTableStart} {
		if off >= sb.Size {
			return nil, fmt.Errorf("squashfs: table offset %d beyond image end %d: %w", off, sb.Size, ErrInvalid)
		}
	}
	a = &Archive{ra: ra, size: size, blockSize: sb.BlockSize, fragStart: sb.FragTableStart, fragCount: sb.FragCount, files: map[string]fileData{}}

	type item struct {
		dir   squashfslow.Directory
		name  string
		depth int
	}
	seenDir := map[uint32]bool{r.Root.Inode.Num: true}
	firstName := map[uint32]string{}
	var total int64
	stack := []item{{dir: r.Root, name: "."}}
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		var subdirs []item
		for _, de := range it.dir.Entries {
			if len(a.Entries) >= lim.MaxEntries {
				return nil, fmt.Errorf("squashfs: more than %d entries: %w", lim.MaxEntries, ErrInvalid)
			}
			if err := checkName(de.Name); err != nil {
				return nil, fmt.Errorf("entry %q in %s: %w", de.Name, it.name, err)
			}
			name := path.Join(it.name, de.Name)
			b, err := r.BaseFromEntry(de)
			if err != nil {
				return nil, fmt.Errorf("entry %s: %v: %w", name, err, ErrInvalid)
			}
			in := b.Inode
			e := target.Entry{Name: name, Mode: target.FileModeOf(uint32(in.Perm)), ModTime: time.Unix(int64(in.ModTime), 0)}
			uid, err1 := r.Id(in.UidInd)
			gid, err2 := r.Id(in.GidInd)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("entry %s: owner: %v: %w", name, err, ErrInvalid)
			}
			e.Uid, e.Gid = int(uid), int(gid)
			switch in.Type {
			case inode.Dir, inode.EDir:
				if seenDir[in.Num] {
					return nil, fmt.Errorf("entry %s: directory inode %d reached twice (hardlinked directory or loop): %w", name, in.Num, ErrUnsafePath)
				}
				seenDir[in.Num] = true
				if it.depth+1 > lim.MaxDepth {
					return nil, fmt.Errorf("entry %s: deeper than %d: %w", name, lim.MaxDepth, ErrInvalid)
				}
				d, err := b.ToDir(r)
				if err != nil {
					return nil, fmt.Errorf("entry %s: %v: %w", name, err, ErrInvalid)
				}
				e.Type = target.TypeDir
				subdirs = append(subdirs, item{dir: d, name: name, depth: it.depth + 1})
			case inode.Fil, inode.EFil:
				if first, ok := firstName[in.Num]; ok {
					e = target.Entry{Name: name, Type: target.TypeHardlink, Linkname: first, Mode: e.Mode, Uid: e.Uid, Gid: e.Gid}
					break
				}
				firstName[in.Num] = name
				fd := fileDataOf(in)
				if fd.size > uint64(lim.MaxFileSize) {
					return nil, fmt.Errorf("entry %s: %d bytes, limit %d: %w", name, fd.size, lim.MaxFileSize, ErrInvalid)
				}
				total += int64(fd.size)
				if total > lim.MaxTotalSize {
					return nil, fmt.Errorf("entry %s: archive content over %d bytes: %w", name, lim.MaxTotalSize, ErrInvalid)
				}
				if want := blockCount(fd, a.blockSize); uint64(len(fd.sizes)) != want {
					return nil, fmt.Errorf("entry %s: %d blocks for %d bytes: %w", name, len(fd.sizes), fd.size, ErrInvalid)
				}
				e.Type, e.Size = target.TypeRegular, int64(fd.size)
				a.files[name] = fd
			case inode.Sym, inode.ESym:
				var t []byte
				if s, ok := in.Data.(inode.Symlink); ok {
					t = s.Target
				} else if s, ok := in.Data.(inode.ESymlink); ok {
					t = s.Target
				}
				if len(t) == 0 || len(t) > 4095 || bytes.IndexByte(t, 0) >= 0 {
					return nil, fmt.Errorf("entry %s: bad symlink target %q: %w", name, t, ErrInvalid)
				}
				e.Type, e.Linkname, e.Mode = target.TypeSymlink, string(t), 0o777
			case inode.Char, inode.EChar, inode.Block, inode.EBlock:
				if !lim.AllowDevices {
					return nil, fmt.Errorf("entry %s: device node refused: %w", name, ErrUnsafePath)
				}
				var dev uint32
				if d, ok := in.Data.(inode.Device); ok {
					dev = d.Dev
				} else if d, ok := in.Data.(inode.EDevice); ok {
					dev = d.Dev
				}
				e.Type = target.TypeChar
				if in.Type == inode.Block || in.Type == inode.EBlock {
					e.Type = target.TypeBlock
				}
				e.Major, e.Minor = (dev&0xfff00)>>8, (dev&0xff)|((dev>>12)&0xfff00)
			case inode.Fifo, inode.EFifo:
				e.Type = target.TypeFifo
			case inode.Sock, inode.ESock:
				continue // unsquashfs skips sockets too
			default:
				return nil, fmt.Errorf("entry %s: inode type %d: %w", name, in.Type, ErrInvalid)
			}
			a.Entries = append(a.Entries, e)
		}
		// Reverse so the stack pops them in name order.
		for i := len(subdirs) - 1; i >= 0; i-- {
			stack = append(stack, subdirs[i])
		}
	}
	// A hardlink whose first name is not a regular file cannot happen by
	// construction; a duplicate name can (crafted directory tables).
	seen := make(map[string]bool, len(a.Entries))
	for _, e := range a.Entries {
		if seen[e.Name] {
			return nil, fmt.Errorf("entry %s: listed twice: %w", e.Name, ErrUnsafePath)
		}
		seen[e.Name] = true
	}
	return a, nil
}

func checkName(n string) error {
	switch {
	case n == "" || n == "." || n == "..":
		return fmt.Errorf("name %q: %w", n, ErrUnsafePath)
	case strings.ContainsAny(n, "/\x00"):
		return fmt.Errorf("name %q holds '/' or NUL: %w", n, ErrUnsafePath)
	}
	return nil
}

func fileDataOf(in inode.Inode) fileData {
	switch d := in.Data.(type) {
	case inode.File:
		return fileData{blockStart: uint64(d.BlockStart), sizes: d.BlockSizes, fragInd: d.FragInd, fragOff: d.FragOffset, size: uint64(d.Size)}
	case inode.EFile:
		return fileData{blockStart: d.BlockStart, sizes: d.BlockSizes, fragInd: d.FragInd, fragOff: d.FragOffset, size: d.Size}
	}
	return fileData{}
}

func blockCount(fd fileData, bs uint32) uint64 {
	n := fd.size / uint64(bs)
	if fd.fragInd == 0xFFFFFFFF && fd.size%uint64(bs) != 0 {
		n++
	}
	return n
}

// Open returns the content of the regular file name. The reader fails with
// ErrInvalid if the image is truncated or a block does not decompress to
// its declared size, so a short read never passes for a complete file.
// Content that Install already decompressed and verified is served from
// memory.
func (a *Archive) Open(name string) (io.Reader, error) {
	fd, ok := a.files[name]
	if !ok {
		return nil, fmt.Errorf("open %s: not a regular file in the archive: %w", name, ErrNotFound)
	}
	if b, ok := a.held[name]; ok {
		return bytes.NewReader(b), nil
	}
	return &fileReader{a: a, fd: fd, name: name}, nil
}

// Verify reads every regular file once, so a truncated or corrupt image is
// caught before anything is written.
func (a *Archive) Verify(ctx context.Context) error {
	return a.load(ctx, nil)
}

// load decompresses every regular file once, checking every block (zlib
// checksum, exact size), so a truncated or corrupt image is caught before
// anything is written. Files for which b grants memory are kept (Open then
// serves them without decompressing again); the others are only checked
// and are decompressed again when opened. A nil b keeps nothing. On error
// nothing is kept.
func (a *Archive) load(ctx context.Context, b *budget) (err error) {
	held := map[string][]byte{}
	var taken int64
	defer func() {
		if err != nil {
			b.give(taken)
			return
		}
		a.held, a.heldBytes = held, taken
	}()
	z := a.inflater()
	defer a.putInflater(z)
	for _, e := range a.Entries {
		if e.Type != target.TypeRegular {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fd := a.files[e.Name]
		if !b.take(int64(fd.size)) {
			r := &fileReader{a: a, fd: fd, name: e.Name, z: z}
			if _, err := io.Copy(io.Discard, r); err != nil {
				return err
			}
			continue
		}
		taken += int64(fd.size)
		dst := make([]byte, fd.size)
		if err := a.readInto(ctx, fd, dst, z); err != nil {
			return fmt.Errorf("read %s: %w", e.Name, err)
		}
		held[e.Name] = dst
	}
	return nil
}

// release drops the content load kept and returns its memory to b.
func (a *Archive) release(b *budget) {
	b.give(a.heldBytes)
	a.held, a.heldBytes = nil, 0
}

// budget bounds the decompressed content held in memory between checking
// an archive and writing it. A nil *budget grants nothing. Safe for
// concurrent use.
type budget struct {
	mu   sync.Mutex
	left int64
}

func (b *budget) take(n int64) bool {
	if b == nil {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

func (b *budget) give(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
}

// parallelBlocks is the block count from which readInto spreads a file's
// blocks over several goroutines.
const parallelBlocks = 64

// readInto decompresses the whole file fd into dst (len(dst) == fd.size).
// A large file's blocks are independent, so they are inflated by up to
// GOMAXPROCS goroutines, each into its own part of dst.
func (a *Archive) readInto(ctx context.Context, fd fileData, dst []byte, z *inflater) error {
	bs := uint64(a.blockSize)
	n := len(fd.sizes)
	offs := make([]uint64, n)
	off := fd.blockStart
	for i, raw := range fd.sizes {
		offs[i] = off
		off += uint64(raw &^ (1 << 24))
	}
	blocks := func(z *inflater, from, to int) error {
		for i := from; i < to; i++ {
			lo := uint64(i) * bs
			hi := min(lo+bs, fd.size)
			if err := a.dataBlock(z, offs[i], fd.sizes[i], dst[lo:hi]); err != nil {
				return err
			}
		}
		return nil
	}
	workers := 1
	if n >= parallelBlocks {
		workers = min(runtime.GOMAXPROCS(0), n/(parallelBlocks/2))
	}
	if workers < 2 {
		if err := blocks(z, 0, n); err != nil {
			return err
		}
	} else {
		g, gctx := errgroup.WithContext(ctx)
		per := (n + workers - 1) / workers
		for from := 0; from < n; from += per {
			to := min(from+per, n)
			g.Go(func() error {
				if err := gctx.Err(); err != nil {
					return err
				}
				z := a.inflater()
				defer a.putInflater(z)
				return blocks(z, from, to)
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	done := uint64(n) * bs
	if done >= fd.size {
		return nil
	}
	tail, err := a.fragTail(z, fd, fd.size-done)
	if err != nil {
		return err
	}
	copy(dst[done:], tail)
	return nil
}

type fileReader struct {
	a    *Archive
	fd   fileData
	name string
	z    *inflater // nil: borrowed per block
	blk  int       // next block index; len(sizes) = fragment
	off  uint64
	buf  []byte
	out  []byte // reused block buffer
	done uint64
}

func (f *fileReader) Read(p []byte) (int, error) {
	for len(f.buf) == 0 {
		if f.done >= f.fd.size {
			return 0, io.EOF
		}
		b, err := f.next()
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", f.name, err)
		}
		f.buf = b
	}
	n := copy(p, f.buf)
	f.buf = f.buf[n:]
	f.done += uint64(n)
	return n, nil
}

func (f *fileReader) next() ([]byte, error) {
	z := f.z
	if z == nil {
		z = f.a.inflater()
		defer f.a.putInflater(z)
	}
	bs := uint64(f.a.blockSize)
	remain := f.fd.size - f.done
	if f.blk < len(f.fd.sizes) {
		want := min(bs, remain)
		raw := f.fd.sizes[f.blk]
		if f.blk == 0 {
			f.off = f.fd.blockStart
		}
		f.blk++
		if f.out == nil {
			f.out = make([]byte, bs)
		}
		b := f.out[:want]
		err := f.a.dataBlock(z, f.off, raw, b)
		f.off += uint64(raw &^ (1 << 24))
		return b, err
	}
	if f.blk > len(f.fd.sizes) {
		return nil, fmt.Errorf("data ends %d bytes early: %w", remain, ErrInvalid)
	}
	f.blk++
	return f.a.fragTail(z, f.fd, remain)
}

// fragTail returns the last remain bytes of fd, held in its fragment.
func (a *Archive) fragTail(z *inflater, fd fileData, remain uint64) ([]byte, error) {
	if fd.fragInd == 0xFFFFFFFF {
		return nil, fmt.Errorf("data ends %d bytes early: %w", remain, ErrInvalid)
	}
	blk, err := a.fragment(z, fd.fragInd)
	if err != nil {
		return nil, err
	}
	if uint64(fd.fragOff)+remain > uint64(len(blk)) {
		return nil, fmt.Errorf("fragment %d too short: %w", fd.fragInd, ErrInvalid)
	}
	return blk[fd.fragOff : uint64(fd.fragOff)+remain], nil
}

// fragment returns fragment block i, decompressed. Files sharing a
// fragment are listed together, so the last one is kept: each fragment is
// inflated once, not once per file in it. The returned slice is never
// written to.
func (a *Archive) fragment(z *inflater, i uint32) ([]byte, error) {
	a.fragMu.Lock()
	defer a.fragMu.Unlock()
	if a.fragData != nil && a.fragIdx == i {
		return a.fragData, nil
	}
	start, fsize, err := a.fragEntry(i)
	if err != nil {
		return nil, err
	}
	n := uint64(fsize &^ (1 << 24))
	raw, err := a.rawBlock(z, start, n)
	if err != nil {
		return nil, err
	}
	var out []byte
	if fsize&(1<<24) != 0 {
		out = bytes.Clone(raw)
	} else {
		out = make([]byte, a.blockSize+1)
		m, err := z.inflate(raw, out)
		if err != nil {
			return nil, fmt.Errorf("block at %d: %v: %w", start, err, ErrInvalid)
		}
		out = out[:m]
	}
	if uint64(len(out)) > uint64(a.blockSize) {
		return nil, fmt.Errorf("block at %d: %d bytes, more than a block: %w", start, len(out), ErrInvalid)
	}
	a.fragIdx, a.fragData = i, out
	return out, nil
}

// rawBlock reads n stored bytes at off into z's scratch buffer.
func (a *Archive) rawBlock(z *inflater, off, n uint64) ([]byte, error) {
	if n > uint64(a.blockSize)+64 || off+n > uint64(a.size) || off+n < off {
		return nil, fmt.Errorf("block at %d (%d bytes) outside the image: %w", off, n, ErrInvalid)
	}
	if uint64(cap(z.raw)) < n {
		z.raw = make([]byte, n)
	}
	raw := z.raw[:n]
	if _, err := a.ra.ReadAt(raw, int64(off)); err != nil {
		return nil, fmt.Errorf("block at %d: %v: %w", off, err, ErrInvalid)
	}
	return raw, nil
}

// dataBlock reads the data block stored at off (size word raw) into dst,
// which must come out exactly full: len(dst) is the block's uncompressed
// size.
func (a *Archive) dataBlock(z *inflater, off uint64, raw uint32, dst []byte) error {
	n := uint64(raw &^ (1 << 24))
	if n == 0 { // sparse block
		clear(dst)
		return nil
	}
	b, err := a.rawBlock(z, off, n)
	if err != nil {
		return err
	}
	if raw&(1<<24) != 0 {
		if len(b) != len(dst) {
			return fmt.Errorf("block at %d: %d bytes, want %d: %w", off, len(b), len(dst), ErrInvalid)
		}
		copy(dst, b)
		return nil
	}
	if err := z.inflateExact(b, dst); err != nil {
		return fmt.Errorf("block at %d: %v: %w", off, err, ErrInvalid)
	}
	return nil
}

// inflater is a reusable zlib decompressor with a scratch buffer for the
// stored block. One goroutine uses it at a time.
type inflater struct {
	zr  io.ReadCloser
	src bytes.Reader
	raw []byte
	one [1]byte
}

func (a *Archive) inflater() *inflater {
	if z, ok := a.inflaters.Get().(*inflater); ok {
		return z
	}
	return &inflater{}
}

func (a *Archive) putInflater(z *inflater) { a.inflaters.Put(z) }

func (z *inflater) reset(raw []byte) error {
	z.src.Reset(raw)
	if z.zr == nil {
		zr, err := zlib.NewReader(&z.src)
		if err != nil {
			return err
		}
		z.zr = zr
		return nil
	}
	return z.zr.(zlib.Resetter).Reset(&z.src, nil)
}

// inflate decompresses raw, which must be one complete zlib stream with a
// valid checksum, into out; it reports the size. Output that does not fit
// in out is an error.
func (z *inflater) inflate(raw, out []byte) (int, error) {
	if err := z.reset(raw); err != nil {
		return 0, err
	}
	n, err := io.ReadFull(z.zr, out)
	switch {
	case err == nil:
		return n, fmt.Errorf("more than %d bytes", len(out)-1)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return n, nil // the stream ended, checksum verified
	}
	return n, err
}

// inflateExact decompresses raw into dst, which the stream must fill
// exactly, then checks the stream's end and checksum.
func (z *inflater) inflateExact(raw, dst []byte) error {
	if err := z.reset(raw); err != nil {
		return err
	}
	n, err := io.ReadFull(z.zr, dst)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("%d bytes, want %d", n, len(dst))
		}
		return err
	}
	switch m, err := io.ReadFull(z.zr, z.one[:]); {
	case err == io.EOF:
		return nil
	case err == nil || m > 0:
		return fmt.Errorf("more than %d bytes", len(dst))
	default:
		return err
	}
}

// fragEntry looks up fragment i: the fragment table is an array of uint64
// pointers to metadata blocks of 16-byte entries (512 per block).
func (a *Archive) fragEntry(i uint32) (uint64, uint32, error) {
	if i >= a.fragCount {
		return 0, 0, fmt.Errorf("fragment %d of %d: %w", i, a.fragCount, ErrInvalid)
	}
	var p [8]byte
	if _, err := a.ra.ReadAt(p[:], int64(a.fragStart)+int64(i/512)*8); err != nil {
		return 0, 0, fmt.Errorf("fragment table: %v: %w", err, ErrInvalid)
	}
	md, err := a.metadataBlock(binary.LittleEndian.Uint64(p[:]))
	if err != nil {
		return 0, 0, err
	}
	o := int(i%512) * 16
	if o+16 > len(md) {
		return 0, 0, fmt.Errorf("fragment %d: entry outside table: %w", i, ErrInvalid)
	}
	return binary.LittleEndian.Uint64(md[o:]), binary.LittleEndian.Uint32(md[o+8:]), nil
}

func (a *Archive) metadataBlock(off uint64) ([]byte, error) {
	var h [2]byte
	if off+2 > uint64(a.size) {
		return nil, fmt.Errorf("metadata at %d outside image: %w", off, ErrInvalid)
	}
	if _, err := a.ra.ReadAt(h[:], int64(off)); err != nil {
		return nil, fmt.Errorf("metadata at %d: %v: %w", off, err, ErrInvalid)
	}
	hdr := binary.LittleEndian.Uint16(h[:])
	n := uint64(hdr & 0x7fff)
	if n > 8192 || off+2+n > uint64(a.size) {
		return nil, fmt.Errorf("metadata at %d: bad length %d: %w", off, n, ErrInvalid)
	}
	raw := make([]byte, n)
	if _, err := a.ra.ReadAt(raw, int64(off)+2); err != nil {
		return nil, fmt.Errorf("metadata at %d: %v: %w", off, err, ErrInvalid)
	}
	if hdr&0x8000 != 0 {
		return raw, nil
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("metadata at %d: %v: %w", off, err, ErrInvalid)
	}
	out, err := io.ReadAll(io.LimitReader(zr, 8193))
	if err != nil || len(out) > 8192 {
		return nil, fmt.Errorf("metadata at %d: bad block: %w", off, ErrInvalid)
	}
	return out, nil
}
