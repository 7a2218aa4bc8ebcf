// Package target is "a Tiny Core root somewhere": the small interface that
// tcz.Install/Remove and the persist functions use to read and change a
// Tiny Core filesystem, wherever it lives.
//
// Three kinds of target are planned: a directory on the host ([Dir], confined
// with os.Root), a disk image worked on offline, and a running guest reached
// over SSH/SFTP. All of them implement [Target]; extra abilities are separate
// optional interfaces found by type assertion ([Batcher], [DirReader],
// [Capable], [Execer]). Package-level helpers ([ReadFile], [WriteFile],
// [ApplyAll], [MkdirAll], [CapsOf]) use an optional interface when the
// target has it and fall back to the core methods otherwise.
//
// Names are slash-separated paths relative to the root ("opt/bootlocal.sh").
// A leading "/" is accepted and means the root of the target, never the
// host's root; see [Clean].
package target

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"
)

// Sentinel errors. Every error returned by this package (and by conforming
// targets) wraps one of these or an io/fs error such as fs.ErrNotExist.
// Their class (errkind) gives their Lua kind: ErrUnsafePath and ErrInvalid
// are invalid, ErrUnsupported unsupported.
var (
	// ErrUnsafePath reports a name that would leave the root: "..", a
	// symlink crossing out of the root, a hardlink to outside.
	ErrUnsafePath = errkind.Invalid("unsafe path")
	// ErrInvalid reports a malformed entry (unknown type, bad mode).
	ErrInvalid = errkind.Invalid("invalid entry")
	// ErrUnsupported reports an ability the target does not have (device
	// nodes on a target that refuses them, exec on an offline target).
	ErrUnsupported = errkind.Unsupported("unsupported")
)

// Type is the kind of a filesystem entry.
type Type uint8

// Entry types.
const (
	TypeRegular  Type = iota // a regular file; content from Change.Body
	TypeDir                  // a directory
	TypeSymlink              // a symlink to Entry.Linkname (stored verbatim)
	TypeHardlink             // a hardlink to the existing entry Entry.Linkname (a name inside the root)
	TypeChar                 // a character device (Entry.Major, Entry.Minor)
	TypeBlock                // a block device
	TypeFifo                 // a named pipe
	TypeRemove               // Apply: remove Entry.Name (an empty directory, or any non-directory); absent is not an error
)

var typeNames = [...]string{"file", "dir", "symlink", "hardlink", "char", "block", "fifo", "remove"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", t)
}

// Entry describes one filesystem entry, as read by Lstat or as written by
// Apply.
type Entry struct {
	// Name is the slash-separated path relative to the root. Required.
	Name string
	// Type is the kind of entry. Default TypeRegular.
	Type Type
	// Mode holds the permission bits plus fs.ModeSetuid, fs.ModeSetgid and
	// fs.ModeSticky; type bits are ignored (Type says the kind). Default 0,
	// which Apply turns into 0644 for files and 0755 for directories.
	Mode fs.FileMode
	// Uid and Gid are numeric owners. Apply sets them only when the target
	// can chown (Caps.Chown); default 0 (root).
	Uid, Gid int
	// Linkname is the symlink target (TypeSymlink) or the existing name a
	// hardlink points at (TypeHardlink). Default "".
	Linkname string
	// Size is the content length of a regular file, when known. Lstat
	// fills it; Apply ignores it. Default 0.
	Size int64
	// Major and Minor number a device node. Default 0.
	Major, Minor uint32
	// ModTime is the modification time. Lstat fills it; Apply sets it when
	// non-zero (not on symlinks). Default zero: the time of writing.
	ModTime time.Time
}

// Change is one modification for [Target.Apply]: an entry to create or
// replace, or (TypeRemove) to delete.
type Change struct {
	Entry
	// Body opens the content of a regular file. It is called at most once,
	// and only for TypeRegular. Default nil: an empty file.
	Body func() (io.ReadCloser, error)
}

// Target is a Tiny Core root somewhere. Implementations must confine every
// name to the root (ErrUnsafePath otherwise) and must be safe for use by
// one goroutine at a time.
type Target interface {
	// Lstat describes name without following a final symlink. A missing
	// name gives an error wrapping fs.ErrNotExist.
	Lstat(ctx context.Context, name string) (Entry, error)
	// Open opens the regular file name for reading (final symlinks inside
	// the root are followed).
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Apply makes one change. A regular file is replaced atomically (temp
	// file, fsync, rename): readers see the old or the new content, never
	// a half-written file. A directory that already exists gets its mode
	// and owner updated. Symlinks, hardlinks and device nodes replace any
	// existing non-directory. Parent directories must exist.
	Apply(ctx context.Context, c Change) error
}

// Batcher is an optional bulk path. A target that can take many changes in
// one round trip (an SSH target piping one tar stream into the guest)
// implements it; [ApplyAll] uses it when present. Changes are applied in
// order and have the same meaning as for Apply; a failure may leave a prefix
// of them applied.
type Batcher interface {
	ApplyBatch(ctx context.Context, changes []Change) error
}

// DirReader is an optional ability to list a directory. persist.Backup
// needs it to walk the include list.
type DirReader interface {
	// ReadDir lists the entries of directory name (as Lstat would
	// describe them), sorted by name.
	ReadDir(ctx context.Context, name string) ([]Entry, error)
}

// Caps says what a target can represent faithfully.
type Caps struct {
	// Chown: Apply sets owners. Without it owners are left to the writer.
	Chown bool
	// Setuid: Apply keeps setuid/setgid bits.
	Setuid bool
	// Devices: Apply may create device nodes.
	Devices bool
	// Online: the target is a running system (install scripts, ldconfig
	// and depmod may run now, through Execer); otherwise such work is
	// queued for first boot.
	Online bool
}

// Capable is an optional interface reporting a target's abilities. A target
// without it is assumed to have none of them ([CapsOf]).
type Capable interface {
	Caps() Caps
}

// Execer is an optional ability to run a command inside a running target as
// root. Offline targets do not have it.
type Execer interface {
	// Exec runs argv and returns its combined output. A non-zero exit
	// status is an error.
	Exec(ctx context.Context, argv []string) ([]byte, error)
}

// CapsOf returns t's capabilities, or the zero Caps if t is not [Capable].
func CapsOf(t Target) Caps {
	if c, ok := t.(Capable); ok {
		return c.Caps()
	}
	return Caps{}
}

// Clean turns a user-supplied name into the canonical form every target
// accepts: slash-separated, relative to the root, no "." or ".." elements,
// "." for the root itself. A leading "/" is stripped (it means the target's
// root). A name that climbs above the root with "..", or that contains a
// NUL byte, gives ErrUnsafePath.
func Clean(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("clean %q: NUL byte: %w", name, ErrUnsafePath)
	}
	n := strings.TrimLeft(name, "/")
	if n == "" {
		return ".", nil
	}
	for _, el := range strings.Split(n, "/") {
		if el == ".." {
			return "", fmt.Errorf("clean %q: \"..\" element: %w", name, ErrUnsafePath)
		}
	}
	return path.Clean(n), nil
}

// ReadFile reads the whole regular file name from t.
func ReadFile(ctx context.Context, t Target, name string) ([]byte, error) {
	rc, err := t.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return b, nil
}

// WriteFile atomically replaces name with data, mode perm and owner uid:gid.
func WriteFile(ctx context.Context, t Target, name string, data []byte, perm fs.FileMode, uid, gid int) error {
	return t.Apply(ctx, Change{
		Entry: Entry{Name: name, Type: TypeRegular, Mode: perm, Uid: uid, Gid: gid, Size: int64(len(data))},
		Body:  BytesBody(data),
	})
}

// BytesBody returns a Change.Body that yields data.
func BytesBody(data []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }
}

// ApplyAll applies changes in order, in one batch when t is a [Batcher].
func ApplyAll(ctx context.Context, t Target, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	if b, ok := t.(Batcher); ok {
		return b.ApplyBatch(ctx, changes)
	}
	for _, c := range changes {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := t.Apply(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// Exists reports whether name exists in t (as Lstat sees it).
func Exists(ctx context.Context, t Target, name string) (bool, error) {
	_, err := t.Lstat(ctx, name)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// MkdirOptions are the options of MkdirAll.
type MkdirOptions struct {
	// Check reports what would be created and creates nothing.
	Check bool
	// Uid and Gid own name itself when it is created (parents: root),
	// set as it is made, so no kill leaves it with the wrong owner.
	Uid, Gid int
}

// MkdirAll creates directory name and any missing parents with mode perm
// (owned by root, name by o.Uid:o.Gid). Existing directories are left as
// they are. It reports
// the directories it created (or, with o.Check, would create), parents
// first.
func MkdirAll(ctx context.Context, t Target, name string, perm fs.FileMode, o MkdirOptions) ([]string, error) {
	n, err := Clean(name)
	if err != nil {
		return nil, err
	}
	if n == "." {
		return nil, nil
	}
	var missing []string
	for p := n; p != "."; p = path.Dir(p) {
		e, err := t.Lstat(ctx, p)
		if err == nil {
			if e.Type != TypeDir {
				return nil, fmt.Errorf("mkdir %s: %s is a %s: %w", n, p, e.Type, ErrUnsafePath)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, p)
	}
	var made []string
	for i := len(missing) - 1; i >= 0; i-- {
		if !o.Check {
			e := Entry{Name: missing[i], Type: TypeDir, Mode: perm}
			if i == 0 {
				e.Uid, e.Gid = o.Uid, o.Gid
			}
			if err := t.Apply(ctx, Change{Entry: e}); err != nil {
				return made, err
			}
		}
		made = append(made, missing[i])
	}
	return made, nil
}

// TCEDir returns the name of the tce directory inside t: the target of
// etc/sysconfig/tcedir when that symlink exists (an absolute link is taken
// relative to the target's root), else "tce" (the layout of a frugal data
// disk: tce/, home/, opt/). The result is Clean.
func TCEDir(ctx context.Context, t Target) (string, error) {
	e, err := t.Lstat(ctx, "etc/sysconfig/tcedir")
	switch {
	case err == nil && e.Type == TypeSymlink:
		ln := e.Linkname
		if !strings.HasPrefix(ln, "/") {
			ln = path.Join("etc/sysconfig", ln)
		}
		return Clean(ln)
	case err == nil && e.Type == TypeDir:
		return "etc/sysconfig/tcedir", nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	return "tce", nil
}

// UnixMode is m's permission bits numbered as Unix does (0o7777: setuid
// 0o4000, setgid 0o2000, sticky 0o1000), the form tar, cpio, squashfs
// and chmod use.
func UnixMode(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// FileModeOf converts Unix permission bits (the low 12 bits of v) into an
// fs.FileMode with setuid, setgid and sticky; type bits are ignored.
func FileModeOf(v uint32) fs.FileMode {
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}
