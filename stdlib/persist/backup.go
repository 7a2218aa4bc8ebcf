package persist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// BackupOptions tunes [Backup].
type BackupOptions struct {
	// Safe first keeps the previous backup as <Name>bk.tgz (filetool.sh -s
	// or the "safebackup" boot code). Default false.
	Safe bool
	// Name is the backup's base name (the "mydata=" boot code). Default
	// "mydata".
	Name string
	// Dir is where the backup goes inside the target. Default: the tce
	// directory (target.TCEDir), as filetool.sh does without a backup
	// device.
	Dir string
	// Check computes the result and writes nothing. Default false.
	Check bool
}

// BackupResult reports a Backup.
type BackupResult struct {
	// Changed is always true for a backup that ran (the archive is new).
	Changed bool
	// File is the backup's name in the target ("tce/mydata.tgz").
	File string
	// Entries lists the names archived, in order.
	Entries []string
	// Skipped lists include-list entries that do not exist.
	Skipped []string
	// Bytes is the size of the compressed archive (0 in check mode).
	Bytes int64
}

// ExcludeMatch reports whether busybox tar's -X pattern excludes name (a
// path relative to /, as listed in .filetool.lst): a pattern starting with
// "/" is matched against the whole name; any other pattern against every
// suffix of name that starts at a path component. Matching is fnmatch with
// FNM_PATHNAME|FNM_LEADING_DIR: '*' does not cross '/', and a match of a
// leading directory excludes everything below it.
func ExcludeMatch(pattern, name string) bool {
	pattern = strings.TrimRight(pattern, "\r")
	if pattern == "" {
		return false
	}
	if pattern[0] == '/' {
		return leadingDirMatch(pattern, name)
	}
	for i := 0; i < len(name); i++ {
		if (i == 0 || name[i-1] == '/') && name[i] != '/' && leadingDirMatch(pattern, name[i:]) {
			return true
		}
	}
	return false
}

func leadingDirMatch(pattern, s string) bool {
	pattern = strings.ReplaceAll(pattern, "[!", "[^")
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '/' {
			if ok, _ := path.Match(pattern, s[:i]); ok {
				return true
			}
		}
	}
	return false
}

func readLines(ctx context.Context, t target.Target, name string) ([]string, bool, error) {
	b, err := target.ReadFile(ctx, t, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			out = append(out, l)
		}
	}
	return out, true, nil
}

// Backup writes <Dir>/<Name>.tgz like Tiny Core's `filetool.sh -b`: a
// gzipped tar of the entries in opt/.filetool.lst (default "opt" and
// "home" when the file is missing), recursively, minus what
// opt/.xfiletool.lst excludes ([ExcludeMatch]). Names in the archive are
// relative to / ("home/tc/.ashrc"), so `tar -C / -zxf` restores them.
// Missing include entries are skipped and reported (busybox tar would fail).
// The archive is written atomically. The target must be a
// target.DirReader.
func Backup(ctx context.Context, t target.Target, opts BackupOptions) (BackupResult, error) {
	var res BackupResult
	dr, ok := t.(target.DirReader)
	if !ok {
		return res, fmt.Errorf("persist backup: target cannot list directories: %w", target.ErrUnsupported)
	}
	name := opts.Name
	if name == "" {
		name = "mydata"
	}
	if !idRE.MatchString(name) {
		return res, fmt.Errorf("persist backup: name %q: %w", name, ErrInvalid)
	}
	dir := opts.Dir
	if dir == "" {
		var err error
		if dir, err = target.TCEDir(ctx, t); err != nil {
			return res, fmt.Errorf("persist backup: %w", err)
		}
	}
	dir, err := target.Clean(dir)
	if err != nil {
		return res, fmt.Errorf("persist backup: %w", err)
	}
	res.File = path.Join(dir, name+".tgz")
	include, found, err := readLines(ctx, t, "opt/.filetool.lst")
	if err != nil {
		return res, fmt.Errorf("persist backup: %w", err)
	}
	if !found {
		include = []string{"opt", "home"}
	}
	exclude, _, err := readLines(ctx, t, "opt/.xfiletool.lst")
	if err != nil {
		return res, fmt.Errorf("persist backup: %w", err)
	}
	excluded := func(n string) bool {
		for _, p := range exclude {
			if ExcludeMatch(p, n) {
				return true
			}
		}
		return false
	}
	// Collect first (check mode needs the list; the archive is small).
	var entries []target.Entry
	seen := map[string]bool{}
	var walk func(e target.Entry) error
	walk = func(e target.Entry) error {
		if seen[e.Name] || excluded(e.Name) || e.Name == res.File {
			return nil
		}
		seen[e.Name] = true
		entries = append(entries, e)
		if e.Type != target.TypeDir {
			return nil
		}
		kids, err := dr.ReadDir(ctx, e.Name)
		if err != nil {
			return err
		}
		for _, k := range kids {
			if err := walk(k); err != nil {
				return err
			}
		}
		return nil
	}
	for _, inc := range include {
		n, err := target.Clean(strings.TrimSpace(inc))
		if err != nil || n == "." {
			return res, fmt.Errorf("persist backup: .filetool.lst entry %q: %w", inc, ErrUnsafePath)
		}
		e, err := t.Lstat(ctx, n)
		if errors.Is(err, fs.ErrNotExist) {
			res.Skipped = append(res.Skipped, n)
			continue
		}
		if err != nil {
			return res, fmt.Errorf("persist backup: %w", err)
		}
		if err := walk(e); err != nil {
			return res, fmt.Errorf("persist backup: %w", err)
		}
	}
	for _, e := range entries {
		res.Entries = append(res.Entries, e.Name)
	}
	res.Changed = true
	if opts.Check {
		return res, nil
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Mode: int64(target.UnixMode(e.Mode)), Uid: e.Uid, Gid: e.Gid, ModTime: e.ModTime, Format: tar.FormatGNU}
		switch e.Type {
		case target.TypeDir:
			h.Typeflag, h.Name = tar.TypeDir, e.Name+"/"
		case target.TypeSymlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.Linkname
		case target.TypeFifo:
			h.Typeflag = tar.TypeFifo
		case target.TypeChar, target.TypeBlock:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, int64(e.Major), int64(e.Minor)
			if e.Type == target.TypeBlock {
				h.Typeflag = tar.TypeBlock
			}
		default:
			h.Typeflag, h.Size = tar.TypeReg, e.Size
		}
		if err := tw.WriteHeader(h); err != nil {
			return res, fmt.Errorf("persist backup %s: %w", e.Name, err)
		}
		if h.Typeflag == tar.TypeReg {
			rc, err := t.Open(ctx, e.Name)
			if err != nil {
				return res, fmt.Errorf("persist backup: %w", err)
			}
			_, err = io.CopyN(tw, rc, e.Size)
			rc.Close()
			if err != nil {
				return res, fmt.Errorf("persist backup %s: changed while reading: %w", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return res, fmt.Errorf("persist backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return res, fmt.Errorf("persist backup: %w", err)
	}
	if _, err := target.MkdirAll(ctx, t, dir, 0o775, target.MkdirOptions{}); err != nil {
		return res, fmt.Errorf("persist backup: %w", err)
	}
	if opts.Safe {
		if old, err := target.ReadFile(ctx, t, res.File); err == nil {
			if err := target.WriteFile(ctx, t, path.Join(dir, name+"bk.tgz"), old, 0o644, 0, staffGID); err != nil {
				return res, fmt.Errorf("persist backup: %w", err)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("persist backup: %w", err)
		}
	}
	if err := target.WriteFile(ctx, t, res.File, buf.Bytes(), 0o644, 0, staffGID); err != nil {
		return res, fmt.Errorf("persist backup: %w", err)
	}
	res.Bytes = int64(buf.Len())
	return res, nil
}

// RestoreOptions tunes [Restore].
type RestoreOptions struct {
	// Check computes the result and writes nothing. Default false.
	Check bool
}

// Restore extracts the gzipped tar file (a name inside the target, e.g.
// "tce/mydata.tgz") over the target's root like `tar -C / -zxf`: existing
// files are replaced. The whole archive is validated first: an entry named
// with "..", an absolute name, a hardlink outside the root, or one that
// would be written through a symlink (from the archive or already in the
// target) is refused with ErrUnsafePath before anything is written.
// Regular files whose content, mode and owner already match are left
// alone, so a second Restore reports Changed false.
func Restore(ctx context.Context, t target.Target, file string, opts RestoreOptions) (Result, error) {
	var res Result
	data, err := target.ReadFile(ctx, t, file)
	if errors.Is(err, fs.ErrNotExist) {
		return res, fmt.Errorf("persist restore %s: %w", file, ErrNotFound)
	}
	if err != nil {
		return res, fmt.Errorf("persist restore: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return res, fmt.Errorf("persist restore %s: %v: %w", file, err, ErrInvalid)
	}
	tr := tar.NewReader(zr)
	type item struct {
		e    target.Entry
		body []byte
	}
	var items []item
	links := map[string]bool{} // symlinks the archive creates
	inArchive := map[string]bool{}
	var total int64
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return res, fmt.Errorf("persist restore %s: %v: %w", file, err, ErrInvalid)
		}
		if strings.HasPrefix(h.Name, "/") {
			return res, fmt.Errorf("persist restore: absolute name %q: %w", h.Name, ErrUnsafePath)
		}
		n, err := target.Clean(h.Name)
		if err != nil || n == "." {
			return res, fmt.Errorf("persist restore: entry %q: %w", h.Name, ErrUnsafePath)
		}
		for p := path.Dir(n); p != "."; p = path.Dir(p) {
			if links[p] {
				return res, fmt.Errorf("persist restore: %s: below symlink %s: %w", n, p, ErrUnsafePath)
			}
			if !inArchive[p] {
				if e, err := t.Lstat(ctx, p); err == nil && e.Type != target.TypeDir {
					return res, fmt.Errorf("persist restore: %s: %s is a %s in the target: %w", n, p, e.Type, ErrUnsafePath)
				}
			}
		}
		e := target.Entry{Name: n, Mode: target.FileModeOf(uint32(h.Mode)), Uid: h.Uid, Gid: h.Gid, ModTime: h.ModTime}
		var body []byte
		switch h.Typeflag {
		case tar.TypeDir:
			e.Type = target.TypeDir
		case tar.TypeReg, tar.TypeRegA:
			total += h.Size
			if total > 4<<30 {
				return res, fmt.Errorf("persist restore: over 4 GiB: %w", ErrInvalid)
			}
			body, err = io.ReadAll(tr)
			if err != nil {
				return res, fmt.Errorf("persist restore %s: %v: %w", n, err, ErrInvalid)
			}
		case tar.TypeSymlink:
			e.Type, e.Linkname = target.TypeSymlink, h.Linkname
			links[n] = true
		case tar.TypeLink:
			ln, err := target.Clean(h.Linkname)
			if err != nil || strings.HasPrefix(h.Linkname, "/") {
				return res, fmt.Errorf("persist restore: %s: hardlink to %q: %w", n, h.Linkname, ErrUnsafePath)
			}
			e.Type, e.Linkname = target.TypeHardlink, ln
		case tar.TypeFifo:
			e.Type = target.TypeFifo
		case tar.TypeChar, tar.TypeBlock:
			if !target.CapsOf(t).Devices {
				return res, fmt.Errorf("persist restore: %s: device node refused: %w", n, ErrUnsafePath)
			}
			e.Type, e.Major, e.Minor = target.TypeChar, uint32(h.Devmajor), uint32(h.Devminor)
			if h.Typeflag == tar.TypeBlock {
				e.Type = target.TypeBlock
			}
		default:
			continue
		}
		inArchive[n] = true
		items = append(items, item{e, body})
	}
	caps := target.CapsOf(t)
	var changes []target.Change
	for _, it := range items {
		cur, err := t.Lstat(ctx, it.e.Name)
		if err == nil {
			same := cur.Type == it.e.Type && cur.Mode == it.e.Mode && (!caps.Chown || cur.Uid == it.e.Uid && cur.Gid == it.e.Gid)
			switch it.e.Type {
			case target.TypeDir:
				if cur.Type == target.TypeDir && same {
					continue
				}
			case target.TypeRegular:
				if same && cur.Size == int64(len(it.body)) {
					if old, err := target.ReadFile(ctx, t, it.e.Name); err == nil && bytes.Equal(old, it.body) {
						continue
					}
				}
			case target.TypeSymlink:
				if cur.Type == target.TypeSymlink && cur.Linkname == it.e.Linkname {
					continue
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("persist restore: %w", err)
		}
		ch := target.Change{Entry: it.e}
		if it.e.Type == target.TypeRegular {
			ch.Body = target.BytesBody(it.body)
		}
		changes = append(changes, ch)
		res.Files = append(res.Files, it.e.Name)
	}
	res.Changed = len(changes) > 0
	if opts.Check || !res.Changed {
		return res, nil
	}
	// Parents the archive does not list.
	for _, ch := range changes {
		if d := path.Dir(ch.Name); d != "." && !inArchive[d] {
			if _, err := target.MkdirAll(ctx, t, d, 0o755, target.MkdirOptions{}); err != nil {
				return res, fmt.Errorf("persist restore: %w", err)
			}
		}
	}
	if err := target.ApplyAll(ctx, t, changes); err != nil {
		return res, fmt.Errorf("persist restore: %w", err)
	}
	return res, nil
}
