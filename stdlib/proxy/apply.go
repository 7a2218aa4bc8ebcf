package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/aymanbagabas/go-udiff"
)

// NginxConfig says where ApplyNginx writes and how it runs nginx.
type NginxConfig struct {
	// Path is the live http snippet, included inside http {} by the main
	// configuration. Required.
	Path string
	// StreamPath is the live stream snippet, included in the main context.
	// Default "": a table with TCP forwards is an ErrInvalid.
	StreamPath string
	// Conf is the main configuration file (nginx -c). Default
	// "/etc/nginx/nginx.conf".
	Conf string
	// Prefix is nginx's prefix (nginx -p). Default "": nginx's built-in.
	Prefix string
	// Command is the argv that runs nginx, e.g. {"setpriv", "--reuid=nobody",
	// "--regid=nogroup", "--clear-groups", "nginx"}. Default {"nginx"}.
	Command []string
	// Reload reloads nginx after changing the files. Default false.
	Reload bool
	// PIDFile, when set, makes the reload a SIGHUP to the pid in this file
	// instead of "nginx -s reload". Default "".
	PIDFile string
	// Check computes the change and its diff without writing, testing or
	// reloading anything. Default false.
	Check bool
	// Render shapes the rendered configuration.
	Render NginxOptions
}

// ApplyNginx renders t and installs it: each new file is written beside the
// live one, the full configuration is tested with "nginx -t" against a
// temporary copy in which the new files replace the live ones, and only then
// are the new files renamed over the live ones and nginx reloaded. A
// configuration nginx rejects is an ErrInvalid carrying nginx's message and
// leaves the live files untouched. Unchanged files report no change and do
// not reload.
func ApplyNginx(ctx context.Context, t Table, cfg NginxConfig) (Change, error) {
	op := "proxy nginx " + cfg.Path
	if cfg.Path == "" {
		return Change{}, fmt.Errorf("proxy nginx: path not set: %w", ErrInvalid)
	}
	if cfg.Conf == "" {
		cfg.Conf = "/etc/nginx/nginx.conf"
	}
	if len(cfg.Command) == 0 {
		cfg.Command = []string{"nginx"}
	}
	httpConf, streamConf := RenderNginx(t, cfg.Render)
	files := []pendingFile{{path: cfg.Path, data: []byte(httpConf)}}
	if streamConf != "" && cfg.StreamPath == "" {
		return Change{}, fmt.Errorf("%s: the table has TCP forwards but no stream path is set: %w", op, ErrInvalid)
	}
	if cfg.StreamPath != "" {
		files = append(files, pendingFile{path: cfg.StreamPath, data: []byte(streamConf)})
	}
	ch := Change{Table: t}
	for i := range files {
		f := &files[i]
		old, err := os.ReadFile(f.path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return Change{}, fmt.Errorf("%s: %w", op, err)
		}
		if bytes.Equal(old, f.data) && err == nil {
			continue
		}
		f.changed = true
		ch.Changed = true
		ch.Diff += udiff.Unified(f.path+" (current)", f.path+" (planned)", string(old), string(f.data))
	}
	if !ch.Changed || cfg.Check {
		return ch, nil
	}
	for i := range files {
		f := &files[i]
		if !f.changed {
			continue
		}
		f.tmp = filepath.Join(filepath.Dir(f.path), "."+filepath.Base(f.path)+".new")
		if err := writeFileAtomic(f.tmp, f.data, 0o644); err != nil {
			removeTemps(files)
			return Change{}, fmt.Errorf("%s: %w", op, err)
		}
	}
	if err := testNginx(ctx, cfg, files); err != nil {
		removeTemps(files)
		return Change{}, fmt.Errorf("%s: %w", op, err)
	}
	for _, f := range files {
		if f.changed {
			if err := os.Rename(f.tmp, f.path); err != nil {
				removeTemps(files)
				return Change{}, fmt.Errorf("%s: %w", op, err)
			}
			syncDir(filepath.Dir(f.path))
		}
	}
	if cfg.Reload {
		if err := reloadNginx(ctx, cfg); err != nil {
			return ch, fmt.Errorf("%s: reload: %w", op, err)
		}
	}
	return ch, nil
}

type pendingFile struct {
	path    string
	data    []byte
	changed bool
	tmp     string
}

func removeTemps(files []pendingFile) {
	for _, f := range files {
		if f.tmp != "" {
			os.Remove(f.tmp)
		}
	}
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// includeRE finds include directives in a line with comments removed.
var includeRE = regexp.MustCompile(`(^|[\s;{}])include\s+("[^"]*"|'[^']*'|[^\s;]+)\s*;`)

// testNginx mirrors the configuration tree reachable from cfg.Conf through
// include directives into a temp dir, with each pending file's new content in
// place of its live path, and runs "nginx -t" on the mirror.
func testNginx(ctx context.Context, cfg NginxConfig, files []pendingFile) error {
	tmp, err := os.MkdirTemp("", "tinyfarm-nginx-t-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil { // readable by an unprivileged nginx
		return err
	}
	root := filepath.Join(tmp, "root")
	conf, err := filepath.Abs(cfg.Conf)
	if err != nil {
		return err
	}
	confDir := filepath.Dir(conf)
	replace := map[string][]byte{}
	for _, f := range files {
		abs, err := filepath.Abs(f.path)
		if err != nil {
			return err
		}
		replace[abs] = f.data
	}
	mirror := func(p string) string { return filepath.Join(root, p) }
	done := map[string]bool{}
	var walk func(path string, depth int) error
	walk = func(path string, depth int) error {
		if done[path] {
			return nil
		}
		done[path] = true
		if depth > 20 {
			return fmt.Errorf("include depth exceeds 20 at %s: %w", path, ErrInvalid)
		}
		data, ok := replace[path]
		if !ok {
			if data, err = os.ReadFile(path); err != nil {
				return err
			}
		}
		var out bytes.Buffer
		for _, line := range strings.SplitAfter(string(data), "\n") {
			code, comment := line, ""
			if i := strings.IndexByte(line, '#'); i >= 0 {
				code, comment = line[:i], line[i:]
			}
			var werr error
			code = includeRE.ReplaceAllStringFunc(code, func(m string) string {
				sub := includeRE.FindStringSubmatch(m)
				pat := strings.Trim(sub[2], `"'`)
				if !filepath.IsAbs(pat) {
					pat = filepath.Join(confDir, pat)
				}
				matches, _ := filepath.Glob(pat)
				for p := range replace {
					if ok, _ := filepath.Match(pat, p); ok && !contains(matches, p) {
						matches = append(matches, p)
					}
				}
				for _, p := range matches {
					if strings.HasPrefix(filepath.Base(p), ".") {
						continue // nginx's glob(3) skips dotfiles, like our .new files
					}
					if err := walk(p, depth+1); err != nil && werr == nil {
						werr = err
					}
				}
				return sub[1] + "include " + strconv.Quote(mirror(pat)) + ";"
			})
			if werr != nil {
				return werr
			}
			out.WriteString(code + comment)
		}
		if err := os.MkdirAll(filepath.Dir(mirror(path)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(mirror(path), out.Bytes(), 0o644)
	}
	if err := walk(conf, 0); err != nil {
		return fmt.Errorf("copy configuration for nginx -t: %w", err)
	}
	for p := range replace {
		if !done[p] {
			return fmt.Errorf("%s is not included by %s, so nginx would never read it: %w", p, conf, ErrInvalid)
		}
	}
	args := append(append([]string(nil), cfg.Command[1:]...), "-t", "-c", mirror(conf))
	if cfg.Prefix != "" {
		args = append(args, "-p", cfg.Prefix)
	}
	out, err := exec.CommandContext(ctx, cfg.Command[0], args...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(strings.ReplaceAll(string(out), root, ""))
		if ctx.Err() != nil {
			return fmt.Errorf("nginx -t: %w", ctx.Err())
		}
		if _, ok := err.(*exec.ExitError); !ok {
			return fmt.Errorf("nginx -t: %w", err)
		}
		if strings.Contains(msg, `unknown directive "stream"`) {
			msg += " (the stream module is missing: install libnginx-mod-stream and load it)"
		}
		return fmt.Errorf("nginx -t: %s: %w", msg, ErrInvalid)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// reloadNginx asks the running master to reload its configuration.
func reloadNginx(ctx context.Context, cfg NginxConfig) error {
	if cfg.PIDFile != "" {
		data, err := os.ReadFile(cfg.PIDFile)
		if err != nil {
			return err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 1 {
			return fmt.Errorf("pid file %s: bad pid %q", cfg.PIDFile, strings.TrimSpace(string(data)))
		}
		return signalReload(pid)
	}
	args := append(append([]string(nil), cfg.Command[1:]...), "-s", "reload", "-c", cfg.Conf)
	if cfg.Prefix != "" {
		args = append(args, "-p", cfg.Prefix)
	}
	out, err := exec.CommandContext(ctx, cfg.Command[0], args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("nginx -s reload: %s: %w", strings.TrimSpace(string(out)), err)
	}
	return nil
}
