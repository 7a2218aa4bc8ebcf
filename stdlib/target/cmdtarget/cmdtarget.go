// Package cmdtarget is a target.Target for a running Tiny Core system that
// tinyfarm reaches by running shell commands in it: over SSH, or by
// entering a namespace guest. Only busybox tools are used (stat, cat, tar,
// mv, rm), so it works on a stock Tiny Core.
//
// Bulk changes (a package install) go as one tar stream into `tar -x` in
// the guest: one round trip instead of one per file. A single regular file
// is written to a temp name and renamed, so readers never see half of it.
package cmdtarget

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// Runner runs one shell command line in the target system as root and
// returns what it printed and its exit code. err is for failures to run it
// at all (connection lost, context done), not for a non-zero exit.
type Runner interface {
	Run(ctx context.Context, cmd string, stdin io.Reader) (stdout, stderr []byte, code int, err error)
}

// Target is a running system reached through a Runner.
type Target struct {
	r    Runner
	root string // "/" in a guest; a directory for tests against the host
	name string // for messages: "guest web1"
}

// New makes a target; root is where names are anchored ("/" for a guest).
func New(r Runner, root, name string) *Target {
	if root == "" {
		root = "/"
	}
	return &Target{r: r, root: root, name: name}
}

func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (t *Target) abs(name string) (string, string, error) {
	n, err := target.Clean(name)
	if err != nil {
		return "", "", err
	}
	return n, path.Join(t.root, n), nil
}

func (t *Target) run(ctx context.Context, op, name, cmd string, stdin io.Reader) ([]byte, error) {
	out, stderr, code, err := t.r.Run(ctx, cmd, stdin)
	if err != nil {
		return nil, fmt.Errorf("%s %s on %s: %w", op, name, t.name, err)
	}
	if code != 0 {
		msg := strings.TrimSpace(string(stderr))
		if code == 3 && strings.Contains(msg, "UNSAFE") {
			return nil, fmt.Errorf("%s %s on %s: a symlink leads outside the root: %w", op, name, t.name, target.ErrUnsafePath)
		}
		if strings.Contains(msg, "No such file") || strings.Contains(msg, "can't open") {
			return nil, fmt.Errorf("%s %s on %s: %s: %w", op, name, t.name, msg, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("%s %s on %s: exit status %d: %s", op, name, t.name, code, msg)
	}
	return out, nil
}

// guard is a shell prelude that fails with exit 3 when a directory that
// changes will land in resolves (through symlinks) outside the root. The
// nearest existing ancestor is checked, since a batch may create the rest.
func (t *Target) guard(paths []string) string {
	if t.root == "/" || len(paths) == 0 {
		return "" // nothing is outside a guest's own root
	}
	seen := map[string]bool{}
	var qs []string
	for _, p := range paths {
		d := path.Dir(p)
		if !seen[d] {
			seen[d] = true
			qs = append(qs, q(d))
		}
	}
	return fmt.Sprintf(`for d in %s; do while [ ! -e "$d" ] && [ "$d" != / ]; do d=$(dirname "$d"); done; r=$(readlink -f -- "$d"); case "$r" in %s|%s/*) ;; *) echo "UNSAFE $d" >&2; exit 3;; esac; done; `,
		strings.Join(qs, " "), q(t.root), q(strings.TrimSuffix(t.root, "/")))
}

// statFmt prints raw mode (hex), uid, gid, size, mtime, major, minor (hex), name.
const statFmt = `%f %u %g %s %Y %t %T %n`

// Lstat implements target.Target.
func (t *Target) Lstat(ctx context.Context, name string) (target.Entry, error) {
	n, p, err := t.abs(name)
	if err != nil {
		return target.Entry{}, err
	}
	cmd := fmt.Sprintf(`if [ -e %[1]s ] || [ -L %[1]s ]; then stat -c %[2]s -- %[1]s; [ -L %[1]s ] && readlink -- %[1]s; true; else echo MISSING; fi`, q(p), q(statFmt))
	out, err := t.run(ctx, "lstat", n, cmd, nil)
	if err != nil {
		return target.Entry{}, err
	}
	if strings.TrimSpace(string(out)) == "MISSING" {
		return target.Entry{}, fmt.Errorf("lstat %s on %s: %w", n, t.name, fs.ErrNotExist)
	}
	lines := strings.SplitN(string(out), "\n", 2)
	e, err := parseStat(n, lines[0])
	if err != nil {
		return e, fmt.Errorf("lstat %s on %s: %w", n, t.name, err)
	}
	if e.Type == target.TypeSymlink && len(lines) > 1 {
		e.Linkname = strings.TrimRight(lines[1], "\n")
	}
	return e, nil
}

func parseStat(name, line string) (target.Entry, error) {
	f := strings.Fields(line)
	if len(f) < 7 {
		return target.Entry{}, fmt.Errorf("unexpected stat output %q", line)
	}
	raw, err := strconv.ParseUint(f[0], 16, 32)
	if err != nil {
		return target.Entry{}, fmt.Errorf("stat mode %q: %w", f[0], err)
	}
	uid, _ := strconv.Atoi(f[1])
	gid, _ := strconv.Atoi(f[2])
	size, _ := strconv.ParseInt(f[3], 10, 64)
	mtime, _ := strconv.ParseInt(f[4], 10, 64)
	major, _ := strconv.ParseUint(f[5], 16, 32)
	minor, _ := strconv.ParseUint(f[6], 16, 32)
	e := target.Entry{Name: name, Uid: uid, Gid: gid, Size: size, ModTime: time.Unix(mtime, 0),
		Major: uint32(major), Minor: uint32(minor)}
	e.Mode = target.FileModeOf(uint32(raw))
	switch raw & 0o170000 {
	case 0o100000:
		e.Type = target.TypeRegular
	case 0o040000:
		e.Type = target.TypeDir
	case 0o120000:
		e.Type = target.TypeSymlink
	case 0o020000:
		e.Type = target.TypeChar
	case 0o060000:
		e.Type = target.TypeBlock
	case 0o010000:
		e.Type = target.TypeFifo
	default:
		return e, fmt.Errorf("unsupported file type %o: %w", raw&0o170000, target.ErrInvalid)
	}
	return e, nil
}

// Open implements target.Target: the file's content in one command.
func (t *Target) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	n, p, err := t.abs(name)
	if err != nil {
		return nil, err
	}
	out, err := t.run(ctx, "open", n, "cat -- "+q(p), nil)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(out)), nil
}

// Apply implements target.Target.
func (t *Target) Apply(ctx context.Context, c target.Change) error {
	n, p, err := t.abs(c.Name)
	if err != nil {
		return err
	}
	switch c.Type {
	case target.TypeRemove:
		_, err := t.run(ctx, "remove", n, fmt.Sprintf(`if [ -d %[1]s ] && [ ! -L %[1]s ]; then rmdir -- %[1]s; else rm -f -- %[1]s; fi`, q(p)), nil)
		return err
	case target.TypeRegular:
		var body io.Reader = strings.NewReader("")
		if c.Body != nil {
			rc, err := c.Body()
			if err != nil {
				return fmt.Errorf("apply %s: %w", n, err)
			}
			defer rc.Close()
			body = rc
		}
		mode := c.Mode
		if mode == 0 {
			mode = 0o644
		}
		tmp := path.Join(path.Dir(p), ".tf-"+path.Base(p)+".tmp")
		// A transfer cut short (tinyfarm killed, the connection lost)
		// ends cat's input early as if the file were whole: a known size
		// is checked before the rename.
		check := ""
		if c.Size > 0 {
			check = fmt.Sprintf(`[ "$(wc -c < %[1]s)" -eq %[2]d ] || { rm -f %[1]s; echo "%[3]s: transfer cut short" >&2; exit 1; }; `, q(tmp), c.Size, q(p))
		}
		cmd := t.guard([]string{p}) + fmt.Sprintf(`set -e; [ ! -d %[2]s ] || [ -L %[2]s ] || { echo "%[2]s is a directory" >&2; exit 1; }; cat > %[1]s; %[6]schown %[3]d:%[4]d %[1]s; chmod %[5]s %[1]s; sync %[1]s 2>/dev/null || true; mv -f %[1]s %[2]s`,
			q(tmp), q(p), c.Uid, c.Gid, unixOctal(mode), check)
		_, err = t.run(ctx, "write", n, cmd, body)
		return err
	case target.TypeDir:
		mode := c.Mode
		if mode == 0 {
			mode = 0o755
		}
		cmd := t.guard([]string{p}) + fmt.Sprintf(`set -e; if [ -e %[1]s ] && [ ! -d %[1]s ] || [ -L %[1]s ]; then echo "%[1]s exists and is not a directory" >&2; exit 1; fi; mkdir -p %[1]s; chown %[2]d:%[3]d %[1]s; chmod %[4]s %[1]s`,
			q(p), c.Uid, c.Gid, unixOctal(mode))
		_, err = t.run(ctx, "mkdir", n, cmd, nil)
		return err
	}
	return t.ApplyBatch(ctx, []target.Change{c})
}

func unixOctal(m fs.FileMode) string { return fmt.Sprintf("%04o", target.UnixMode(m)) }

// ApplyBatch implements target.Batcher: removals as one command, then
// everything else as one tar stream extracted in place.
func (t *Target) ApplyBatch(ctx context.Context, changes []target.Change) error {
	var rm, dests []string
	var rest []target.Change
	for _, c := range changes {
		switch c.Type {
		case target.TypeChar, target.TypeBlock:
			return fmt.Errorf("apply %s on %s: device nodes: %w", c.Name, t.name, target.ErrUnsupported)
		case target.TypeHardlink:
			if _, err := target.Clean(c.Linkname); err != nil {
				return fmt.Errorf("apply %s on %s: hardlink to %q: %w", c.Name, t.name, c.Linkname, target.ErrUnsafePath)
			}
		}
		if c.Mode == 0 {
			c.Mode = 0o644
			if c.Type == target.TypeDir {
				c.Mode = 0o755
			}
		}
		if c.Type == target.TypeRemove {
			_, p, err := t.abs(c.Name)
			if err != nil {
				return err
			}
			rm = append(rm, q(p))
			continue
		}
		_, p, err := t.abs(c.Name)
		if err != nil {
			return err
		}
		dests = append(dests, p)
		rest = append(rest, c)
	}
	if len(rest) > 0 {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(target.WriteTar(ctx, pw, rest)) }()
		// -p keeps modes (setuid too); as root busybox tar keeps owners.
		_, err := t.run(ctx, "extract", fmt.Sprintf("%d entries", len(rest)), t.guard(dests)+"tar -x -p -f - -C "+q(t.root), pr)
		pr.CloseWithError(io.EOF)
		if err != nil {
			return err
		}
	}
	if len(rm) > 0 {
		cmd := "for f in " + strings.Join(rm, " ") + `; do if [ -d "$f" ] && [ ! -L "$f" ]; then rmdir -- "$f" 2>/dev/null || true; else rm -f -- "$f"; fi; done`
		if _, err := t.run(ctx, "remove", fmt.Sprintf("%d entries", len(rm)), cmd, nil); err != nil {
			return err
		}
	}
	return nil
}

// ReadDir implements target.DirReader with one stat over the directory.
func (t *Target) ReadDir(ctx context.Context, name string) ([]target.Entry, error) {
	n, p, err := t.abs(name)
	if err != nil {
		return nil, err
	}
	cmd := fmt.Sprintf(`cd -- %[1]s || exit 1; for f in * .[!.]* ..?*; do [ -e "$f" ] || [ -L "$f" ] || continue; stat -c %[2]s -- "$f"; if [ -L "$f" ]; then printf 'L '; readlink -- "$f"; fi; done`, q(p), q(statFmt))
	out, err := t.run(ctx, "readdir", n, cmd, nil)
	if err != nil {
		return nil, err
	}
	var ents []target.Entry
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if line == "" {
			continue
		}
		if l, ok := strings.CutPrefix(line, "L "); ok && len(ents) > 0 {
			ents[len(ents)-1].Linkname = l
			continue
		}
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		base := strings.Join(f[7:], " ")
		e, err := parseStat(path.Join(n, base), line)
		if err != nil {
			return nil, fmt.Errorf("readdir %s on %s: %w", n, t.name, err)
		}
		ents = append(ents, e)
	}
	return ents, nil
}

// Describe names the target in change reports ("guest:web1").
func (t *Target) Describe() string { return t.name }

// Caps implements target.Capable: a running system, as root.
func (t *Target) Caps() target.Caps {
	return target.Caps{Chown: true, Setuid: true, Online: true}
}

// Exec implements target.Execer.
func (t *Target) Exec(ctx context.Context, argv []string) ([]byte, error) {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = q(a)
	}
	out, stderr, code, err := t.r.Run(ctx, strings.Join(parts, " "), nil)
	if err != nil {
		return nil, fmt.Errorf("exec %s on %s: %w", argv[0], t.name, err)
	}
	combined := append(out, stderr...)
	if code != 0 {
		return combined, fmt.Errorf("exec %s on %s: exit status %d: %s", argv[0], t.name, code, strings.TrimSpace(string(combined)))
	}
	return combined, nil
}

// Interface guards
var (
	_ target.Target    = (*Target)(nil)
	_ target.Batcher   = (*Target)(nil)
	_ target.DirReader = (*Target)(nil)
	_ target.Capable   = (*Target)(nil)
	_ target.Execer    = (*Target)(nil)
)
