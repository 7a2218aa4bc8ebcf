package ops

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

type syncStats struct {
	size       int64
	chunks     int
	chunksSent int
	bytesSent  int64
	// sums are the chunks here, which the far copy holds now (verified
	// there): the next pass's prev.
	sums chunkSums
	// farSums is how long the far side took to answer its chunk sums
	// (the round trip, with the far tinyfarm's start); 0 with prev.
	farSums time.Duration
	// send is the read, hash and send here; farAnswer the wait after it
	// for the far side's answer (its writes, fsync and read back).
	send, farAnswer time.Duration
}

// farCall is a far tinyfarm command started ahead of its input: its SSH
// session and the far tinyfarm's start are not waited for once the input
// is ready (what an offline move's downtime would wait for otherwise).
type farCall struct {
	size   int64 // a receiver's (openRecv)
	pw     *io.PipeWriter
	done   chan farOut
	waited bool
	res    farOut
}

// wait waits for the far command's answer (once; then it is kept).
func (f *farCall) wait() farOut {
	if !f.waited {
		f.res, f.waited = <-f.done, true
	}
	return f.res
}

type farOut struct {
	out []byte
	err error
}

// startFar starts the far tinyfarm with args over c, its stdin fed by
// what is written to the call's pw.
func startFar(ctx context.Context, c *ssh.Client, to Remote, args ...string) *farCall {
	pr, pw := io.Pipe()
	f := &farCall{pw: pw, done: make(chan farOut, 1)}
	go func() {
		out, err := to.tinyfarm(ctx, c, pr, args...)
		pr.CloseWithError(errors.New("the far command ended"))
		f.done <- farOut{out, err}
	}()
	return f
}

// openRecv opens the far receiver of src's copy to dst ahead of the pass
// that feeds it (syncChunks' rv).
func openRecv(ctx context.Context, c *ssh.Client, to Remote, src, dst string) (*farCall, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, err
	}
	f := startFar(ctx, c, to, recvArgs(dst, fi.Size())...)
	f.size = fi.Size()
	return f, nil
}

func recvArgs(dst string, size int64) []string {
	return []string{"migrate", "recv", "--chunk-sums", "--size", strconv.FormatInt(size, 10), dst}
}

// send writes in as the far command's whole input and waits for its answer.
func (f *farCall) send(in []byte) ([]byte, error) {
	_, err := f.pw.Write(in)
	f.pw.CloseWithError(err)
	r := f.wait()
	if r.err == nil && err != nil {
		r.err = err
	}
	return r.out, r.err
}

// abort ends a call whose input will not come: its stdin ends early (a
// receiver writes nothing more, an import decodes no definition: nothing
// changes there) and it is waited for. Safe on nil, and once answered.
func (f *farCall) abort() {
	if f == nil {
		return
	}
	f.pw.CloseWithError(errors.New("aborted"))
	f.wait()
}

// chunkSums are the chunks of a far copy after a pass, as known here: the
// sha256 of each (verified there), and its quickSum, by which the next
// pass finds the chunks changed since without a sha256 of every chunk.
type chunkSums struct {
	sha   [][32]byte
	quick []uint64
}

// quickSeed keys quickSum: random per process, unknown to the guest, which
// so cannot make a changed chunk hash as the one it replaced (and by
// chance, two differ with the same quickSum once in 2^64).
var quickSeed = maphash.MakeSeed()

// quickSum hashes a chunk for the comparison of two passes here (some
// 10x the speed of sha256, which then hashes only the changed chunks).
func quickSum(b []byte) uint64 { return maphash.Bytes(quickSeed, b) }

// syncChunks makes the far file dst equal to src, chunk by chunk. A chunk
// is sent when it differs from what the far copy holds: prev, what an
// earlier pass of the same pair left there (verified; a chunk whose
// quickSum is prev's is unchanged since), else the sha256 sums the far
// side computes of its copy (asked first: a copy an interrupted move left
// is resumed). All-zero chunks go as holes, and holes here are not read
// (SEEK_DATA). The far side writes, syncs, reads back each chunk it wrote
// and answers its sha256, compared with the one here: every chunk there
// is verified by sha256, by that answer or by the far side's own sum,
// without rereading the whole disk there. rv: the far receiver opened
// ahead (openRecv), or nil (opened here); with rv, prev is all that is
// known of the far copy (nil: nothing; its sums are not asked for: rv may
// hold the connection's one session).
func syncChunks(ctx context.Context, c *ssh.Client, to Remote, src, dst string, chunk int64, prev *chunkSums, rv *farCall) (syncStats, error) {
	var st syncStats
	if rv != nil {
		defer rv.abort() // on an early return; a no-op once answered
	}
	var have [][32]byte
	var quick []uint64
	if prev != nil {
		have, quick = prev.sha, prev.quick
	} else if rv == nil {
		t0 := time.Now()
		out, err := to.tinyfarm(ctx, c, nil, "migrate", "sums", "--chunk", strconv.FormatInt(chunk, 10), dst)
		if err != nil {
			return st, err
		}
		st.farSums = time.Since(t0)
		_, far, err := parseSums(out)
		if err != nil {
			return st, fmt.Errorf("far chunk sums: %w", err)
		}
		for _, h := range far {
			var s [32]byte
			if b, err := hex.DecodeString(h); err == nil && len(b) == len(s) {
				copy(s[:], b)
			}
			have = append(have, s)
		}
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
	if rv == nil {
		rv = startFar(ctx, c, to, recvArgs(dst, st.size)...)
		defer rv.abort()
	} else if rv.size != st.size {
		return st, fmt.Errorf("send %s: its size changed to %d since the receiver was opened for %d", src, st.size, rv.size)
	}
	pw := rv.pw
	bw := bufio.NewWriterSize(pw, 1<<20)
	buf := make([]byte, chunk)
	zeros := zeroSums{}
	t1 := time.Now()
	var sent [][32]byte // the sums of the chunks sent, in order
	data := int64(-1)   // the next data offset at or after the one read, -1: look
	werr := func() error {
		for i := 0; int64(i)*chunk < st.size; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			off := int64(i) * chunk
			n := min(chunk, st.size-off)
			if data < off {
				data = seekData(f, off, st.size)
			}
			var sum [32]byte
			var q uint64
			b := buf[:n]
			hole := data >= off+n // nothing to read
			if hole {
				sum, q = zeros.of(n)
			} else {
				if _, err := f.ReadAt(b, off); err != nil {
					return fmt.Errorf("read %s: %w", src, err)
				}
				q = quickSum(b)
				if i < len(quick) && i < len(have) && quick[i] == q {
					sum = have[i] // unchanged since prev's pass
				} else {
					sum = sha256.Sum256(b)
				}
			}
			st.chunks++
			st.sums.sha, st.sums.quick = append(st.sums.sha, sum), append(st.sums.quick, q)
			if i < len(have) && have[i] == sum {
				continue
			}
			kind := byte('D')
			if hole || zeroChunk(b) {
				kind = 'Z'
			}
			if err := writeFrame(bw, kind, off, b); err != nil {
				return err
			}
			sent = append(sent, sum)
			st.chunksSent++
			if kind == 'D' {
				st.bytesSent += n
			}
		}
		if err := writeFrame(bw, 'E', 0, nil); err != nil {
			return err
		}
		return bw.Flush()
	}()
	pw.CloseWithError(werr)
	st.send = time.Since(t1)
	r := rv.wait()
	st.farAnswer = time.Since(t1) - st.send
	if werr != nil {
		return st, fmt.Errorf("send %s: %w", src, werr)
	}
	if r.err != nil {
		return st, r.err
	}
	_, got, err := parseSums(r.out)
	if err != nil {
		return st, fmt.Errorf("verify: the far side answered %q: %w", abbrevBytes(r.out), err)
	}
	if len(got) != len(sent) {
		return st, fmt.Errorf("verify: the far side wrote %d chunks, %d were sent", len(got), len(sent))
	}
	for i, h := range got {
		if want := hex.EncodeToString(sent[i][:]); h != want {
			return st, fmt.Errorf("verify: chunk %d sent: its sha256 there is %s, here %s", i, h, want)
		}
	}
	return st, nil
}

// zeroSums caches the sha256 and quickSum of all-zero chunks by length.
type zeroSums map[int64]struct {
	sha   [32]byte
	quick uint64
}

func (z zeroSums) of(n int64) ([32]byte, uint64) {
	s, ok := z[n]
	if !ok {
		b := make([]byte, n)
		s.sha, s.quick = sha256.Sum256(b), quickSum(b)
		z[n] = s
	}
	return s.sha, s.quick
}

// fileSHA256 is the sha256 of the file at path.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return readSHA256(f, path)
}

// readSHA256 is the sha256 of what r holds, the file name for errors.
func readSHA256(r io.Reader, name string) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", fmt.Errorf("sha256 %s: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
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
// frames read from r to path (created with its directory if missing,
// marked as a migration's copy; a file there that is not one is refused:
// see claimDisk), sets its size and syncs it. Then it answers on w: with
// chunkSums, each written chunk read back and hashed ("size N" then one
// sha256 per frame, in order: syncChunks); else, as before it (a
// tinyfarm that sends without --chunk-sums), the whole file's sha256
// ("sha256 HEX").
func ReceiveChunks(path string, size int64, r io.Reader, w io.Writer, chunkSums bool) error {
	fail := func(err error) error { return fmt.Errorf("receive %s: %w", path, err) }
	if err := claimDisk(path); err != nil {
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
	type frame struct{ off, n int64 }
	var frames []frame
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
		frames = append(frames, frame{off, n})
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	bw := bufio.NewWriter(w)
	if !chunkSums {
		s := sha256.New()
		if _, err := io.Copy(s, io.NewSectionReader(f, 0, size)); err != nil {
			return fail(err)
		}
		fmt.Fprintf(bw, "sha256 %s\n", hex.EncodeToString(s.Sum(nil)))
		return bw.Flush()
	}
	fmt.Fprintf(bw, "size %d\n", size)
	for _, fr := range frames {
		if int64(cap(buf)) < fr.n {
			buf = make([]byte, fr.n)
		}
		if _, err := f.ReadAt(buf[:fr.n], fr.off); err != nil {
			return fail(fmt.Errorf("read back %d+%d: %w", fr.off, fr.n, err))
		}
		s := sha256.Sum256(buf[:fr.n])
		fmt.Fprintln(bw, hex.EncodeToString(s[:]))
	}
	return bw.Flush()
}

func zeroChunk(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
