//go:build unix

package sshtest

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/pkg/sftp"
)

// rootFS serves SFTP requests from an os.Root: "/" is the root directory and no path escapes it.
type rootFS struct{ root *os.Root }

func rootHandlers(root *os.Root) sftp.Handlers {
	h := &rootFS{root: root}
	return sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h}
}

// rel maps an SFTP path to a path relative to the root.
func rel(p string) string {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

func (h *rootFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	return h.root.Open(rel(r.Filepath))
}

func (h *rootFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return h.OpenFile(r)
}

// OpenFile opens for writing (and reading when asked) with the request's flags.
func (h *rootFS) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	pf := r.Pflags()
	flag := os.O_WRONLY
	if pf.Read {
		flag = os.O_RDWR
	}
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl {
		flag |= os.O_EXCL
	}
	mode := fs.FileMode(0o644)
	if r.AttrFlags().Permissions {
		mode = r.Attributes().FileMode().Perm()
	}
	return h.root.OpenFile(rel(r.Filepath), flag, mode)
}

func (h *rootFS) Filecmd(r *sftp.Request) error {
	p := rel(r.Filepath)
	switch r.Method {
	case "Setstat":
		attrs, flags := r.Attributes(), r.AttrFlags()
		if flags.Permissions {
			if err := h.root.Chmod(p, attrs.FileMode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
				return err
			}
		}
		if flags.Size {
			f, err := h.root.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := f.Truncate(int64(attrs.Size)); err != nil {
				return err
			}
		}
		if flags.UidGid {
			if err := h.root.Lchown(p, int(attrs.UID), int(attrs.GID)); err != nil {
				return err
			}
		}
		if flags.Acmodtime {
			return h.root.Chtimes(p, attrs.AccessTime(), attrs.ModTime())
		}
		return nil
	case "Rename":
		// SFTP v3 rename does not replace an existing target (OpenSSH's behaviour).
		if _, err := h.root.Lstat(rel(r.Target)); err == nil {
			return fs.ErrExist
		}
		return h.root.Rename(p, rel(r.Target))
	case "Rmdir", "Remove":
		return h.root.Remove(p)
	case "Mkdir":
		return h.root.Mkdir(p, 0o755)
	case "Link":
		return h.root.Link(rel(r.Target), p)
	case "Symlink":
		// r.Filepath is the target (the link's content), r.Target the new link.
		return h.root.Symlink(r.Filepath, rel(r.Target))
	}
	return errors.New("unsupported: " + r.Method)
}

// PosixRename replaces the target atomically.
func (h *rootFS) PosixRename(r *sftp.Request) error {
	return h.root.Rename(rel(r.Filepath), rel(r.Target))
}

type listerAt []fs.FileInfo

func (l listerAt) ListAt(dst []fs.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}

func (h *rootFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	p := rel(r.Filepath)
	switch r.Method {
	case "List":
		d, err := h.root.Open(p)
		if err != nil {
			return nil, err
		}
		defer d.Close()
		entries, err := d.Readdir(-1)
		if err != nil {
			return nil, err
		}
		return listerAt(entries), nil
	case "Stat":
		fi, err := h.root.Stat(p)
		if err != nil {
			return nil, err
		}
		return listerAt{fi}, nil
	}
	return nil, errors.New("unsupported: " + r.Method)
}

// Lstat does not follow a final symlink.
func (h *rootFS) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	fi, err := h.root.Lstat(rel(r.Filepath))
	if err != nil {
		return nil, err
	}
	return listerAt{fi}, nil
}

// Readlink returns a symlink's content.
func (h *rootFS) Readlink(p string) (string, error) {
	return h.root.Readlink(rel(p))
}
