package target

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// DirOptions configures [OpenDir].
type DirOptions struct {
	// AllowDevices lets Apply create character and block device nodes
	// (which needs root). Default false: they are refused with
	// ErrUnsupported. Fifos are always allowed.
	AllowDevices bool
	// NoChown stops Apply from setting owners. Default false: owners are
	// set when the process runs as root (otherwise chown to another user
	// would fail, so it is skipped).
	NoChown bool
	// NoSync skips the fsync of each written file and its directory, for
	// scratch trees that are thrown away (an image's staging tree). Writes
	// stay atomic (temp file + rename). Default false: every write is
	// durable when Apply returns.
	NoSync bool
}

// Dir is a [Target] for a directory on the host. Every operation goes
// through an os.Root, so no name, symlink or hardlink can reach outside the
// directory; an absolute symlink found inside the tree is treated as an
// escape and refused when a path crosses it (the kernel would resolve it
// against the host's root, not the target's).
//
// Dir is offline: it has no Execer, so tcz queues install scripts for first
// boot. It is safe for concurrent use.
type Dir struct {
	root  *os.Root
	path  string
	chown bool
	devs  bool
	sync  bool

	mu    sync.Mutex
	swept map[string]bool // directories swept of stale temporary files
}

// OpenDir opens the existing directory dir as a target. Close it when done.
func OpenDir(dir string, opts DirOptions) (*Dir, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("open target %s: %w", dir, err)
	}
	return &Dir{
		root:  r,
		path:  dir,
		chown: !opts.NoChown && os.Geteuid() == 0,
		devs:  opts.AllowDevices,
		sync:  !opts.NoSync,
	}, nil
}

// Path returns the host directory the target was opened with.
func (d *Dir) Path() string { return d.path }

// Close releases the directory handle.
func (d *Dir) Close() error { return d.root.Close() }

// Caps reports what this Dir can do: setuid always, chown as root, device
// nodes when allowed.
func (d *Dir) Caps() Caps {
	return Caps{Chown: d.chown, Setuid: true, Devices: d.devs}
}

// wrap maps os.Root's escape error to ErrUnsafePath, keeping the original.
func wrap(op, name string, err error) error {
	if err == nil {
		return nil
	}
	if strings.Contains(err.Error(), "path escapes from parent") {
		return fmt.Errorf("%s %s: %w: %w", op, name, ErrUnsafePath, err)
	}
	return fmt.Errorf("%s %s: %w", op, name, err)
}

// Lstat implements [Target].
func (d *Dir) Lstat(ctx context.Context, name string) (Entry, error) {
	n, err := Clean(name)
	if err != nil {
		return Entry{}, err
	}
	fi, err := d.root.Lstat(n)
	if err != nil {
		return Entry{}, wrap("lstat", n, err)
	}
	return d.entry(n, fi)
}

func (d *Dir) entry(n string, fi fs.FileInfo) (Entry, error) {
	e := Entry{Name: n, Mode: fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), ModTime: fi.ModTime()}
	e.Uid, e.Gid, e.Major, e.Minor = sysOwner(fi)
	m := fi.Mode()
	switch {
	case m.IsRegular():
		e.Type, e.Size = TypeRegular, fi.Size()
		e.Major, e.Minor = 0, 0
	case m.IsDir():
		e.Type = TypeDir
		e.Major, e.Minor = 0, 0
	case m&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
		e.Major, e.Minor = 0, 0
		ln, err := d.root.Readlink(n)
		if err != nil {
			return Entry{}, wrap("readlink", n, err)
		}
		e.Linkname = ln
	case m&fs.ModeNamedPipe != 0:
		e.Type = TypeFifo
		e.Major, e.Minor = 0, 0
	case m&fs.ModeCharDevice != 0:
		e.Type = TypeChar
	case m&fs.ModeDevice != 0:
		e.Type = TypeBlock
	default:
		return Entry{}, fmt.Errorf("lstat %s: unsupported file type %v: %w", n, m.Type(), ErrInvalid)
	}
	return e, nil
}

// Open implements [Target].
func (d *Dir) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	n, err := Clean(name)
	if err != nil {
		return nil, err
	}
	f, err := d.root.Open(n)
	if err != nil {
		return nil, wrap("open", n, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, wrap("open", n, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("open %s: not a regular file: %w", n, ErrInvalid)
	}
	return f, nil
}

// ReadDir implements [DirReader].
func (d *Dir) ReadDir(ctx context.Context, name string) ([]Entry, error) {
	n, err := Clean(name)
	if err != nil {
		return nil, err
	}
	f, err := d.root.Open(n)
	if err != nil {
		return nil, wrap("readdir", n, err)
	}
	defer f.Close()
	des, err := f.ReadDir(-1)
	if err != nil {
		return nil, wrap("readdir", n, err)
	}
	out := make([]Entry, 0, len(des))
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			return nil, wrap("readdir", n, err)
		}
		e, err := d.entry(path.Join(n, de.Name()), fi)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (d *Dir) tempName(n string) string {
	d.sweep(path.Dir(n))
	return path.Join(path.Dir(n), fsutil.TempName(path.Base(n)))
}

// sweep removes, once per directory and Dir, the temporary files a writer
// killed before its rename left there (fsutil.StaleTemp), so a rerun after
// a crash leaves no ".tf-*" litter in the guest's tree.
func (d *Dir) sweep(dir string) {
	d.mu.Lock()
	if d.swept == nil {
		d.swept = map[string]bool{}
	}
	done := d.swept[dir]
	d.swept[dir] = true
	d.mu.Unlock()
	if done {
		return
	}
	f, err := d.root.Open(dir)
	if err != nil {
		return
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	for _, name := range names {
		if fsutil.StaleTemp(name) {
			d.root.Remove(path.Join(dir, name))
		}
	}
}

// Apply implements [Target].
func (d *Dir) Apply(ctx context.Context, c Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n, err := Clean(c.Name)
	if err != nil {
		return err
	}
	if n == "." && c.Type != TypeDir {
		return fmt.Errorf("apply %s %q: the root itself: %w", c.Type, c.Name, ErrInvalid)
	}
	if c.Mode&^(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != 0 {
		return fmt.Errorf("apply %s: mode %v has type bits: %w", n, c.Mode, ErrInvalid)
	}
	switch c.Type {
	case TypeRegular:
		return d.writeFile(n, c)
	case TypeDir:
		return d.mkdir(n, c.Entry)
	case TypeSymlink:
		if c.Linkname == "" || strings.IndexByte(c.Linkname, 0) >= 0 {
			return fmt.Errorf("symlink %s: bad target %q: %w", n, c.Linkname, ErrInvalid)
		}
		return d.replace(n, c.Entry, func(tmp string) error { return d.root.Symlink(c.Linkname, tmp) })
	case TypeHardlink:
		old, err := Clean(c.Linkname)
		if err != nil {
			return fmt.Errorf("link %s: %w", n, err)
		}
		return d.replace(n, c.Entry, func(tmp string) error { return d.root.Link(old, tmp) })
	case TypeChar, TypeBlock, TypeFifo:
		if c.Type != TypeFifo && !d.devs {
			return fmt.Errorf("mknod %s: device nodes not allowed on this target: %w", n, ErrUnsupported)
		}
		return d.replace(n, c.Entry, func(tmp string) error { return d.mknod(tmp, c.Entry) })
	case TypeRemove:
		err := d.root.Remove(n)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return wrap("remove", n, err)
		}
		return nil
	}
	return fmt.Errorf("apply %s: unknown type %v: %w", n, c.Type, ErrInvalid)
}

func (d *Dir) checkNotDir(n string) error {
	fi, err := d.root.Lstat(n)
	if err == nil && fi.IsDir() {
		return fmt.Errorf("replace %s: is a directory: %w", n, ErrInvalid)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return wrap("lstat", n, err)
	}
	return nil
}

func (d *Dir) writeFile(n string, c Change) (err error) {
	if err := d.checkNotDir(n); err != nil {
		return err
	}
	mode := c.Mode
	if mode == 0 {
		mode = 0o644
	}
	tmp := d.tempName(n)
	f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return wrap("write", n, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			d.root.Remove(tmp)
		}
	}()
	if c.Body != nil {
		rc, err := c.Body()
		if err != nil {
			return fmt.Errorf("write %s: %w", n, err)
		}
		_, err = io.Copy(f, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("write %s: %w", n, err)
		}
	}
	if d.chown {
		if err := f.Chown(c.Uid, c.Gid); err != nil {
			return wrap("chown", n, err)
		}
	}
	if err := f.Chmod(mode); err != nil { // after chown, which clears setuid
		return wrap("chmod", n, err)
	}
	if d.sync {
		if err := f.Sync(); err != nil {
			return wrap("fsync", n, err)
		}
	}
	if err := f.Close(); err != nil {
		return wrap("close", n, err)
	}
	if !c.ModTime.IsZero() {
		if err := d.root.Chtimes(tmp, c.ModTime, c.ModTime); err != nil {
			return wrap("chtimes", n, err)
		}
	}
	if err := d.root.Rename(tmp, n); err != nil {
		return wrap("rename", n, err)
	}
	d.syncDir(path.Dir(n))
	return nil
}

func (d *Dir) syncDir(n string) {
	if !d.sync {
		return
	}
	if f, err := d.root.Open(n); err == nil {
		f.Sync()
		f.Close()
	}
}

func (d *Dir) mkdir(n string, e Entry) error {
	mode := e.Mode
	if mode == 0 {
		mode = 0o755
	}
	fi, err := d.root.Lstat(n)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("mkdir %s: exists and is not a directory: %w", n, ErrInvalid)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return wrap("mkdir", n, err)
	case err != nil:
		// A new directory is made under a temporary name with its owner
		// and mode, then renamed into place: a run killed in between
		// leaves no 0700 directory that the rerun would keep as it is.
		tmp := d.tempName(n)
		if err := d.root.Mkdir(tmp, 0o700); err != nil {
			return wrap("mkdir", n, err)
		}
		if err := d.setDirAttrs(tmp, n, e, mode); err != nil {
			d.root.Remove(tmp)
			return err
		}
		if err := d.root.Rename(tmp, n); err == nil {
			d.syncDir(path.Dir(n))
			return nil
		}
		d.root.Remove(tmp) // made meanwhile by another writer: set it below
	}
	return d.setDirAttrs(n, n, e, mode)
}

// setDirAttrs gives the directory at p (to be named n) e's owner, mode
// and time.
func (d *Dir) setDirAttrs(p, n string, e Entry, mode fs.FileMode) error {
	if d.chown {
		if err := d.root.Lchown(p, e.Uid, e.Gid); err != nil {
			return wrap("chown", n, err)
		}
	}
	if err := d.root.Chmod(p, mode); err != nil {
		return wrap("chmod", n, err)
	}
	if !e.ModTime.IsZero() {
		if err := d.root.Chtimes(p, e.ModTime, e.ModTime); err != nil {
			return wrap("chtimes", n, err)
		}
	}
	return nil
}

// replace creates a non-regular entry under a temporary name with mk, sets
// its owner and mode, and renames it over n.
func (d *Dir) replace(n string, e Entry, mk func(tmp string) error) error {
	if err := d.checkNotDir(n); err != nil {
		return err
	}
	tmp := d.tempName(n)
	if err := mk(tmp); err != nil {
		return wrap(e.Type.String(), n, err)
	}
	fail := func(err error) error {
		d.root.Remove(tmp)
		return err
	}
	if e.Type != TypeHardlink {
		if d.chown {
			if err := d.root.Lchown(tmp, e.Uid, e.Gid); err != nil {
				return fail(wrap("chown", n, err))
			}
		}
		if e.Type != TypeSymlink {
			mode := e.Mode
			if mode == 0 {
				mode = 0o644
			}
			if err := d.root.Chmod(tmp, mode); err != nil {
				return fail(wrap("chmod", n, err))
			}
		}
	}
	if err := d.root.Rename(tmp, n); err != nil {
		return fail(wrap("rename", n, err))
	}
	d.syncDir(path.Dir(n))
	return nil
}

// Interface guards.
var (
	_ Target    = (*Dir)(nil)
	_ DirReader = (*Dir)(nil)
	_ Capable   = (*Dir)(nil)
)
