package ssh

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"

	"github.com/pkg/sftp"
)

// Default modes of written files.
const (
	// DefaultFileMode is the mode of files written with mode 0.
	DefaultFileMode fs.FileMode = 0o644
)

// sftpClient returns the connection's SFTP subsystem, starting it on first use.
func (c *Client) sftpClient(ctx context.Context) (*sftp.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sftp != nil {
		return c.sftp, nil
	}
	// Starting the subsystem opens a session; once running, sftp-server does not exit, so the
	// session token is needed only for the start.
	release, err := c.acquire(ctx)
	if err != nil {
		return nil, err
	}
	s, err := sftp.NewClient(c.conn, sftp.UseConcurrentWrites(true))
	release()
	if err != nil {
		return nil, fmt.Errorf("start sftp: %w", err)
	}
	c.sftp = s
	go func() {
		// Forget a subsystem that died (e.g. sftp-server crashed) so the next call restarts it.
		_ = s.Wait()
		c.mu.Lock()
		if c.sftp == s {
			c.sftp = nil
		}
		c.mu.Unlock()
	}()
	return s, nil
}

// WriteFile writes data to the remote path atomically: into a temporary file in the same
// directory, chmod to mode (0 means 0644, applied exactly, whatever the remote umask), fsync
// when the server supports it, then renamed over path (posix-rename@openssh.com; without it,
// path is removed first, so the replacement is no longer atomic). The parent directory must exist.
func (c *Client) WriteFile(ctx context.Context, remotePath string, data []byte, mode fs.FileMode) error {
	if err := c.writeAtomic(ctx, remotePath, &ctxReader{ctx: ctx, r: bytes.NewReader(data)}, mode); err != nil {
		return fmt.Errorf("write %s:%s: %w", c.dest, remotePath, err)
	}
	return nil
}

// Put copies the local file to remotePath atomically, as [Client.WriteFile] does. Mode 0 takes
// the local file's permission bits.
func (c *Client) Put(ctx context.Context, localPath, remotePath string, mode fs.FileMode) error {
	f, err := os.Open(localPath)
	if err != nil {
		return fmt.Errorf("put %s: %w", localPath, err)
	}
	defer f.Close()
	if mode == 0 {
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("put %s: %w", localPath, err)
		}
		mode = st.Mode().Perm()
	}
	if err := c.writeAtomic(ctx, remotePath, &ctxReader{ctx: ctx, r: f}, mode); err != nil {
		return fmt.Errorf("put %s to %s:%s: %w", localPath, c.dest, remotePath, err)
	}
	return nil
}

// PutReader copies r to remotePath atomically, as [Client.WriteFile] does (mode 0 means 0644).
func (c *Client) PutReader(ctx context.Context, r io.Reader, remotePath string, mode fs.FileMode) error {
	if err := c.writeAtomic(ctx, remotePath, &ctxReader{ctx: ctx, r: r}, mode); err != nil {
		return fmt.Errorf("put %s:%s: %w", c.dest, remotePath, err)
	}
	return nil
}

func (c *Client) writeAtomic(ctx context.Context, remotePath string, r io.Reader, mode fs.FileMode) (err error) {
	if err := ctx.Err(); err != nil {
		return ctxError(ctx, err)
	}
	if mode == 0 {
		mode = DefaultFileMode
	}
	s, err := c.sftpClient(ctx)
	if err != nil {
		return err
	}
	tmp := path.Join(path.Dir(remotePath), "."+path.Base(remotePath)+"."+randomSuffix()+".tmp")
	f, err := s.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			_ = s.Remove(tmp)
		}
	}()
	if _, err := f.ReadFrom(r); err != nil {
		if ctx.Err() != nil {
			return ctxError(ctx, err)
		}
		return fmt.Errorf("copy to %s: %w", tmp, err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	if _, ok := s.HasExtension("fsync@openssh.com"); ok {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("fsync %s: %w", tmp, err)
		}
	}
	err = f.Close()
	f = nil
	if err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if _, ok := s.HasExtension("posix-rename@openssh.com"); ok && !c.noPosixRename {
		if err := s.PosixRename(tmp, remotePath); err != nil {
			return fmt.Errorf("rename %s: %w", tmp, err)
		}
		return nil
	}
	// Plain SFTP rename refuses to replace an existing file.
	if err := s.Remove(remotePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("replace: %w", err)
	}
	if err := s.Rename(tmp, remotePath); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// ReadFile returns the content of the remote file.
func (c *Client) ReadFile(ctx context.Context, remotePath string) ([]byte, error) {
	s, err := c.sftpClient(ctx)
	if err != nil {
		return nil, fmt.Errorf("read %s:%s: %w", c.dest, remotePath, err)
	}
	f, err := s.Open(remotePath)
	if err != nil {
		return nil, fmt.Errorf("read %s:%s: %w", c.dest, remotePath, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := f.WriteTo(&ctxWriter{ctx: ctx, w: &buf}); err != nil {
		if ctx.Err() != nil {
			err = ctxError(ctx, err)
		}
		return nil, fmt.Errorf("read %s:%s: %w", c.dest, remotePath, err)
	}
	return buf.Bytes(), nil
}

// Get copies the remote file to localPath, atomically (temp file, fsync, rename) and with the
// remote file's permission bits.
func (c *Client) Get(ctx context.Context, remotePath, localPath string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("get %s:%s to %s: %w", c.dest, remotePath, localPath, err)
		}
	}()
	s, err := c.sftpClient(ctx)
	if err != nil {
		return err
	}
	rf, err := s.Open(remotePath)
	if err != nil {
		return err
	}
	defer rf.Close()
	st, err := rf.Stat()
	if err != nil {
		return err
	}
	lf, err := os.CreateTemp(filepath.Dir(localPath), "."+filepath.Base(localPath)+".tmp*")
	if err != nil {
		return err
	}
	tmp := lf.Name()
	defer func() {
		lf.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := rf.WriteTo(&ctxWriter{ctx: ctx, w: lf}); err != nil {
		if ctx.Err() != nil {
			return ctxError(ctx, err)
		}
		return err
	}
	if err := lf.Chmod(st.Mode().Perm()); err != nil {
		return err
	}
	if err := lf.Sync(); err != nil {
		return err
	}
	if err := lf.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, localPath)
}

// Stat returns the remote file's information, following symlinks. A missing file gives an
// error wrapping fs.ErrNotExist.
func (c *Client) Stat(ctx context.Context, remotePath string) (fs.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("stat %s:%s: %w", c.dest, remotePath, ctxError(ctx, err))
	}
	s, err := c.sftpClient(ctx)
	if err == nil {
		var fi fs.FileInfo
		if fi, err = s.Stat(remotePath); err == nil {
			return fi, nil
		}
	}
	return nil, fmt.Errorf("stat %s:%s: %w", c.dest, remotePath, err)
}

// MkdirAll creates the remote directory and its missing parents with mode (0 means 0755).
func (c *Client) MkdirAll(ctx context.Context, remotePath string, mode fs.FileMode) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("mkdir %s:%s: %w", c.dest, remotePath, ctxError(ctx, err))
	}
	if mode == 0 {
		mode = 0o755
	}
	s, err := c.sftpClient(ctx)
	if err == nil {
		err = s.MkdirAll(remotePath)
	}
	if err == nil {
		err = s.Chmod(remotePath, mode)
	}
	if err != nil {
		return fmt.Errorf("mkdir %s:%s: %w", c.dest, remotePath, err)
	}
	return nil
}

// Remove removes the remote file or empty directory. A missing path gives an error wrapping
// fs.ErrNotExist.
func (c *Client) Remove(ctx context.Context, remotePath string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s:%s: %w", c.dest, remotePath, ctxError(ctx, err))
	}
	s, err := c.sftpClient(ctx)
	if err == nil {
		err = s.Remove(remotePath)
	}
	if err != nil {
		return fmt.Errorf("remove %s:%s: %w", c.dest, remotePath, err)
	}
	return nil
}

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ctxReader stops a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// ctxWriter stops a copy once ctx is done.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (w *ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	return w.w.Write(p)
}
