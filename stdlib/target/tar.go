package target

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
)

// WriteTar writes changes as one tar stream to w, in order, for targets
// whose bulk path is "pipe a tar stream into the guest" (an SSH target runs
// `tar -x -p -C / -f -` there). Names are written relative ("usr/local/x");
// regular-file bodies are streamed, so memory use does not grow with the
// archive. TypeRemove cannot be expressed in tar and gives ErrUnsupported:
// apply removals separately. WriteTar writes the tar trailer but does not
// close w. A body whose Size is unknown (0) is spooled in memory first.
func WriteTar(ctx context.Context, w io.Writer, changes []Change) error {
	tw := tar.NewWriter(w)
	for _, c := range changes {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := Clean(c.Name)
		if err != nil {
			return err
		}
		h := &tar.Header{
			Name:     n,
			Mode:     int64(UnixMode(c.Mode)),
			Uid:      c.Uid,
			Gid:      c.Gid,
			ModTime:  c.ModTime,
			Linkname: c.Linkname,
			Format:   tar.FormatPAX,
		}
		switch c.Type {
		case TypeRegular:
			h.Typeflag = tar.TypeReg
		case TypeDir:
			h.Typeflag, h.Name = tar.TypeDir, n+"/"
		case TypeSymlink:
			h.Typeflag = tar.TypeSymlink
		case TypeHardlink:
			ln, err := Clean(c.Linkname)
			if err != nil {
				return err
			}
			h.Typeflag, h.Linkname = tar.TypeLink, ln
		case TypeChar:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, int64(c.Major), int64(c.Minor)
		case TypeBlock:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeBlock, int64(c.Major), int64(c.Minor)
		case TypeFifo:
			h.Typeflag = tar.TypeFifo
		default:
			return fmt.Errorf("tar %s: %v: %w", n, c.Type, ErrUnsupported)
		}
		if c.Type != TypeRegular || c.Body == nil {
			if err := tw.WriteHeader(h); err != nil {
				return fmt.Errorf("tar %s: %w", n, err)
			}
			continue
		}
		rc, err := c.Body()
		if err != nil {
			return fmt.Errorf("tar %s: %w", n, err)
		}
		// The size must be known before the header; spool small bodies
		// in memory only when the caller did not say.
		size := c.Size
		var body io.Reader = rc
		if size <= 0 {
			b, err := io.ReadAll(rc)
			if err != nil {
				rc.Close()
				return fmt.Errorf("tar %s: %w", n, err)
			}
			size, body = int64(len(b)), bytes.NewReader(b)
		}
		h.Size = size
		if err := tw.WriteHeader(h); err != nil {
			rc.Close()
			return fmt.Errorf("tar %s: %w", n, err)
		}
		_, err = io.CopyN(tw, body, size)
		rc.Close()
		if err != nil {
			return fmt.Errorf("tar %s: body shorter than Size %d: %w", n, size, err)
		}
	}
	return tw.Close()
}
