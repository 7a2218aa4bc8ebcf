package tcz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// ReleaseNames are the file names of a release's boot files in
// <mirror>/<version>/<arch>/release/distribution_files/, as the official
// mirror names them for an arch (TINYCORE.md §1). Each has <name>.md5.txt
// beside it.
type ReleaseNames struct {
	// Core is the initramfs a frugal boot loads: Rootfs followed by
	// Modules (two gzip members).
	Core string
	// Rootfs is the root file system alone, Modules the kernel modules.
	Rootfs, Modules string
	// Kernel is the bzImage.
	Kernel string
}

// ReleaseFiles returns the official release file names for arch: x86_64
// (CorePure64) has corepure64.gz, rootfs64.gz, modules64.gz and vmlinuz64
// and no core.gz; x86 has core.gz, rootfs.gz, modules.gz and vmlinuz.
// Other arches (piCore) are an ErrInvalid error: their releases are images,
// not these files.
func ReleaseFiles(arch string) (ReleaseNames, error) {
	switch arch {
	case "x86_64":
		return ReleaseNames{Core: "corepure64.gz", Rootfs: "rootfs64.gz", Modules: "modules64.gz", Kernel: "vmlinuz64"}, nil
	case "x86":
		return ReleaseNames{Core: "core.gz", Rootfs: "rootfs.gz", Modules: "modules.gz", Kernel: "vmlinuz"}, nil
	}
	return ReleaseNames{}, fmt.Errorf("release files of arch %q: only x86_64 and x86 are known; give a local core: %w", arch, ErrInvalid)
}

// ReleaseURL returns the mirror URL of a release file ("corepure64.gz").
func (c *Client) ReleaseURL(name string) string {
	return strings.TrimRight(c.cfg.URL, "/") + "/" + c.cfg.Version + "/" + c.cfg.Arch + "/release/distribution_files/" + name
}

// ReleaseCachePath returns where FetchRelease caches a release file:
// <cache>/release/<name>.
func (c *Client) ReleaseCachePath(name string) string {
	return filepath.Join(c.cfg.Cache, "release", name)
}

// FetchRelease returns the local copy of the release file name (e.g.
// "corepure64.gz", "vmlinuz64"): it reads <name>.md5.txt from the mirror,
// keeps a cached copy whose md5 matches, else downloads the file, checks
// it (ErrChecksum) and caches it by name. It also returns the md5. With
// o.Check nothing is downloaded: a file not cached yet gives path "".
func (c *Client) FetchRelease(ctx context.Context, name string, o FetchOptions) (path, sum string, err error) {
	if err := checkPkgName(name); err != nil {
		return "", "", fmt.Errorf("release file: %w", err)
	}
	mb, err := c.getRelease(ctx, name+".md5.txt", 1<<10)
	if err != nil {
		return "", "", err
	}
	want, err := readMD5(mb)
	if err != nil {
		return "", "", fmt.Errorf("release file %s: %w", name, err)
	}
	dst := c.ReleaseCachePath(name)
	if got, err := fileMD5(dst); err == nil && got == want {
		return dst, want, nil
	}
	if o.Check {
		return "", want, nil
	}
	bar := c.progress("tcz: fetching " + name)
	_, err = c.fetchVerified(ctx, c.ReleaseURL(name), dst, want, bar)
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return "", "", fmt.Errorf("release file %s: %w", name, c.releaseHint(err))
	}
	c.cfg.Logf("tcz: fetched release file %s (%s)", name, want)
	return dst, want, nil
}

// getRelease reads a small release file (an md5.txt) from the mirror.
func (c *Client) getRelease(ctx context.Context, name string, limit int64) ([]byte, error) {
	u := c.ReleaseURL(name)
	rc, _, err := c.getURL(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("release file %s: %w", name, c.releaseHint(err))
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, fmt.Errorf("release file %s: get %s: %w", name, u, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("release file %s: larger than %d bytes: %w", u, limit, ErrInvalid)
	}
	return b, nil
}

// releaseHint adds the official release file names of the arch to a
// not-found error.
func (c *Client) releaseHint(err error) error {
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	hint := ""
	if rn, rerr := ReleaseFiles(c.cfg.Arch); rerr == nil {
		hint = fmt.Sprintf(" (the official names for %s: %s, %s + %s, %s)", c.cfg.Arch, rn.Core, rn.Rootfs, rn.Modules, rn.Kernel)
	}
	return fmt.Errorf("not on the mirror%s: %w", hint, err)
}
