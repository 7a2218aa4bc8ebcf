// Package tcz is Tiny Core's extension machinery, done offline and safely:
// a mirror client with a cache in Tiny Core's own layout, `.dep`
// resolution, bounded concurrent md5-checked downloads, `.info` and index
// search, extraction of a .tcz into any [target.Target] (validated before
// anything is written), removal, and packing.
//
// Names are extension names without ".tcz" ("nginx"); a trailing ".tcz" is
// accepted and stripped everywhere. A [Client] holds the mirror, the cache
// and the kernel version; it has no global state and is safe for concurrent
// use.
//
// Cache layout (usable as a guest's tce dir):
//
//	<Cache>/optional/NAME.tcz           the extension, md5-verified
//	<Cache>/optional/NAME.tcz.md5.txt   "<md5>  NAME.tcz"
//	<Cache>/optional/NAME.tcz.dep       dependencies (written, possibly empty, when fetched)
//	<Cache>/optional/NAME.tcz.info      written by Info
//
// Files written into a target by Install (see Install):
//
//	usr/local/tce.installed/NAME              the package's own script, or an empty marker
//	usr/local/tce.installed/.files/NAME.list  names Install created for NAME, one per line
//	usr/local/tce.installed/.firstboot.lst    offline only: commands queued for first boot
//	opt/bootsync.sh                           offline only: a "tinyfarm tcz-firstboot" block that runs the queue
//	<tce dir>/onboot.lst                      with Onboot: the top-level name as NAME.tcz
package tcz

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/sync/errgroup"

	"github.com/tinyfarm/tinyfarm/stdlib/target"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"
)

// Sentinel errors; every error from this package wraps one of them (or a
// context error); their class (errkind) gives their Lua kind.
var (
	// ErrNotFound: no such extension on the mirror or in the cache, or not installed.
	ErrNotFound = errkind.NotFound("not found")
	// ErrInvalid: a malformed name, .dep, .info, md5 file or archive.
	ErrInvalid = errkind.Invalid("invalid")
	// ErrChecksum: downloaded or cached content does not match its md5.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrUnsafePath: an archive entry would land outside the target root,
	// or is a refused device node. The same value as target.ErrUnsafePath.
	ErrUnsafePath = target.ErrUnsafePath
)

// Logf is a printf-style logger.
type Logf func(format string, args ...any)

// Config configures a [Client]. Zero fields take the documented default.
type Config struct {
	// URL is the mirror base: http://, https:// or file://. Default
	// "http://repo.tinycorelinux.net".
	URL string
	// Version is the release directory, "15.x" (also accepts "15" or
	// "15.0"). Default "15.x".
	Version string
	// Arch is the build directory: x86, x86_64, armv6, armv7, aarch64.
	// Default "x86_64".
	Arch string
	// Cache is the local cache (tce dir layout). Default
	// $XDG_CACHE_HOME/tinyfarm/tcz/<Version>/<Arch>.
	Cache string
	// Kernel replaces "-KERNEL" in dependency names, as `uname -r` would
	// in the guest ("6.6.8-tinycore64"). Default "": a -KERNEL dependency
	// is an ErrInvalid error.
	Kernel string
	// HTTP is the client for http(s) mirrors. Default: a new http.Client
	// with no timeout (contexts cancel).
	HTTP *http.Client
	// Concurrency bounds parallel downloads and .dep look-ups. Default 4.
	Concurrency int
	// Progress receives a download progress bar, drawn only when it is a
	// terminal (an *os.File on a TTY) or ForceProgress is set. Default nil:
	// no progress output.
	Progress io.Writer
	// ForceProgress draws the bar even when Progress is not a terminal.
	// Default false.
	ForceProgress bool
	// Logf receives warnings (dependency cycles) and notes. Default: discard.
	Logf Logf
	// Limits bound archives handled by Install. Default: see [Limits].
	Limits Limits
	// InstallMemory bounds the decompressed content the Client's
	// Installs (together) hold in memory between checking archives and
	// writing them, so that each block is decompressed once. Content
	// beyond it is checked, then decompressed again when written.
	// Default 64 MiB; negative: none is held.
	InstallMemory int64
}

// Client talks to one mirror and owns one cache.
type Client struct {
	cfg  Config
	base string // <url>/<version>/<arch>/tcz

	// mem is what Installs may hold in memory (Config.InstallMemory);
	// nil: nothing.
	mem *budget

	mu sync.Mutex
	// verified records, by cache path, the .tcz files this Client has
	// md5-checked, as they were then (see openVerified).
	verified map[string]verifiedFile
}

// verifiedFile is a cached .tcz as it was when its md5 matched want.
type verifiedFile struct {
	fi   os.FileInfo
	want string
	at   time.Time
}

// verifiedTTL is how long openVerified trusts a check this Client made:
// long enough to cover one Install (or image build) and no more, so a
// long-lived process still re-reads its cache now and then.
const verifiedTTL = time.Minute

var versionRE = regexp.MustCompile(`^(\d+)(\.(x|\d+))?$`)

// New checks cfg, fills defaults and creates the cache directory.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		cfg.URL = "http://repo.tinycorelinux.net"
	}
	if cfg.Version == "" {
		cfg.Version = "15.x"
	}
	m := versionRE.FindStringSubmatch(cfg.Version)
	if m == nil {
		return nil, fmt.Errorf("tcz mirror: version %q: want like 15.x: %w", cfg.Version, ErrInvalid)
	}
	cfg.Version = m[1] + ".x"
	if cfg.Arch == "" {
		cfg.Arch = "x86_64"
	}
	if strings.ContainsAny(cfg.Arch, "/ ") {
		return nil, fmt.Errorf("tcz mirror: arch %q: %w", cfg.Arch, ErrInvalid)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		return nil, fmt.Errorf("tcz mirror: url %q: want http, https or file: %w", cfg.URL, ErrInvalid)
	}
	if cfg.Cache == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("tcz mirror: cache: %w", err)
		}
		cfg.Cache = filepath.Join(d, "tinyfarm", "tcz", cfg.Version, cfg.Arch)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.InstallMemory == 0 {
		cfg.InstallMemory = 64 << 20
	}
	if err := os.MkdirAll(filepath.Join(cfg.Cache, "optional"), 0o755); err != nil {
		return nil, fmt.Errorf("tcz mirror: cache: %w", err)
	}
	c := &Client{cfg: cfg, base: strings.TrimRight(cfg.URL, "/") + "/" + cfg.Version + "/" + cfg.Arch + "/tcz"}
	if cfg.InstallMemory > 0 {
		c.mem = &budget{left: cfg.InstallMemory}
	}
	return c, nil
}

// Config returns the client's configuration with defaults filled in.
func (c *Client) Config() Config { return c.cfg }

// URL returns the mirror URL of file (e.g. "nginx.tcz.dep").
func (c *Client) URL(file string) string { return c.base + "/" + file }

// CachePath returns the cache path of file in optional/.
func (c *Client) CachePath(file string) string {
	return filepath.Join(c.cfg.Cache, "optional", file)
}

// Name validates an extension name and strips ".tcz". "-KERNEL" is
// replaced with the configured kernel version.
func (c *Client) Name(n string) (string, error) {
	n = strings.TrimSuffix(strings.TrimSpace(n), ".tcz")
	if strings.HasSuffix(n, "-KERNEL") {
		if c.cfg.Kernel == "" {
			return "", fmt.Errorf("name %s: -KERNEL needs Config.Kernel: %w", n, ErrInvalid)
		}
		n = strings.TrimSuffix(n, "KERNEL") + c.cfg.Kernel
	}
	if err := checkPkgName(n); err != nil {
		return "", err
	}
	return n, nil
}

func checkPkgName(n string) error {
	if n == "" || n == "." || n == ".." || strings.HasPrefix(n, ".") || strings.ContainsAny(n, "/\\\x00 \t\r\n") {
		return fmt.Errorf("name %q: %w", n, ErrInvalid)
	}
	return nil
}

// get opens file from the mirror's tcz directory. A missing file wraps
// ErrNotFound.
func (c *Client) get(ctx context.Context, file string) (io.ReadCloser, int64, error) {
	return c.getURL(ctx, c.URL(file))
}

// getURL opens a mirror URL (http, https or file). A missing file wraps
// ErrNotFound.
func (c *Client) getURL(ctx context.Context, u string) (io.ReadCloser, int64, error) {
	if strings.HasPrefix(u, "file://") {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, 0, fmt.Errorf("get %s: %w", u, err)
		}
		f, err := os.Open(pu.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("get %s: %w", u, ErrNotFound)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("get %s: %w", u, err)
		}
		fi, _ := f.Stat()
		if fi != nil && fi.IsDir() {
			f.Close()
			return nil, 0, fmt.Errorf("get %s: a directory: %w", u, ErrNotFound)
		}
		return f, fi.Size(), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", u, err)
	}
	resp, err := c.cfg.HTTP.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("get %s: %w", u, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("get %s: %s: %w", u, resp.Status, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		resp.Body.Close()
		return nil, 0, fmt.Errorf("get %s: %s", u, resp.Status)
	}
	return resp.Body, resp.ContentLength, nil
}

// getSmall reads a small mirror file (≤ 16 MiB) into memory.
func (c *Client) getSmall(ctx context.Context, file string) ([]byte, error) {
	rc, _, err := c.get(ctx, file)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 16<<20+1))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", c.URL(file), err)
	}
	if len(b) > 16<<20 {
		return nil, fmt.Errorf("get %s: larger than 16 MiB: %w", c.URL(file), ErrInvalid)
	}
	return b, nil
}

// ParseDep parses a .dep file with tce-load's rules: all whitespace inside
// a line is deleted, blank lines are skipped, ".tcz" is stripped, and
// "-KERNEL" is replaced with kernel (an error if kernel is ""). There are no
// comments. Duplicates are kept once, in first-seen order.
func ParseDep(data []byte, kernel string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.Map(func(r rune) rune {
			if r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f' {
				return -1
			}
			return r
		}, sc.Text())
		if line == "" {
			continue
		}
		n := strings.TrimSuffix(line, ".tcz")
		if strings.HasSuffix(n, "-KERNEL") {
			if kernel == "" {
				return nil, fmt.Errorf("dep %s: -KERNEL needs a kernel version: %w", line, ErrInvalid)
			}
			n = strings.TrimSuffix(n, "KERNEL") + kernel
		}
		if err := checkPkgName(n); err != nil {
			return nil, fmt.Errorf("dep line %q: %w", line, err)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dep: %v: %w", err, ErrInvalid)
	}
	return out, nil
}

// Deps is a resolved install order.
type Deps struct {
	// Order lists every extension once, dependencies before dependents;
	// the requested names come last in request order where possible.
	Order []string
	// Warnings describes dropped cycle edges ("a -> b -> a").
	Warnings []string
	// depData holds fetched .dep bodies (nil = 404) for the cache.
	depData map[string][]byte
}

// Deps resolves names and their dependencies recursively. Each .dep is
// read from the cache when both the .tcz and its .dep are cached there,
// else from the mirror (a 404 means no dependencies) — so the missing
// dependencies of an already-cached extension are found too. Look-ups run
// concurrently (Config.Concurrency). A cycle is a warning and the edge is
// dropped; resolution never hangs.
func (c *Client) Deps(ctx context.Context, names ...string) (Deps, error) {
	var roots []string
	for _, n := range names {
		nn, err := c.Name(n)
		if err != nil {
			return Deps{}, fmt.Errorf("deps: %w", err)
		}
		roots = append(roots, nn)
	}
	graph := map[string][]string{}
	depData := map[string][]byte{}
	var mu sync.Mutex
	frontier := roots
	queued := map[string]bool{}
	for _, r := range roots {
		queued[r] = true
	}
	for len(frontier) > 0 {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(c.cfg.Concurrency)
		for _, n := range frontier {
			g.Go(func() error {
				deps, raw, err := c.depsOf(gctx, n)
				if err != nil {
					return err
				}
				mu.Lock()
				graph[n], depData[n] = deps, raw
				mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return Deps{}, fmt.Errorf("deps %s: %w", strings.Join(roots, " "), err)
		}
		var next []string
		for _, n := range frontier {
			for _, d := range graph[n] {
				if !queued[d] {
					queued[d] = true
					next = append(next, d)
				}
			}
		}
		frontier = next
	}
	res := Deps{depData: depData}
	state := map[string]int{}
	var stack []string
	var visit func(n string)
	visit = func(n string) {
		state[n] = 1
		stack = append(stack, n)
		for _, d := range graph[n] {
			switch state[d] {
			case 1:
				i := len(stack) - 1
				for i > 0 && stack[i] != d {
					i--
				}
				w := fmt.Sprintf("dependency cycle %s -> %s: edge %s -> %s dropped", strings.Join(stack[i:], " -> "), d, n, d)
				res.Warnings = append(res.Warnings, w)
				c.cfg.Logf("tcz: warning: %s", w)
			case 0:
				visit(d)
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = 2
		res.Order = append(res.Order, n)
	}
	for _, r := range roots {
		if state[r] == 0 {
			visit(r)
		}
	}
	return res, nil
}

func (c *Client) cached(file string) bool {
	fi, err := os.Stat(c.CachePath(file))
	return err == nil && fi.Mode().IsRegular()
}

// depsOf returns n's dependency list and the raw .dep (nil when the mirror
// has none).
func (c *Client) depsOf(ctx context.Context, n string) ([]string, []byte, error) {
	if c.cached(n+".tcz") && c.cached(n+".tcz.dep") {
		b, err := os.ReadFile(c.CachePath(n + ".tcz.dep"))
		if err != nil {
			return nil, nil, fmt.Errorf("dep %s: %w", n, err)
		}
		d, err := ParseDep(b, c.cfg.Kernel)
		if err != nil {
			return nil, nil, fmt.Errorf("dep %s: %w", n, err)
		}
		return d, b, nil
	}
	b, err := c.getSmall(ctx, n+".tcz.dep")
	if errors.Is(err, ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	d, err := ParseDep(b, c.cfg.Kernel)
	if err != nil {
		return nil, nil, fmt.Errorf("dep %s: %w", n, err)
	}
	return d, b, nil
}

// FetchOptions tunes [Client.Fetch].
type FetchOptions struct {
	// Check computes what would be downloaded and downloads nothing.
	// Default false.
	Check bool
}

// FetchResult reports a Fetch.
type FetchResult struct {
	// Order is the resolved install order (see Deps).
	Order []string
	// Downloaded lists the extensions fetched (or, in check mode, that
	// would be), in Order.
	Downloaded []string
	// MD5 is the md5 of each extension of Order that is in the cache
	// (in check mode, those not downloaded yet are missing).
	MD5 map[string]string
	// Changed is true when the cache changed (would change).
	Changed bool
	// Warnings are the resolution warnings.
	Warnings []string
}

// Fetch resolves names and downloads every extension in the tree that is
// not already in the cache with a matching md5, Config.Concurrency at a
// time. A download is written to a temporary file, its md5 compared with
// the mirror's NAME.tcz.md5.txt, and only then renamed into the cache: a
// mismatch returns an ErrChecksum error naming the extension and both
// sums, and leaves the cache as it was. A cached file whose md5 no longer
// matches is downloaded again.
func (c *Client) Fetch(ctx context.Context, opts FetchOptions, names ...string) (FetchResult, error) {
	return c.fetch(ctx, opts, false, names...)
}

// fetch is Fetch; with trust, a cached file this Client verified moments
// ago (see openVerified) is not read again.
func (c *Client) fetch(ctx context.Context, opts FetchOptions, trust bool, names ...string) (FetchResult, error) {
	deps, err := c.Deps(ctx, names...)
	if err != nil {
		return FetchResult{}, err
	}
	res := FetchResult{Order: deps.Order, Warnings: deps.Warnings}
	// Check the cached files concurrently (md5 is CPU-bound).
	cached := make([]bool, len(deps.Order))
	vg, vctx := errgroup.WithContext(ctx)
	vg.SetLimit(c.cfg.Concurrency)
	for i, n := range deps.Order {
		vg.Go(func() error {
			if err := vctx.Err(); err != nil {
				return err
			}
			f, _, err := c.openVerified(n, trust)
			if err == nil {
				f.Close()
				cached[i] = true
				return nil
			}
			if errors.Is(err, ErrChecksum) || errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		})
	}
	if err := vg.Wait(); err != nil {
		return res, err
	}
	var need []string
	for i, n := range deps.Order {
		if !cached[i] {
			need = append(need, n)
		}
	}
	res.Downloaded = need
	res.Changed = len(need) > 0
	if opts.Check {
		return res, c.cachedMD5(&res)
	}
	var bar *progressbar.ProgressBar
	if len(need) > 0 {
		bar = c.progress(fmt.Sprintf("tcz: fetching %d extension(s)", len(need)))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.cfg.Concurrency)
	for _, n := range need {
		g.Go(func() error { return c.download(gctx, n, bar) })
	}
	err = g.Wait()
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return res, err
	}
	// Record .dep files (the tree is now cached; an empty .dep means "none").
	for _, n := range deps.Order {
		if c.cached(n + ".tcz.dep") {
			continue
		}
		if err := writeAtomic(c.CachePath(n+".tcz.dep"), deps.depData[n]); err != nil {
			return res, fmt.Errorf("fetch %s: %w", n, err)
		}
	}
	return res, c.cachedMD5(&res)
}

// cachedMD5 fills res.MD5 from the cache's md5.txt files of res.Order,
// leaving out the extensions of res.Downloaded that are not there (check
// mode).
func (c *Client) cachedMD5(res *FetchResult) error {
	res.MD5 = make(map[string]string, len(res.Order))
	for _, n := range res.Order {
		b, err := os.ReadFile(c.CachePath(n + ".tcz.md5.txt"))
		if errors.Is(err, fs.ErrNotExist) && slices.Contains(res.Downloaded, n) {
			continue
		}
		if err != nil {
			return fmt.Errorf("fetch %s: %w", n, err)
		}
		if res.MD5[n], err = readMD5(b); err != nil {
			return fmt.Errorf("fetch %s: %w", n, err)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// verifyCached reports whether n.tcz is cached with a matching md5.txt.
// ErrNotFound: not cached; ErrChecksum: cached but corrupt. It always
// reads the whole file.
func (c *Client) verifyCached(n string) (bool, error) {
	f, _, err := c.openVerified(n, false)
	if err != nil {
		return false, err
	}
	f.Close()
	return true, nil
}

// openVerified opens the cached n.tcz after checking it against its
// md5.txt; errors as for verifyCached. The check reads the open file, so
// what it passed is what the caller reads. With trust, a file this Client
// verified against the same md5 less than verifiedTTL ago, and that is
// still the same file (same inode, size and modification time), is not
// read again.
func (c *Client) openVerified(n string, trust bool) (*os.File, os.FileInfo, error) {
	mb, err := os.ReadFile(c.CachePath(n + ".tcz.md5.txt"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("cache %s: %w", n, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cache %s: %w", n, err)
	}
	want, err := readMD5(mb)
	if err != nil {
		return nil, nil, fmt.Errorf("cache %s: %w", n, err)
	}
	p := c.CachePath(n + ".tcz")
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("cache %s: %w", n, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cache %s: %w", n, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file: %w", ErrNotFound)
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("cache %s: %w", n, err)
	}
	if trust && c.wasVerified(p, fi, want) {
		return f, fi, nil
	}
	got, err := readerMD5(io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("cache %s: %w", n, err)
	}
	if got != want {
		f.Close()
		return nil, nil, fmt.Errorf("cache %s.tcz: md5 %s, expected %s: %w", n, got, want, ErrChecksum)
	}
	c.markVerified(p, fi, want)
	return f, fi, nil
}

func (c *Client) markVerified(p string, fi os.FileInfo, want string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.verified == nil {
		c.verified = map[string]verifiedFile{}
	}
	c.verified[p] = verifiedFile{fi: fi, want: want, at: time.Now()}
}

func (c *Client) wasVerified(p string, fi os.FileInfo, want string) bool {
	c.mu.Lock()
	v, ok := c.verified[p]
	c.mu.Unlock()
	return ok && time.Since(v.at) < verifiedTTL && v.want == want && os.SameFile(v.fi, fi) && v.fi.Size() == fi.Size() && v.fi.ModTime().Equal(fi.ModTime())
}

func (c *Client) download(ctx context.Context, n string, bar *progressbar.ProgressBar) error {
	mb, err := c.getSmall(ctx, n+".tcz.md5.txt")
	if errors.Is(err, ErrNotFound) {
		// No md5 on the mirror: is the extension there at all?
		return fmt.Errorf("fetch %s: %s.tcz.md5.txt missing on mirror: %w", n, n, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("fetch %s: %w", n, err)
	}
	want, err := readMD5(mb)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", n, err)
	}
	dst := c.CachePath(n + ".tcz")
	fi, err := c.fetchVerified(ctx, c.URL(n+".tcz"), dst, want, bar)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", n, err)
	}
	// The .tcz before its md5.txt: an md5.txt first would make a half-state
	// look valid; without a matching md5.txt the .tcz is simply fetched again.
	c.markVerified(dst, fi, want)
	if err := writeAtomic(c.CachePath(n+".tcz.md5.txt"), []byte(want+"  "+n+".tcz\n")); err != nil {
		return fmt.Errorf("fetch %s: %w", n, err)
	}
	c.cfg.Logf("tcz: fetched %s.tcz (%s)", n, want)
	return nil
}

// writeAtomic writes data to p via temp + fsync + rename.
func writeAtomic(p string, data []byte) error {
	return fsutil.WriteFileAtomic(p, data, 0o644)
}
