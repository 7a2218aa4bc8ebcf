package tcz

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Info is a parsed .info file: keys as written ("Title", "Version",
// "Change-log"...), values trimmed; continuation lines are joined to
// their key's value with "\n".
type Info struct {
	// Keys lists the keys in file order.
	Keys []string
	// Fields maps each key to its value.
	Fields map[string]string
}

// Get returns the value of key (exact, case-sensitive), or "".
func (i Info) Get(key string) string { return i.Fields[key] }

// ParseInfo parses Tiny Core's .info format: "Key: value" lines (a key is
// the text before the first ':' and holds no spaces or tabs); a line that
// starts with whitespace, or that has no "Key:" prefix, continues the
// previous value. Blank lines are skipped. A repeated key appends to its
// value. Text before the first key is an ErrInvalid error.
func ParseInfo(data []byte) (Info, error) {
	info := Info{Fields: map[string]string{}}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), " \t\r")
		if line == "" {
			continue
		}
		cont := line[0] == ' ' || line[0] == '\t'
		if k, v, ok := strings.Cut(line, ":"); !cont && ok && k != "" && !strings.ContainsAny(k, " \t") {
			cur = k
			if _, dup := info.Fields[k]; !dup {
				info.Keys = append(info.Keys, k)
				info.Fields[k] = strings.TrimSpace(v)
				continue
			}
			info.Fields[k] += "\n" + strings.TrimSpace(v)
			continue
		}
		if cur == "" {
			return Info{}, fmt.Errorf("info: line %q before any key: %w", truncate(line, 60), ErrInvalid)
		}
		if info.Fields[cur] == "" {
			info.Fields[cur] = strings.TrimSpace(line)
		} else {
			info.Fields[cur] += "\n" + strings.TrimSpace(line)
		}
	}
	if err := sc.Err(); err != nil {
		return Info{}, fmt.Errorf("info: %v: %w", err, ErrInvalid)
	}
	return info, nil
}

// Info returns the parsed NAME.tcz.info, from the cache or else from the
// mirror (then cached).
func (c *Client) Info(ctx context.Context, name string) (Info, error) {
	n, err := c.Name(name)
	if err != nil {
		return Info{}, fmt.Errorf("info: %w", err)
	}
	p := c.CachePath(n + ".tcz.info")
	b, err := os.ReadFile(p)
	if err != nil {
		b, err = c.getSmall(ctx, n+".tcz.info")
		if err != nil {
			return Info{}, fmt.Errorf("info %s: %w", n, err)
		}
		if err := writeAtomic(p, b); err != nil {
			return Info{}, fmt.Errorf("info %s: %w", n, err)
		}
	}
	info, err := ParseInfo(b)
	if err != nil {
		return Info{}, fmt.Errorf("info %s: %w", n, err)
	}
	return info, nil
}

// Search returns the extension names matching term (case-insensitive
// substring), sorted. It uses the mirror's tags.db.gz (matching names and
// tags) when present, else info.lst.gz or info.lst (names), else the
// cache's optional/*.tcz.
func (c *Client) Search(ctx context.Context, term string) ([]string, error) {
	t := strings.ToLower(strings.TrimSuffix(term, ".tcz"))
	var out []string
	add := func(n string) {
		n = strings.TrimSuffix(n, ".tcz")
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	lines, err := c.indexLines(ctx, "tags.db.gz")
	if err == nil {
		for _, l := range lines {
			if strings.Contains(strings.ToLower(l), t) {
				add(strings.Fields(l + " ")[0])
			}
		}
		slices.Sort(out)
		return out, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("search %s: %w", term, err)
	}
	for _, idx := range []string{"info.lst.gz", "info.lst"} {
		lines, err = c.indexLines(ctx, idx)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("search %s: %w", term, err)
		}
		for _, l := range lines {
			l = strings.TrimSpace(l)
			if strings.Contains(strings.ToLower(l), t) {
				add(l)
			}
		}
		slices.Sort(out)
		return out, nil
	}
	ms, _ := filepath.Glob(c.CachePath("*.tcz"))
	for _, m := range ms {
		b := filepath.Base(m)
		if strings.Contains(strings.ToLower(b), t) {
			add(b)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Provides returns the extensions whose file list (the mirror's
// provides.db: a name line, file lines, a blank line) holds a path
// containing file, sorted. Without provides.db it is an ErrNotFound error.
func (c *Client) Provides(ctx context.Context, file string) ([]string, error) {
	lines, err := c.indexLines(ctx, "provides.db")
	if err != nil {
		return nil, fmt.Errorf("provides %s: %w", file, err)
	}
	want := strings.TrimPrefix(file, "/")
	var out []string
	cur := ""
	for _, l := range lines {
		switch {
		case l == "":
			cur = ""
		case cur == "":
			cur = strings.TrimSuffix(strings.TrimSpace(l), ".tcz")
		case strings.Contains(strings.TrimPrefix(l, "/"), want):
			if !slices.Contains(out, cur) {
				out = append(out, cur)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// indexLines reads a mirror index file (gunzipped when it ends in .gz).
func (c *Client) indexLines(ctx context.Context, file string) ([]string, error) {
	rc, _, err := c.get(ctx, file)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var r io.Reader = rc
	if strings.HasSuffix(file, ".gz") {
		zr, err := gzip.NewReader(rc)
		if err != nil {
			return nil, fmt.Errorf("%s: %v: %w", file, err, ErrInvalid)
		}
		r = zr
	}
	var out []string
	sc := bufio.NewScanner(io.LimitReader(r, 256<<20))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out = append(out, strings.TrimRight(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", file, err, ErrInvalid)
	}
	return out, nil
}
