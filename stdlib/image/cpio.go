//go:build linux

package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// newc (SVR4 "070701") format constants.
const (
	newcMagic    = "070701"
	newcCRCMagic = "070702"
	newcHdrLen   = 110
	trailerName  = "TRAILER!!!"
)

// Mode type bits as stored in a cpio header (the st_mode of the file).
const (
	cpioTypeMask = 0o170000
	cpioSock     = 0o140000
	cpioLink     = 0o120000
	cpioReg      = 0o100000
	cpioBlock    = 0o060000
	cpioDir      = 0o040000
	cpioChar     = 0o020000
	cpioFifo     = 0o010000
)

// cpioHeader is one newc entry header.
type cpioHeader struct {
	Name                 string
	Ino                  uint32
	Mode                 uint32 // type and permission bits
	Uid, Gid             int
	Nlink                uint32
	Mtime                int64
	Size                 int64
	DevMajor, DevMinor   uint32
	RdevMajor, RdevMinor uint32
}

// UnpackOptions tunes [Unpack].
type UnpackOptions struct {
	// Devices lets device nodes be created. Default: only when running as
	// root; otherwise a device node is an ErrUnsafePath error (never
	// silently skipped, so a remastered image cannot lose them).
	Devices *bool
	// Limits bound what the archive may hold. Zero fields take defaults.
	Limits Limits
}

// Limits bound a cpio archive being extracted.
type Limits struct {
	// MaxFile is the largest regular file or symlink target. Default 1 GiB.
	MaxFile int64
	// MaxTotal is the most content bytes in all. Default 8 GiB.
	MaxTotal int64
	// MaxEntries is the most entries. Default 1,000,000.
	MaxEntries int
}

func (l Limits) withDefaults() Limits {
	if l.MaxFile <= 0 {
		l.MaxFile = 1 << 30
	}
	if l.MaxTotal <= 0 {
		l.MaxTotal = 8 << 30
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = 1_000_000
	}
	return l
}

// UnpackResult reports an [Unpack].
type UnpackResult struct {
	// Entries is the number of entries extracted.
	Entries int
	// Archives is the number of cpio archives read (a concatenated
	// initramfs such as rootfs + modules holds several).
	Archives int
	// Bytes is the content size written.
	Bytes int64
}

// maxInMemory is the largest core file Unpack reads whole.
const maxInMemory = 64 << 20

// Unpack extracts the initramfs at core (a newc cpio; gzip-compressed or
// not; several archives concatenated, as the kernel accepts them, later
// ones overlaying earlier ones) into dir, which is created if missing.
// It behaves like `cpio -idm` as root: owners (when root), modes with
// setuid/setgid/sticky, symlinks verbatim, hardlinks, fifos, mtimes.
//
// Everything goes through an os.Root on dir, and the archive is refused
// with ErrUnsafePath at the first hostile entry: an absolute name, a ".."
// element, an entry below a symlink or a non-directory (symlink-then-write),
// a hardlink to a name outside the archive, or a device node when device
// nodes are not allowed. Entries before it may have been written.
func Unpack(ctx context.Context, core, dir string, opts UnpackOptions) (UnpackResult, error) {
	return UnpackAll(ctx, []string{core}, dir, opts)
}

// UnpackAll is [Unpack] of several files read as one stream, in order
// (e.g. rootfs64.gz then modules64.gz: what corepure64.gz holds).
func UnpackAll(ctx context.Context, cores []string, dir string, opts UnpackOptions) (UnpackResult, error) {
	name := strings.Join(cores, "+")
	if len(cores) == 0 {
		return UnpackResult{}, fmt.Errorf("unpack: no archive: %w", ErrInvalid)
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var total int64
	regular := true
	for _, c := range cores {
		f, err := os.Open(c)
		if err != nil {
			return UnpackResult{}, fmt.Errorf("unpack %s: %w", c, err)
		}
		files = append(files, f)
		fi, err := f.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			regular = false
		} else {
			total += fi.Size()
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return UnpackResult{}, fmt.Errorf("unpack %s: %w", name, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return UnpackResult{}, fmt.Errorf("unpack %s: %w", name, err)
	}
	defer root.Close()
	// A core of usual size is read whole: inflating from memory is
	// faster (see readStream).
	var r io.Reader
	if regular && total <= maxInMemory {
		b := make([]byte, 0, total)
		for _, f := range files {
			var err error
			if b, err = appendFile(b, f); err != nil {
				return UnpackResult{}, fmt.Errorf("unpack %s: %w", f.Name(), err)
			}
		}
		r = bytes.NewReader(b)
	} else {
		rs := make([]io.Reader, len(files))
		for i, f := range files {
			rs[i] = f
		}
		r = io.MultiReader(rs...)
	}
	res, err := extract(ctx, r, root, opts)
	if err != nil {
		return res, fmt.Errorf("unpack %s: %w", name, err)
	}
	return res, nil
}

// appendFile appends f's remaining content to b.
func appendFile(b []byte, f *os.File) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := f.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// extractor writes entries into root. Directories, symlinks and links are
// made in archive order by the reading goroutine; regular file contents
// are written by a bounded pool of workers (the concurrent part).
type extractor struct {
	ctx     context.Context
	root    *os.Root
	chown   bool
	devices bool
	lim     Limits

	kinds   map[string]uint32    // type bits of every name extracted so far
	links   map[[3]uint32]string // hardlink key -> first name
	pending map[string]chan struct{}
	dirs    []dirTime
	g       *errgroup.Group
	total   int64
	res     UnpackResult
	mu      sync.Mutex
}

type dirTime struct {
	name string
	t    time.Time
}

func extract(ctx context.Context, r io.Reader, root *os.Root, opts UnpackOptions) (UnpackResult, error) {
	devices := os.Geteuid() == 0
	if opts.Devices != nil {
		devices = *opts.Devices
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(2, runtime.GOMAXPROCS(0)))
	x := &extractor{
		ctx: gctx, root: root, chown: os.Geteuid() == 0, devices: devices, lim: opts.Limits.withDefaults(),
		kinds: map[string]uint32{".": cpioDir}, links: map[[3]uint32]string{}, pending: map[string]chan struct{}{}, g: g,
	}
	err := readStream(gctx, r, x.lim, func(h cpioHeader, data []byte) error {
		if h.Name == "" {
			x.res.Archives++
			return nil
		}
		return x.entry(h, data)
	})
	werr := g.Wait()
	if err == nil {
		err = werr
	}
	if err != nil {
		return x.res, err
	}
	// Directory times last: creating children changed them.
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		if err := root.Chtimes(d.name, d.t, d.t); err != nil {
			return x.res, fmt.Errorf("chtimes %s: %w", d.name, err)
		}
	}
	return x.res, nil
}

// readStream calls fn for every entry of every archive in r, with the
// content of regular files and symlinks; at the end of each archive it
// calls fn with an empty name. It handles gzip members and raw archives,
// concatenated, with zero padding between them. A *bytes.Reader is read
// in place (gzip inflates faster from memory than through a bufio.Reader).
func readStream(ctx context.Context, r io.Reader, lim Limits, fn func(cpioHeader, []byte) error) error {
	var src streamSource
	if mr, ok := r.(*bytes.Reader); ok {
		src = memSource{mr}
	} else {
		src = bufSource{bufio.NewReaderSize(r, 256<<10)}
	}
	entries := 0
	var total int64
	for {
		if err := src.skipZeros(); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		magic, err := src.peek(6)
		if err != nil && len(magic) < 2 {
			return fmt.Errorf("read archive: %v: %w", err, ErrInvalid)
		}
		switch {
		case magic[0] == 0x1f && magic[1] == 0x8b:
			zr, err := kgzip.NewReader(src.gzipInput()) // inflates faster than compress/gzip
			if err != nil {
				return fmt.Errorf("gzip: %v: %w", err, ErrInvalid)
			}
			zr.Multistream(false)
			// Inflate ahead in another goroutine: the next chunk is
			// decompressed while entries of this one are written.
			pf := newPrefetcher(zr, 256<<10, 3)
			zb := bufio.NewReaderSize(pf, 256<<10)
			err = func() error {
				defer pf.stop()
				for {
					if err := skipZeros(zb); err == io.EOF {
						return nil
					} else if err != nil {
						return fmt.Errorf("gzip: %v: %w", err, ErrInvalid)
					}
					if err := readArchive(ctx, zb, lim, &entries, &total, fn); err != nil {
						return err
					}
				}
			}()
			if err != nil {
				return err
			}
		case len(magic) == 6 && (string(magic) == newcMagic || string(magic) == newcCRCMagic):
			if err := src.raw(func(br *bufio.Reader) error { return readArchive(ctx, br, lim, &entries, &total, fn) }); err != nil {
				return err
			}
		case len(magic) >= 6 && string(magic[:6]) == "070707":
			return fmt.Errorf("odc (070707) cpio: only newc is supported: %w", ErrInvalid)
		default:
			return fmt.Errorf("unknown archive format (magic %x; want newc cpio, optionally gzip): %w", magic, ErrInvalid)
		}
	}
}

// prefetcher reads r ahead, in chunks, in its own goroutine, up to depth
// chunks ahead of Read. Call stop when done (it waits for the goroutine);
// r must not be used by anyone else until then.
type prefetcher struct {
	chunks chan []byte // read chunks; closed after err is set
	free   chan []byte // buffers to read into
	quit   chan struct{}
	done   chan struct{}
	err    error // what ended r (io.EOF at its end)
	cur    []byte
	buf    []byte // the buffer cur lies in
}

func newPrefetcher(r io.Reader, size, depth int) *prefetcher {
	p := &prefetcher{chunks: make(chan []byte, depth), free: make(chan []byte, depth+1), quit: make(chan struct{}), done: make(chan struct{})}
	for range depth + 1 {
		p.free <- make([]byte, size)
	}
	go func() {
		defer close(p.done)
		defer close(p.chunks)
		for {
			var buf []byte
			select {
			case buf = <-p.free:
			case <-p.quit:
				return
			}
			// Filled by hand, not io.ReadFull: its short-read
			// ErrUnexpectedEOF would hide r's own (a truncated gzip).
			n := 0
			var err error
			for n < len(buf) && err == nil {
				var k int
				k, err = r.Read(buf[n:])
				n += k
			}
			if n > 0 {
				select {
				case p.chunks <- buf[:n]:
				case <-p.quit:
					return
				}
			}
			if err != nil {
				p.err = err
				return
			}
		}
	}()
	return p
}

func (p *prefetcher) Read(b []byte) (int, error) {
	for len(p.cur) == 0 {
		if p.buf != nil {
			p.free <- p.buf[:cap(p.buf)] // never blocks: free holds them all
			p.buf = nil
		}
		c, ok := <-p.chunks
		if !ok {
			if p.err == nil {
				return 0, io.ErrClosedPipe
			}
			return 0, p.err
		}
		p.cur, p.buf = c, c
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

func (p *prefetcher) stop() {
	close(p.quit)
	<-p.done
}

// streamSource is readStream's input: buffered (a file) or in memory.
type streamSource interface {
	skipZeros() error
	peek(n int) ([]byte, error)
	// gzipInput is what a gzip member is read from; gzip reads no more
	// than the member from it (it is an io.ByteReader).
	gzipInput() io.Reader
	// raw runs fn on a bufio.Reader positioned at an uncompressed
	// archive, then leaves the source just after what fn consumed.
	raw(fn func(*bufio.Reader) error) error
}

type bufSource struct{ br *bufio.Reader }

func (b bufSource) skipZeros() error                       { return skipZeros(b.br) }
func (b bufSource) peek(n int) ([]byte, error)             { return b.br.Peek(n) }
func (b bufSource) gzipInput() io.Reader                   { return b.br }
func (b bufSource) raw(fn func(*bufio.Reader) error) error { return fn(b.br) }

type memSource struct{ r *bytes.Reader }

func (m memSource) skipZeros() error {
	for {
		c, err := m.r.ReadByte()
		if err != nil {
			return err
		}
		if c != 0 {
			return m.r.UnreadByte()
		}
	}
}

func (m memSource) peek(n int) ([]byte, error) {
	b := make([]byte, n)
	k, err := io.ReadFull(m.r, b)
	if _, serr := m.r.Seek(int64(-k), io.SeekCurrent); serr != nil {
		return nil, serr
	}
	return b[:k], err
}

func (m memSource) gzipInput() io.Reader { return m.r }

func (m memSource) raw(fn func(*bufio.Reader) error) error {
	br := bufio.NewReaderSize(m.r, 256<<10)
	err := fn(br)
	if _, serr := m.r.Seek(int64(-br.Buffered()), io.SeekCurrent); err == nil {
		err = serr
	}
	return err
}

func skipZeros(br *bufio.Reader) error {
	for {
		b, err := br.ReadByte()
		if err != nil {
			return err
		}
		if b != 0 {
			return br.UnreadByte()
		}
	}
}

func readArchive(ctx context.Context, br *bufio.Reader, lim Limits, entries *int, total *int64, fn func(cpioHeader, []byte) error) error {
	var hdr [newcHdrLen]byte
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return fmt.Errorf("cpio header: %v: %w", err, ErrInvalid)
		}
		h, nameLen, err := parseHeader(hdr[:])
		if err != nil {
			return err
		}
		if nameLen < 1 || nameLen > 4096 {
			return fmt.Errorf("cpio: name length %d: %w", nameLen, ErrInvalid)
		}
		name := make([]byte, nameLen+pad4(newcHdrLen+nameLen))
		if _, err := io.ReadFull(br, name); err != nil {
			return fmt.Errorf("cpio name: %v: %w", err, ErrInvalid)
		}
		if name[nameLen-1] != 0 || bytes.IndexByte(name[:nameLen-1], 0) >= 0 {
			return fmt.Errorf("cpio: name not NUL-terminated: %w", ErrInvalid)
		}
		h.Name = string(name[:nameLen-1])
		if h.Name == trailerName {
			return fn(cpioHeader{}, nil)
		}
		*entries++
		if *entries > lim.MaxEntries {
			return fmt.Errorf("cpio: more than %d entries: %w", lim.MaxEntries, ErrInvalid)
		}
		if h.Size > lim.MaxFile {
			return fmt.Errorf("cpio %s: %d bytes, over the %d limit: %w", h.Name, h.Size, lim.MaxFile, ErrInvalid)
		}
		*total += h.Size
		if *total > lim.MaxTotal {
			return fmt.Errorf("cpio: over %d content bytes: %w", lim.MaxTotal, ErrInvalid)
		}
		data := make([]byte, h.Size)
		if _, err := io.ReadFull(br, data); err != nil {
			return fmt.Errorf("cpio %s: content: %v: %w", h.Name, err, ErrInvalid)
		}
		if p := pad4(int(h.Size)); p > 0 {
			if _, err := br.Discard(p); err != nil {
				return fmt.Errorf("cpio %s: padding: %v: %w", h.Name, err, ErrInvalid)
			}
		}
		if err := fn(h, data); err != nil {
			return err
		}
	}
}

func pad4(n int) int { return (4 - n%4) % 4 }

func parseHeader(b []byte) (cpioHeader, int, error) {
	m := string(b[:6])
	if m != newcMagic && m != newcCRCMagic {
		return cpioHeader{}, 0, fmt.Errorf("cpio: bad magic %q: %w", m, ErrInvalid)
	}
	var f [13]uint32
	for i := range f {
		v, err := strconv.ParseUint(string(b[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			return cpioHeader{}, 0, fmt.Errorf("cpio: bad header field %q: %w", b[6+8*i:14+8*i], ErrInvalid)
		}
		f[i] = uint32(v)
	}
	return cpioHeader{
		Ino: f[0], Mode: f[1], Uid: int(f[2]), Gid: int(f[3]), Nlink: f[4], Mtime: int64(f[5]), Size: int64(f[6]),
		DevMajor: f[7], DevMinor: f[8], RdevMajor: f[9], RdevMinor: f[10],
	}, int(f[11]), nil
}

// cleanName checks an archive name and returns it relative to the root
// ("." for the root itself).
func cleanName(n string) (string, error) {
	if strings.HasPrefix(n, "/") {
		return "", fmt.Errorf("entry %q: absolute name: %w", n, ErrUnsafePath)
	}
	for _, el := range strings.Split(n, "/") {
		if el == ".." {
			return "", fmt.Errorf("entry %q: \"..\" element: %w", n, ErrUnsafePath)
		}
	}
	c := path.Clean(n)
	if c == "" {
		c = "."
	}
	return c, nil
}

// wait blocks until no worker is writing name.
func (x *extractor) wait(name string) {
	x.mu.Lock()
	ch := x.pending[name]
	x.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// parents checks that every parent of n is a directory (never a symlink),
// creating missing ones like cpio -d.
func (x *extractor) parents(n string) error {
	dir := path.Dir(n)
	if dir == "." {
		return nil
	}
	if k, ok := x.kinds[dir]; ok {
		if k != cpioDir {
			return fmt.Errorf("entry %q: parent %s is not a directory (symlink-then-write): %w", n, dir, ErrUnsafePath)
		}
		return nil
	}
	if err := x.parents(dir); err != nil {
		return err
	}
	fi, err := x.root.Lstat(dir)
	switch {
	case err == nil && fi.IsDir():
	case err == nil:
		return fmt.Errorf("entry %q: parent %s is a %v, not a directory: %w", n, dir, fi.Mode().Type(), ErrUnsafePath)
	case errors.Is(err, fs.ErrNotExist):
		if err := x.root.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
	default:
		return fmt.Errorf("lstat %s: %w", dir, err)
	}
	x.kinds[dir] = cpioDir
	return nil
}

// clear removes an existing non-directory at n (a later archive overlays
// an earlier one); an existing directory is refused unless t is a dir.
func (x *extractor) clear(n string, t uint32) error {
	fi, err := x.root.Lstat(n)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lstat %s: %w", n, err)
	}
	if fi.IsDir() {
		if t == cpioDir {
			return nil
		}
		if err := x.root.Remove(n); err != nil {
			return fmt.Errorf("replace directory %s: %w", n, err)
		}
		return nil
	}
	if err := x.root.Remove(n); err != nil {
		return fmt.Errorf("replace %s: %w", n, err)
	}
	return nil
}

func (x *extractor) entry(h cpioHeader, data []byte) error {
	n, err := cleanName(h.Name)
	if err != nil {
		return err
	}
	t := h.Mode & cpioTypeMask
	if n == "." {
		if t != cpioDir {
			return fmt.Errorf("entry %q: the root must be a directory: %w", h.Name, ErrUnsafePath)
		}
		x.res.Entries++
		return nil // the root's own mode and owner are the caller's
	}
	if err := x.parents(n); err != nil {
		return err
	}
	x.wait(n)
	switch t {
	case cpioDir, cpioReg, cpioLink, cpioFifo:
	case cpioChar, cpioBlock:
		if !x.devices {
			return fmt.Errorf("entry %q: device node not allowed (not root): %w", h.Name, ErrUnsafePath)
		}
	case cpioSock:
		return fmt.Errorf("entry %q: socket: %w", h.Name, ErrInvalid)
	default:
		return fmt.Errorf("entry %q: unknown type %o: %w", h.Name, t, ErrInvalid)
	}
	if err := x.clear(n, t); err != nil {
		return err
	}
	x.kinds[n] = t
	x.res.Entries++
	mtime := time.Unix(h.Mtime, 0)
	switch t {
	case cpioDir:
		if err := x.root.Mkdir(n, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("mkdir %s: %w", n, err)
		}
		if err := x.owner(n, h); err != nil {
			return err
		}
		if err := x.root.Chmod(n, target.FileModeOf(h.Mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", n, err)
		}
		x.dirs = append(x.dirs, dirTime{n, mtime})
	case cpioLink:
		if len(data) == 0 || bytes.IndexByte(data, 0) >= 0 {
			return fmt.Errorf("entry %q: bad symlink target: %w", h.Name, ErrInvalid)
		}
		if err := x.root.Symlink(string(data), n); err != nil {
			return fmt.Errorf("symlink %s: %w", n, err)
		}
		if err := x.owner(n, h); err != nil {
			return err
		}
	case cpioFifo, cpioChar, cpioBlock:
		if err := x.mknod(n, h); err != nil {
			return err
		}
		if err := x.owner(n, h); err != nil {
			return err
		}
		if err := x.root.Chmod(n, target.FileModeOf(h.Mode)); err != nil {
			return fmt.Errorf("chmod %s: %w", n, err)
		}
	case cpioReg:
		if h.Nlink > 1 {
			key := [3]uint32{h.Ino, h.DevMajor, h.DevMinor}
			if first, ok := x.links[key]; ok {
				x.wait(first)
				if err := x.root.Link(first, n); err != nil {
					return fmt.Errorf("link %s: %w", n, err)
				}
				if len(data) == 0 {
					return nil
				}
				// Data on a later link (GNU cpio writes it on the last):
				// fill the shared inode.
			} else {
				x.links[key] = n
			}
		}
		x.res.Bytes += int64(len(data))
		done := make(chan struct{})
		x.mu.Lock()
		x.pending[n] = done
		x.mu.Unlock()
		x.g.Go(func() error {
			defer func() {
				x.mu.Lock()
				delete(x.pending, n)
				x.mu.Unlock()
				close(done)
			}()
			return x.writeFile(n, h, data, mtime)
		})
	}
	if t != cpioDir && t != cpioLink && t != cpioReg {
		if err := x.root.Chtimes(n, mtime, mtime); err != nil {
			return fmt.Errorf("chtimes %s: %w", n, err)
		}
	}
	return nil
}

func (x *extractor) writeFile(n string, h cpioHeader, data []byte, mtime time.Time) error {
	if err := x.ctx.Err(); err != nil {
		return err
	}
	f, err := x.root.OpenFile(n, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", n, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", n, err)
	}
	if x.chown {
		if err := f.Chown(h.Uid, h.Gid); err != nil {
			f.Close()
			return fmt.Errorf("chown %s: %w", n, err)
		}
	}
	if err := f.Chmod(target.FileModeOf(h.Mode)); err != nil { // after chown, which clears setuid
		f.Close()
		return fmt.Errorf("chmod %s: %w", n, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", n, err)
	}
	if err := x.root.Chtimes(n, mtime, mtime); err != nil {
		return fmt.Errorf("chtimes %s: %w", n, err)
	}
	return nil
}

func (x *extractor) owner(n string, h cpioHeader) error {
	if !x.chown {
		return nil
	}
	if err := x.root.Lchown(n, h.Uid, h.Gid); err != nil {
		return fmt.Errorf("chown %s: %w", n, err)
	}
	return nil
}

func (x *extractor) mknod(n string, h cpioHeader) error {
	pf, err := x.root.Open(path.Dir(n))
	if err != nil {
		return fmt.Errorf("mknod %s: %w", n, err)
	}
	defer pf.Close()
	var mode uint32
	switch h.Mode & cpioTypeMask {
	case cpioChar:
		mode = unix.S_IFCHR
	case cpioBlock:
		mode = unix.S_IFBLK
	default:
		mode = unix.S_IFIFO
	}
	if err := fsutil.Mknodat(pf, path.Base(n), mode|0o600, unix.Mkdev(h.RdevMajor, h.RdevMinor)); err != nil {
		return fmt.Errorf("mknod %s: %w", n, err)
	}
	return nil
}

// PackOptions tunes [Pack].
type PackOptions struct {
	// Mtime, when non-zero, is written as every entry's modification time
	// (Unix seconds), so the same tree always packs to the same bytes.
	// Default 0: each file's own mtime.
	Mtime int64
	// Level is the gzip level, 1..9. Default 6.
	Level int
	// Check computes whether out would change and writes nothing.
	Check bool
}

// PackResult reports a [Pack].
type PackResult struct {
	// Changed is true when out was (would be) written: it did not exist or
	// its content differed.
	Changed bool
	// Entries is the number of entries packed (the root included).
	Entries int
	// Size is the compressed size.
	Size int64
}

// Pack writes the tree at dir as a gzip-compressed newc cpio to out, the
// way `find . | sort | cpio -o -H newc | gzip` would but reproducibly:
// entries sorted by name (parents first), inode numbers assigned in that
// order, device numbers zeroed, hardlinks kept (content on the first
// name), and with Mtime every time fixed. Owners and modes (setuid
// included) come from the tree. out is replaced atomically, and only when
// its content differs.
func Pack(ctx context.Context, dir, out string, opts PackOptions) (PackResult, error) {
	var res PackResult
	root, err := os.OpenRoot(dir)
	if err != nil {
		return res, fmt.Errorf("pack %s: %w", dir, err)
	}
	defer root.Close()
	level := opts.Level
	if level == 0 {
		level = gzip.DefaultCompression
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		return res, fmt.Errorf("pack %s: %w", dir, err)
	}
	n, err := writeCpio(ctx, root, zw, opts.Mtime)
	if err != nil {
		return res, fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := zw.Close(); err != nil {
		return res, fmt.Errorf("pack %s: %w", dir, err)
	}
	res.Entries, res.Size = n, int64(buf.Len())
	old, err := os.ReadFile(out)
	if err == nil && bytes.Equal(old, buf.Bytes()) {
		return res, nil
	}
	res.Changed = true
	if opts.Check {
		return res, nil
	}
	if err := writeAtomic(out, buf.Bytes(), 0o644); err != nil {
		return res, fmt.Errorf("pack %s: %w", dir, err)
	}
	return res, nil
}

// writeCpio writes every entry of root, sorted, then the trailer.
func writeCpio(ctx context.Context, root *os.Root, w io.Writer, mtime int64) (int, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	var names []string
	err := fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return 0, err
	}
	// WalkDir visits in lexical order within each directory, parents
	// first: that is the sorted order cpio needs (and it is stable).
	type key struct{ dev, ino uint64 }
	seen := map[key]uint32{}
	ino := uint32(0)
	var off int64
	write := func(b []byte) error {
		_, err := bw.Write(b)
		off += int64(len(b))
		return err
	}
	for _, p := range names {
		fi, err := root.Lstat(p)
		if err != nil {
			return 0, err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return 0, fmt.Errorf("%s: no stat data", p)
		}
		h := cpioHeader{Name: p, Uid: int(st.Uid), Gid: int(st.Gid), Nlink: 1, Mtime: st.Mtim.Sec, Mode: st.Mode}
		if mtime != 0 {
			h.Mtime = mtime
		}
		var data []byte
		switch st.Mode & cpioTypeMask {
		case cpioDir:
			h.Nlink = 2
		case cpioLink:
			ln, err := root.Readlink(p)
			if err != nil {
				return 0, err
			}
			data = []byte(ln)
		case cpioReg:
			k := key{uint64(st.Dev), st.Ino}
			if st.Nlink > 1 {
				h.Nlink = uint32(st.Nlink)
				if first, ok := seen[k]; ok {
					h.Ino = first
					break // content only on the first name
				}
			}
			data, err = readRootFile(root, p)
			if err != nil {
				return 0, err
			}
		case cpioChar, cpioBlock:
			h.RdevMajor, h.RdevMinor = unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
		case cpioFifo:
		default:
			return 0, fmt.Errorf("%s: unsupported file type %o: %w", p, st.Mode&cpioTypeMask, ErrInvalid)
		}
		if h.Ino == 0 {
			ino++
			h.Ino = ino
			if st.Mode&cpioTypeMask == cpioReg && st.Nlink > 1 {
				seen[key{uint64(st.Dev), st.Ino}] = ino
			}
		}
		h.Size = int64(len(data))
		if err := write(marshalHeader(h)); err != nil {
			return 0, err
		}
		if err := write(data); err != nil {
			return 0, err
		}
		if err := write(make([]byte, pad4(len(data)))); err != nil {
			return 0, err
		}
	}
	if err := write(marshalHeader(cpioHeader{Name: trailerName, Nlink: 1})); err != nil {
		return 0, err
	}
	// Pad the archive to a 512-byte block, as GNU cpio does.
	if r := off % 512; r != 0 {
		if err := write(make([]byte, 512-r)); err != nil {
			return 0, err
		}
	}
	return len(names), bw.Flush()
}

func marshalHeader(h cpioHeader) []byte {
	var b bytes.Buffer
	b.WriteString(newcMagic)
	for _, v := range []uint32{h.Ino, h.Mode, uint32(h.Uid), uint32(h.Gid), h.Nlink, uint32(h.Mtime), uint32(h.Size),
		h.DevMajor, h.DevMinor, h.RdevMajor, h.RdevMinor, uint32(len(h.Name) + 1), 0} {
		fmt.Fprintf(&b, "%08x", v)
	}
	b.WriteString(h.Name)
	b.WriteByte(0)
	b.Write(make([]byte, pad4(newcHdrLen+len(h.Name)+1)))
	return b.Bytes()
}

func readRootFile(root *os.Root, p string) ([]byte, error) {
	f, err := root.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}
