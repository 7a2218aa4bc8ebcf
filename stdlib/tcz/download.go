package tcz

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// fetchVerified is the one download path of the package (extensions and
// release files): it streams the mirror URL u into a temporary file next
// to dst, hashing as it goes (and feeding bar, if any), refuses content
// whose md5 is not want (ErrChecksum, the cache left as it was), then
// fsyncs, makes it 0644 and renames it over dst, so dst is either the old
// file or the complete, verified new one. It returns the new file's info
// (the inode keeps its size and mtime through the chmod and rename).
func (c *Client) fetchVerified(ctx context.Context, u, dst, want string, bar *progressbar.ProgressBar) (os.FileInfo, error) {
	rc, _, err := c.getURL(ctx, u)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tf-"+filepath.Base(dst)+"-*.part")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := md5.New()
	var w io.Writer = io.MultiWriter(tmp, h)
	if bar != nil {
		w = io.MultiWriter(w, bar)
	}
	if _, err := io.Copy(w, rc); err != nil {
		return nil, fmt.Errorf("get %s: %w", u, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return nil, fmt.Errorf("%s: md5 %s, expected %s: %w", u, got, want, ErrChecksum)
	}
	if err := tmp.Sync(); err != nil {
		return nil, err
	}
	fi, err := tmp.Stat()
	if err != nil {
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return nil, err
	}
	if d, err := os.Open(filepath.Dir(dst)); err == nil {
		_ = d.Sync() // make the rename durable; best effort
		d.Close()
	}
	return fi, nil
}

// progress returns a download progress bar titled desc, or nil when
// Config.Progress is unset or not a terminal (and ForceProgress is off).
func (c *Client) progress(desc string) *progressbar.ProgressBar {
	w := c.cfg.Progress
	if w == nil {
		return nil
	}
	if !c.cfg.ForceProgress {
		f, ok := w.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return nil
		}
	}
	return progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionThrottle(0),
		progressbar.OptionSetRenderBlankState(true),
	)
}

// readMD5 parses an md5 file: "<32 hex>  NAME".
func readMD5(b []byte) (string, error) {
	f := strings.Fields(string(b))
	if len(f) == 0 || len(f[0]) != 32 {
		return "", fmt.Errorf("md5 file %q: %w", truncate(string(b), 80), ErrInvalid)
	}
	if _, err := hex.DecodeString(f[0]); err != nil {
		return "", fmt.Errorf("md5 file %q: %w", truncate(string(b), 80), ErrInvalid)
	}
	return strings.ToLower(f[0]), nil
}

func fileMD5(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return readerMD5(f)
}

func readerMD5(r io.Reader) (string, error) {
	h := md5.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
