// Package persist edits Tiny Core's persistence files in any
// [target.Target]: managed blocks in opt/bootlocal.sh and opt/bootsync.sh,
// exact-line entries in onboot.lst, opt/.filetool.lst and
// opt/.xfiletool.lst, the mydata.tgz backup and its restore, and boot codes.
//
// Every mutating function is idempotent, returns a [Result] saying whether
// it changed anything (with a unified diff of the text files it touched),
// and in check mode (Check: true) computes the same result and writes
// nothing.
package persist

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"

	"github.com/aymanbagabas/go-udiff"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// Sentinel errors.
var (
	// ErrInvalid: a malformed argument or file (a bad id, a BEGIN marker
	// without its END, a boot code with spaces).
	ErrInvalid = errkind.Invalid("invalid")
	// ErrNotFound: a file to restore from does not exist.
	ErrNotFound = errkind.NotFound("not found")
	// ErrUnsafePath: a name leaving the target root. Same value as
	// target.ErrUnsafePath.
	ErrUnsafePath = target.ErrUnsafePath
)

// Tiny Core's group "staff" owns /opt and the scripts in it.
const staffGID = 50

// Result reports a mutating call.
type Result struct {
	// Changed is true when a file changed (or, in check mode, would).
	Changed bool
	// Diff is a unified diff of every text file changed, "a/NAME" to
	// "b/NAME", concatenated; "" when nothing changed.
	Diff string
	// Files lists the target names changed, in order.
	Files []string
}

func (r *Result) merge(o Result) {
	r.Changed = r.Changed || o.Changed
	r.Diff += o.Diff
	r.Files = append(r.Files, o.Files...)
}

// editFile reads name (missing = ""), applies fn, and writes the result
// atomically when it differs or the mode needs the exec bit. New files get
// perm and root:staff; existing ones keep owner and mode (plus addExec).
func editFile(ctx context.Context, t target.Target, name string, perm fs.FileMode, addExec, check bool, fn func(old string, exists bool) (string, error)) (Result, error) {
	n, err := target.Clean(name)
	if err != nil {
		return Result{}, err
	}
	var old string
	e, err := t.Lstat(ctx, n)
	exists := err == nil
	switch {
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return Result{}, err
	case exists && e.Type != target.TypeRegular:
		return Result{}, fmt.Errorf("edit %s: is a %s, not a regular file: %w", n, e.Type, ErrInvalid)
	case exists:
		b, err := target.ReadFile(ctx, t, n)
		if err != nil {
			return Result{}, err
		}
		old = string(b)
	}
	nw, err := fn(old, exists)
	if err != nil {
		return Result{}, fmt.Errorf("edit %s: %w", n, err)
	}
	mode, uid, gid := perm, 0, staffGID
	if exists {
		mode, uid, gid = e.Mode, e.Uid, e.Gid
		if addExec {
			mode |= (mode&0o444)>>2 | 0o100 // x wherever r is set, and for the owner
		}
	}
	if exists && nw == old && mode == e.Mode {
		return Result{}, nil
	}
	res := Result{Changed: true, Files: []string{n}}
	if nw != old || !exists {
		res.Diff = udiff.Unified("a/"+n, "b/"+n, old, nw)
	}
	if check {
		return res, nil
	}
	if !exists {
		if _, err := target.MkdirAll(ctx, t, pathDir(n), 0o775, target.MkdirOptions{}); err != nil {
			return Result{}, err
		}
	}
	if err := target.WriteFile(ctx, t, n, []byte(nw), mode, uid, gid); err != nil {
		return Result{}, err
	}
	return res, nil
}

func pathDir(n string) string {
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		return n[:i]
	}
	return "."
}

// BlockOptions tunes [Bootlocal] and [Bootsync].
type BlockOptions struct {
	// ID names the managed block; blocks with different IDs coexist.
	// Letters, digits, '.', '_' and '-'. Default "default".
	ID string
	// Check computes the result and writes nothing. Default false.
	Check bool
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// BeginMarker and EndMarker delimit the managed block id.
func BeginMarker(id string) string { return "# BEGIN tinyfarm " + id }

// EndMarker: see [BeginMarker].
func EndMarker(id string) string { return "# END tinyfarm " + id }

// SetBlock returns text with the managed block id holding exactly lines:
// replaced in place when present, appended at the end otherwise, removed
// when lines is empty. Lines outside the block are kept byte for byte; an
// empty text becomes a "#!/bin/sh" script. Lines holding a newline are
// split; a line equal to a marker is ErrInvalid, as is a BEGIN without END.
func SetBlock(text, id string, lines []string) (string, error) {
	if !idRE.MatchString(id) {
		return "", fmt.Errorf("block id %q: %w", id, ErrInvalid)
	}
	begin, end := BeginMarker(id), EndMarker(id)
	var body []string
	for _, l := range lines {
		for _, s := range strings.Split(strings.ReplaceAll(l, "\r\n", "\n"), "\n") {
			if strings.HasPrefix(strings.TrimSpace(s), "# BEGIN tinyfarm ") || strings.HasPrefix(strings.TrimSpace(s), "# END tinyfarm ") {
				return "", fmt.Errorf("block %s: line %q looks like a marker: %w", id, s, ErrInvalid)
			}
			body = append(body, s)
		}
	}
	if text == "" {
		text = "#!/bin/sh\n"
	}
	all := strings.SplitAfter(text, "\n")
	if all[len(all)-1] == "" {
		all = all[:len(all)-1]
	}
	bi, ei := -1, -1
	for i, l := range all {
		s := strings.TrimRight(l, "\r\n")
		if s == begin && bi < 0 {
			bi = i
		} else if s == end && bi >= 0 {
			ei = i
			break
		}
	}
	if bi >= 0 && ei < 0 {
		return "", fmt.Errorf("block %s: %q without %q: %w", id, begin, end, ErrInvalid)
	}
	var block []string
	if len(body) > 0 {
		block = append(block, begin+"\n")
		for _, l := range body {
			block = append(block, l+"\n")
		}
		block = append(block, end+"\n")
	}
	var out []string
	if bi >= 0 {
		out = append(out, all[:bi]...)
		out = append(out, block...)
		out = append(out, all[ei+1:]...)
	} else {
		out = append(out, all...)
		if len(out) > 0 && !strings.HasSuffix(out[len(out)-1], "\n") {
			out[len(out)-1] += "\n"
		}
		out = append(out, block...)
	}
	return strings.Join(out, ""), nil
}

// Bootlocal puts lines in a managed block of opt/bootlocal.sh (run in the
// background at the end of boot). The file is created as an executable
// "#!/bin/sh" script (0775 root:staff) when missing, and stays executable.
// Empty lines removes the block.
func Bootlocal(ctx context.Context, t target.Target, lines []string, opts BlockOptions) (Result, error) {
	return block(ctx, t, "opt/bootlocal.sh", lines, opts)
}

// Bootsync is [Bootlocal] for opt/bootsync.sh (run, and waited for, early
// in boot).
func Bootsync(ctx context.Context, t target.Target, lines []string, opts BlockOptions) (Result, error) {
	return block(ctx, t, "opt/bootsync.sh", lines, opts)
}

func block(ctx context.Context, t target.Target, name string, lines []string, opts BlockOptions) (Result, error) {
	id := opts.ID
	if id == "" {
		id = "default"
	}
	r, err := editFile(ctx, t, name, 0o775, true, opts.Check, func(old string, _ bool) (string, error) {
		return SetBlock(old, id, lines)
	})
	if err != nil {
		return Result{}, fmt.Errorf("persist %s: %w", name, err)
	}
	return r, nil
}

// EditLines returns text with add appended (each unless a line already
// equals it exactly after trimming spaces) and every line equal to an
// entry of remove deleted. key maps a line to its comparison key (nil:
// the trimmed line). Other lines are kept as they are.
func EditLines(text string, add, remove []string, key func(string) string) string {
	if key == nil {
		key = strings.TrimSpace
	}
	lines := strings.SplitAfter(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var out []string
	have := map[string]bool{}
	for _, l := range lines {
		k := key(strings.TrimRight(l, "\r\n"))
		if k != "" && slices.ContainsFunc(remove, func(r string) bool { return key(r) == k }) {
			continue
		}
		have[k] = true
		out = append(out, l)
	}
	if len(out) > 0 && !strings.HasSuffix(out[len(out)-1], "\n") {
		out[len(out)-1] += "\n"
	}
	for _, a := range add {
		k := key(a)
		if k == "" || have[k] {
			continue
		}
		have[k] = true
		out = append(out, strings.TrimSpace(a)+"\n")
	}
	return strings.Join(out, "")
}

// ListOptions tunes [Onboot] and [Filetool].
type ListOptions struct {
	// Remove deletes the given entries instead of adding them. Default
	// false.
	Remove bool
	// TCEDir is the tce directory inside the target (Onboot only).
	// Default: target.TCEDir.
	TCEDir string
	// Check computes the result and writes nothing. Default false.
	Check bool
}

// OnbootKey is the comparison key of an onboot.lst line: its first field
// with any "#" comment removed and ".tcz" appended when missing (Tiny Core
// loads "x" and "x.tcz" alike). Names match exactly, never as substrings.
func OnbootKey(line string) string {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	if !strings.HasSuffix(f[0], ".tcz") {
		return f[0] + ".tcz"
	}
	return f[0]
}

// Onboot adds extension names to <tce dir>/onboot.lst (as "NAME.tcz", no
// duplicates, user lines kept), or removes them with opts.Remove.
func Onboot(ctx context.Context, t target.Target, names []string, opts ListOptions) (Result, error) {
	dir := opts.TCEDir
	if dir == "" {
		var err error
		if dir, err = target.TCEDir(ctx, t); err != nil {
			return Result{}, fmt.Errorf("persist onboot: %w", err)
		}
	}
	var entries []string
	for _, n := range names {
		k := OnbootKey(n)
		if k == "" || strings.ContainsAny(strings.TrimSpace(n), " \t#/\x00") {
			return Result{}, fmt.Errorf("persist onboot: name %q: %w", n, ErrInvalid)
		}
		entries = append(entries, k)
	}
	name := dir + "/onboot.lst"
	r, err := editFile(ctx, t, name, 0o664, false, opts.Check, func(old string, _ bool) (string, error) {
		if opts.Remove {
			return EditLines(old, nil, entries, OnbootKey), nil
		}
		return EditLines(old, entries, nil, OnbootKey), nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("persist onboot: %w", err)
	}
	return r, nil
}

// FiletoolOptions tunes [Filetool].
type FiletoolOptions struct {
	// Add lists paths for opt/.filetool.lst (what backups include),
	// relative to / ("home", "etc/shadow"); a leading "/" is stripped.
	// Default none.
	Add []string
	// Exclude lists busybox tar exclude patterns for opt/.xfiletool.lst,
	// kept verbatim. Default none.
	Exclude []string
	// Remove deletes the given Add and Exclude entries instead. Default
	// false.
	Remove bool
	// Check computes the result and writes nothing. Default false.
	Check bool
}

// Filetool edits opt/.filetool.lst and opt/.xfiletool.lst: exact-line
// entries, no duplicates, other lines kept.
func Filetool(ctx context.Context, t target.Target, opts FiletoolOptions) (Result, error) {
	var res Result
	var add []string
	for _, a := range opts.Add {
		c, err := target.Clean(strings.TrimSpace(a))
		if err != nil || c == "." {
			return Result{}, fmt.Errorf("persist filetool: entry %q: %w", a, ErrInvalid)
		}
		add = append(add, c)
	}
	for _, f := range []struct {
		name    string
		entries []string
	}{{"opt/.filetool.lst", add}, {"opt/.xfiletool.lst", opts.Exclude}} {
		if len(f.entries) == 0 {
			continue
		}
		for _, e := range f.entries {
			if strings.ContainsAny(e, "\n\x00") {
				return Result{}, fmt.Errorf("persist filetool: entry %q: %w", e, ErrInvalid)
			}
		}
		r, err := editFile(ctx, t, f.name, 0o664, false, opts.Check, func(old string, _ bool) (string, error) {
			if opts.Remove {
				return EditLines(old, nil, f.entries, nil), nil
			}
			return EditLines(old, f.entries, nil, nil), nil
		})
		if err != nil {
			return Result{}, fmt.Errorf("persist filetool: %w", err)
		}
		res.merge(r)
	}
	return res, nil
}
