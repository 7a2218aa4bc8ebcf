package tcz

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// PackOptions configures [Pack].
type PackOptions struct {
	// Dir is the DESTDIR tree to pack (its content lands relative to /).
	// Required.
	Dir string
	// Name is the extension name, without ".tcz". Required.
	Name string
	// Deps are the dependency names for NAME.tcz.dep. Default none (no
	// .dep file is written, as on the mirror).
	Deps []string
	// Out is the directory receiving NAME.tcz and its sidecars. Default
	// the current directory.
	Out string
	// Info adds or overrides .info fields ("Description", "Version"...).
	// Title and Size are always generated. Default none.
	Info map[string]string
	// AllRoot makes every entry owned by root (mksquashfs -all-root).
	// Default false: owners come from Dir.
	AllRoot bool
	// Epoch, when non-zero, sets every timestamp (and the filesystem's) to
	// this Unix time, so the same Dir packs to the same bytes. Default 0:
	// file times are kept and the creation time is now.
	Epoch int64
	// Mksquashfs is the mksquashfs binary. Default "mksquashfs" from PATH.
	Mksquashfs string
	// Check computes whether the output would change and writes nothing
	// (the archive is still built in a temporary directory). Default false.
	Check bool
}

// PackResult reports a Pack.
type PackResult struct {
	// Changed: an output file changed (would change).
	Changed bool
	// Files lists the output paths: NAME.tcz, .md5.txt, .list, .info and
	// .dep when there are deps.
	Files []string
	// MD5 is the archive's md5.
	MD5 string
	// Size is the archive's size in bytes.
	Size int64
}

// Pack makes NAME.tcz from Dir the way Tiny Core builds extensions
// (`mksquashfs DIR NAME.tcz -b 4k -no-xattrs -noappend -comp gzip`), with
// NAME.tcz.md5.txt, NAME.tcz.list (files and links, no leading "/"),
// NAME.tcz.info and, with Deps, NAME.tcz.dep. Outputs are replaced
// atomically and only when their content differs.
func Pack(ctx context.Context, opts PackOptions) (PackResult, error) {
	var res PackResult
	if err := checkPkgName(opts.Name); err != nil || strings.HasSuffix(opts.Name, ".tcz") {
		return res, fmt.Errorf("pack: name %q: %w", opts.Name, ErrInvalid)
	}
	fi, err := os.Stat(opts.Dir)
	if err != nil || !fi.IsDir() {
		return res, fmt.Errorf("pack %s: dir %q: %w", opts.Name, opts.Dir, ErrNotFound)
	}
	for _, d := range opts.Deps {
		if err := checkPkgName(strings.TrimSuffix(d, ".tcz")); err != nil {
			return res, fmt.Errorf("pack %s: dep: %w", opts.Name, err)
		}
	}
	out := opts.Out
	if out == "" {
		out = "."
	}
	if err := os.MkdirAll(out, 0o755); err != nil && !opts.Check {
		return res, fmt.Errorf("pack %s: %w", opts.Name, err)
	}
	bin := opts.Mksquashfs
	if bin == "" {
		bin = "mksquashfs"
	}
	tmpDir, err := os.MkdirTemp("", "tinyfarm-pack-")
	if err != nil {
		return res, fmt.Errorf("pack %s: %w", opts.Name, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, opts.Name+".tcz")
	args := []string{opts.Dir, tmp, "-b", "4k", "-no-xattrs", "-noappend", "-comp", "gzip", "-quiet", "-no-progress"}
	if opts.AllRoot {
		args = append(args, "-all-root")
	}
	if opts.Epoch != 0 {
		e := strconv.FormatInt(opts.Epoch, 10)
		args = append(args, "-mkfs-time", e, "-all-time", e)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return res, fmt.Errorf("pack %s: mksquashfs: %w: %s", opts.Name, err, strings.TrimSpace(stderr.String()))
	}
	tcz, err := os.ReadFile(tmp)
	if err != nil {
		return res, fmt.Errorf("pack %s: %w", opts.Name, err)
	}
	sum, err := fileMD5(tmp)
	if err != nil {
		return res, fmt.Errorf("pack %s: %w", opts.Name, err)
	}
	res.MD5, res.Size = sum, int64(len(tcz))

	var list []string
	err = filepath.WalkDir(opts.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(opts.Dir, p)
		if err != nil {
			return err
		}
		list = append(list, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("pack %s: %w", opts.Name, err)
	}
	slices.Sort(list)

	files := []struct {
		name string
		data []byte
	}{
		{opts.Name + ".tcz", tcz},
		{opts.Name + ".tcz.md5.txt", []byte(sum + "  " + opts.Name + ".tcz\n")},
		{opts.Name + ".tcz.list", []byte(strings.Join(list, "\n") + "\n")},
		{opts.Name + ".tcz.info", RenderInfo(opts.Name, len(tcz), opts.Info)},
	}
	if len(opts.Deps) > 0 {
		var b strings.Builder
		for _, d := range opts.Deps {
			b.WriteString(strings.TrimSuffix(d, ".tcz") + ".tcz\n")
		}
		files = append(files, struct {
			name string
			data []byte
		}{opts.Name + ".tcz.dep", []byte(b.String())})
	}
	for _, f := range files {
		p := filepath.Join(out, f.name)
		res.Files = append(res.Files, p)
		old, err := os.ReadFile(p)
		if err == nil && bytes.Equal(old, f.data) {
			continue
		}
		res.Changed = true
		if opts.Check {
			continue
		}
		if err := writeAtomic(p, f.data); err != nil {
			return res, fmt.Errorf("pack %s: %w", opts.Name, err)
		}
	}
	return res, nil
}

// RenderInfo renders a .info file: Title and Size generated, then the
// extra fields in a fixed order for the standard keys and sorted for the
// rest.
func RenderInfo(name string, size int, extra map[string]string) []byte {
	std := []string{"Title", "Description", "Version", "Author", "Original-site", "Copying-policy", "Size", "Extension_by", "Tags", "Comments", "Change-log", "Current"}
	f := map[string]string{"Title": name + ".tcz", "Size": humanSize(size), "Extension_by": "tinyfarm"}
	for k, v := range extra {
		if k != "Title" && k != "Size" {
			f[k] = v
		}
	}
	var keys []string
	for _, k := range std {
		if _, ok := f[k]; ok {
			keys = append(keys, k)
		}
	}
	var rest []string
	for k := range f {
		if !slices.Contains(std, k) {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	keys = append(keys, rest...)
	var b strings.Builder
	for _, k := range keys {
		lines := strings.Split(f[k], "\n")
		fmt.Fprintf(&b, "%-16s%s\n", k+":", lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(&b, "%16s%s\n", "", l)
		}
	}
	return []byte(b.String())
}

func humanSize(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1fM", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%dK", (n+1023)/1024)
	}
	return fmt.Sprintf("%dB", n)
}
