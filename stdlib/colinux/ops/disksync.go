package ops

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

type syncStats struct {
	size       int64
	chunks     int
	chunksSent int
	bytesSent  int64
	sum        string
}

// syncDisk makes the far file dst equal to src: it asks the far side for
// the sha256 of each chunk it holds, sends only the chunks that differ
// (all-zero chunks as holes), and compares the whole file's sha256 as
// the far side computes it after writing.
func syncDisk(ctx context.Context, c *ssh.Client, to Remote, src, dst string, chunk int64) (syncStats, error) {
	var st syncStats
	out, err := to.tinyfarm(ctx, c, nil, "migrate", "sums", "--chunk", strconv.FormatInt(chunk, 10), dst)
	if err != nil {
		return st, err
	}
	_, far, err := parseSums(out)
	if err != nil {
		return st, fmt.Errorf("far chunk sums: %w", err)
	}
	f, err := os.Open(src)
	if err != nil {
		return st, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, err
	}
	st.size = fi.Size()
	pr, pw := io.Pipe()
	type recvOut struct {
		out []byte
		err error
	}
	done := make(chan recvOut, 1)
	go func() {
		out, err := to.tinyfarm(ctx, c, pr, "migrate", "recv", "--size", strconv.FormatInt(st.size, 10), dst)
		pr.CloseWithError(errors.New("receiver ended"))
		done <- recvOut{out, err}
	}()
	whole := sha256.New()
	bw := bufio.NewWriterSize(pw, 1<<20)
	buf := make([]byte, chunk)
	werr := func() error {
		for i := 0; int64(i)*chunk < st.size; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := io.ReadFull(f, buf[:min(chunk, st.size-int64(i)*chunk)])
			if err != nil {
				return fmt.Errorf("read %s: %w", src, err)
			}
			b := buf[:n]
			whole.Write(b)
			st.chunks++
			sum := sha256.Sum256(b)
			if i < len(far) && far[i] == hex.EncodeToString(sum[:]) {
				continue
			}
			kind := byte('D')
			if zeroChunk(b) {
				kind = 'Z'
			}
			if err := writeFrame(bw, kind, int64(i)*chunk, b); err != nil {
				return err
			}
			st.chunksSent++
			if kind == 'D' {
				st.bytesSent += int64(n)
			}
		}
		if err := writeFrame(bw, 'E', 0, nil); err != nil {
			return err
		}
		return bw.Flush()
	}()
	pw.CloseWithError(werr)
	r := <-done
	if werr != nil {
		return st, fmt.Errorf("send %s: %w", src, werr)
	}
	if r.err != nil {
		return st, r.err
	}
	st.sum = hex.EncodeToString(whole.Sum(nil))
	got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(r.out)), "sha256 "))
	if got != st.sum {
		return st, fmt.Errorf("verify: the far copy's sha256 is %s, here %s", got, st.sum)
	}
	return st, nil
}

// Frames of the copy stream: kind ('D' data, 'Z' zeros, 'E' end), the
// offset (8 bytes) and the length (4 bytes, big endian), then the data
// of a 'D' frame.
func writeFrame(w io.Writer, kind byte, off int64, data []byte) error {
	var h [13]byte
	h[0] = kind
	binary.BigEndian.PutUint64(h[1:], uint64(off))
	binary.BigEndian.PutUint32(h[9:], uint32(len(data)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if kind == 'D' {
		_, err := w.Write(data)
		return err
	}
	return nil
}

// ChunkSums writes, for the far side of a migration, the size of path and
// the sha256 of each chunk of it ("size N" then one hex sum per line). A
// missing file has size 0 and no chunks.
func ChunkSums(path string, chunk int64, w io.Writer) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		_, err = fmt.Fprintln(w, "size 0")
		return err
	}
	if err != nil {
		return fmt.Errorf("sums %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sums %s: %w", path, err)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "size %d\n", fi.Size())
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			s := sha256.Sum256(buf[:n])
			fmt.Fprintln(bw, hex.EncodeToString(s[:]))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("sums %s: %w", path, err)
		}
	}
	return bw.Flush()
}

func parseSums(b []byte) (int64, []string, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	size, ok := strings.CutPrefix(lines[0], "size ")
	if !ok {
		return 0, nil, fmt.Errorf("want \"size N\", got %q", abbrevBytes(b))
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		return 0, nil, err
	}
	return n, lines[1:], nil
}

// ReceiveChunks is the far side of a migration's copy: it applies the
// frames read from r to path (created with its directory if missing),
// sets its size, syncs it and returns the sha256 of the whole file.
func ReceiveChunks(path string, size int64, r io.Reader) (string, error) {
	fail := func(err error) (string, error) { return "", fmt.Errorf("receive %s: %w", path, err) }
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var h [13]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return fail(fmt.Errorf("stream ended early: %w", err))
		}
		off, n := int64(binary.BigEndian.Uint64(h[1:])), int64(binary.BigEndian.Uint32(h[9:]))
		if h[0] == 'E' {
			break
		}
		if off < 0 || off+n > size {
			return fail(fmt.Errorf("frame at %d+%d outside the %d bytes", off, n, size))
		}
		switch h[0] {
		case 'D':
			if int64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			if _, err := io.ReadFull(br, buf[:n]); err != nil {
				return fail(err)
			}
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return fail(err)
			}
		case 'Z':
			if err := zeroRange(f, off, n); err != nil {
				return fail(err)
			}
		default:
			return fail(fmt.Errorf("bad frame kind %q", h[0]))
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	s := sha256.New()
	if _, err := io.Copy(s, f); err != nil {
		return fail(err)
	}
	return hex.EncodeToString(s.Sum(nil)), nil
}

func zeroChunk(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
