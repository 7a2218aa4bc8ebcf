package proxy

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The registry is stored as a base file (routes.json: the whole table and
// its epoch) and, once the table is large, a journal beside it
// (routes.journal: the changes since the base was written, one record a
// line). A change appends one record and fdatasyncs it, instead of
// rewriting and fsyncing the whole table, and the daemon applies the new
// records to its live table instead of decoding the whole file: with
// 10,000 routes that is the difference between O(change) and O(table).
//
// Crash safety:
//   - A journal line is "<crc32c, 8 hex digits> <JSON>\n". A reader stops at
//     the first line that is incomplete or fails its checksum: a record is
//     appended only after the previous one was fdatasynced, so that line is
//     the torn tail of a killed writer, never acknowledged. The next writer
//     cuts it off before appending.
//   - The journal's first record carries the epoch of the base it applies
//     to; it is created whole (temporary file, fsync, rename). Every
//     rewrite of the base (compaction) takes a new epoch, so a journal left
//     by a writer killed between writing the base and removing the journal
//     no longer applies: its records are in the base already.
//   - A record is a batch of changes (RemoveGuest removes many routes at
//     once): readers apply a record whole or not at all, so the daemon
//     never serves half of a change.

// journalMinBase is the size of the base file from which changes go to
// the journal; a smaller table is rewritten whole on each change, as
// readable as ever (a variable for tests).
var journalMinBase int64 = 64 << 10

// compactMin is the journal size below which it is never compacted: a
// journal is folded into the base once it is larger than this and than
// half the base, so compaction's O(table) cost comes once every O(table)
// changes (a variable for tests).
var compactMin int64 = 32 << 10

// journalPath returns the journal beside the base file base.
func journalPath(base string) string {
	return strings.TrimSuffix(base, filepath.Ext(base)) + ".journal"
}

// baseFile is the registry file's content: the table and its epoch.
type baseFile struct {
	Table
	// Epoch numbers the rewrites of the base: a journal applies to the
	// base of its epoch only. Default 0.
	Epoch int64 `json:"epoch,omitempty"`
}

// journalRecord is one line of the journal: the header (Epoch set, the
// first line) or one change, applied as a whole.
type journalRecord struct {
	Epoch         int64     `json:"epoch,omitempty"`
	VHosts        []VHost   `json:"vhosts,omitempty"`         // added or re-pointed
	Forwards      []Forward `json:"forwards,omitempty"`       // added or re-pointed
	RemoveHosts   []string  `json:"remove_hosts,omitempty"`   // vhosts removed
	RemoveListens []string  `json:"remove_listens,omitempty"` // forwards removed
}

func (rec *journalRecord) empty() bool {
	return len(rec.VHosts)+len(rec.Forwards)+len(rec.RemoveHosts)+len(rec.RemoveListens) == 0
}

// lines is how many lines of Table.String the record changes at most.
func (rec *journalRecord) lines() int {
	return len(rec.VHosts) + len(rec.Forwards) + len(rec.RemoveHosts) + len(rec.RemoveListens)
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// encodeRecord renders rec as one journal line.
func encodeRecord(rec journalRecord) ([]byte, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	line := make([]byte, 0, 10+len(data))
	line = binary.BigEndian.AppendUint32(line, crc32.Checksum(data, crcTable))
	line = append(hex.AppendEncode(line[:0:0], line), ' ')
	line = append(line, data...)
	return append(line, '\n'), nil
}

// decodeLine decodes one journal line (without its newline); ok is false
// when it is torn or corrupt.
func decodeLine(line []byte) (rec journalRecord, ok bool) {
	sum, data, found := bytes.Cut(line, []byte{' '})
	if !found || len(sum) != 8 {
		return rec, false
	}
	want, err := hex.DecodeString(string(sum))
	if err != nil || binary.BigEndian.Uint32(want) != crc32.Checksum(data, crcTable) {
		return rec, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if dec.Decode(&rec) != nil {
		return rec, false
	}
	return rec, true
}

// journalRead is what readJournal found.
type journalRead struct {
	exists bool            // the file exists with a valid header
	epoch  int64           // the header's epoch
	recs   []journalRecord // the whole records from the asked offset
	end    int64           // the offset after the last whole record
	size   int64           // the file's size (> end: a torn tail)
}

// readJournal reads the journal at path from offset from (0: from the
// first record after the header), up to its first torn or corrupt line.
func readJournal(path string, from int64) (journalRead, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return journalRead{}, nil
	}
	if err != nil {
		return journalRead{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return journalRead{}, err
	}
	var head [256]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && err != io.EOF {
		return journalRead{}, err
	}
	line, _, found := bytes.Cut(head[:n], []byte{'\n'})
	hdr, ok := decodeLine(line)
	if !found || !ok || !hdr.empty() {
		// Never acknowledged (the journal is created whole): as if absent.
		return journalRead{size: fi.Size()}, nil
	}
	jr := journalRead{exists: true, epoch: hdr.Epoch, size: fi.Size(), end: int64(len(line)) + 1}
	if from < jr.end {
		from = jr.end
	}
	if from > fi.Size() {
		return jr, fmt.Errorf("journal %s: %d bytes, shorter than the %d already read", path, fi.Size(), from)
	}
	buf := make([]byte, fi.Size()-from)
	if _, err := f.ReadAt(buf, from); err != nil && err != io.EOF {
		return jr, err
	}
	jr.end = from
	for len(buf) > 0 {
		line, rest, found := bytes.Cut(buf, []byte{'\n'})
		if !found {
			break
		}
		rec, ok := decodeLine(line)
		if !ok || rec.Epoch != 0 {
			break
		}
		jr.recs = append(jr.recs, rec)
		jr.end += int64(len(line)) + 1
		buf = rest
	}
	return jr, nil
}

// store is a registry's table as stored, and where its files stood when
// it was read: enough to read only what changed since.
type store struct {
	path  string
	t     Table  // sorted
	sig   string // the base file's signature (fileSignature)
	size  int64  // the base file's size
	epoch int64  // the base file's epoch
	jend  int64  // the end of the journal records applied; 0: no journal applies
	jsize int64  // the journal's size when read (> jend: a torn tail to cut)
}

// loadStore reads the base file at path and the journal that applies to
// it. A missing base file is an empty table.
func loadStore(path string) (*store, error) {
	for attempt := 0; ; attempt++ {
		st, retry, err := readStore(path, attempt == 5)
		if err != nil || !retry {
			return st, err
		}
		time.Sleep(time.Millisecond)
	}
}

// readStore reads the store once; retry is true when a compaction ran
// between reading the base and the journal. last: do not retry, a
// journal newer than the base is stale (the base was replaced by hand).
func readStore(path string, last bool) (st *store, retry bool, err error) {
	st = &store{path: path, sig: "missing"}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, false, err
	default:
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return nil, false, err
		}
		// From the open file: the signature names the content read.
		st.sig, st.size = signature(fi), fi.Size()
		data, err := io.ReadAll(f)
		if err != nil {
			return nil, false, err
		}
		b, err := decodeBase(path, data)
		if err != nil {
			return nil, false, err
		}
		st.t, st.epoch = b.Table, b.Epoch
	}
	jr, err := readJournal(journalPath(path), 0)
	if err != nil {
		return nil, false, err
	}
	st.jsize = jr.size
	switch {
	case !jr.exists || jr.epoch < st.epoch:
		// None, or left by a writer killed after a compaction: its
		// records are in the base.
	case jr.epoch > st.epoch && st.epoch != 0 && !last:
		return nil, true, nil // a compaction between the two reads
	case jr.epoch > st.epoch:
		// A base written by another tool (no epoch) or put back by hand:
		// it says what to serve.
	default:
		for _, rec := range jr.recs {
			st.t.apply(rec)
		}
		st.jend = jr.end
	}
	return st, false, nil
}

// refresh reads what changed since st was read: the new journal records
// (applied to st.t and returned), or full = true when the base file was
// replaced and st must be loaded again.
func (st *store) refresh() (recs []journalRecord, full bool, err error) {
	fi, err := os.Stat(st.path)
	sig := "missing"
	if err == nil {
		sig = signature(fi)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if sig != st.sig {
		return nil, true, nil
	}
	jr, err := readJournal(journalPath(st.path), st.jend)
	if err != nil {
		return nil, true, nil // replaced and shorter: read it all again
	}
	if !jr.exists || jr.epoch != st.epoch {
		if st.jend != 0 {
			return nil, true, nil // the journal read so far was replaced
		}
		// None, or one that does not apply to this base (see readStore).
		st.jsize = jr.size
		return nil, false, nil
	}
	for _, rec := range jr.recs {
		st.t.apply(rec)
	}
	st.jend, st.jsize = jr.end, jr.size
	return jr.recs, false, nil
}

// commit makes rec durable; st.t must already have rec applied. Small
// tables rewrite the base file; large ones append to the journal and
// rewrite the base (compact) once the journal has grown to half of it.
// On error st is stale: load it again.
func (st *store) commit(rec journalRecord) error {
	if st.size < journalMinBase {
		return st.writeBase()
	}
	line, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	jp := journalPath(st.path)
	if st.jend == 0 {
		// A new journal (or one replacing a stale one), created whole.
		hdr, err := encodeRecord(journalRecord{Epoch: st.epoch})
		if err != nil {
			return err
		}
		if st.epoch == 0 {
			// Epoch 0 is a base without one: a fresh journal needs the base
			// to name its epoch, or a stale journal could apply to it.
			return st.writeBase()
		}
		data := append(hdr, line...)
		if err := writeFileAtomic(jp, data, 0o644); err != nil {
			return err
		}
		st.jend, st.jsize = int64(len(data)), int64(len(data))
	} else {
		f, err := os.OpenFile(jp, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if st.jsize > st.jend { // a killed writer's torn record
			if err := f.Truncate(st.jend); err != nil {
				f.Close()
				return err
			}
		}
		_, err = f.WriteAt(line, st.jend)
		if err == nil {
			err = datasync(f)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", jp, err)
		}
		st.jend += int64(len(line))
		st.jsize = st.jend
	}
	if st.jend > max(compactMin, st.size/2) {
		return st.writeBase()
	}
	return nil
}

// writeBase writes the whole table as the base file of a new epoch, then
// removes the journal, whose records it holds.
func (st *store) writeBase() error {
	b := baseFile{Table: st.t, Epoch: st.epoch + 1}
	// Compact: with 10,000 routes indenting would add 4 ms here and 2 ms
	// to every full load. `tinyfarm proxy routes` is the view.
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := writeFileAtomic(st.path, data, 0o644); err != nil {
		return err
	}
	fi, err := os.Stat(st.path)
	if err != nil {
		return err
	}
	st.sig, st.size, st.epoch = signature(fi), fi.Size(), b.Epoch
	if st.jend != 0 || st.jsize != 0 {
		if err := os.Remove(journalPath(st.path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	st.jend, st.jsize = 0, 0
	return nil
}

// decodeBase decodes the base file read from path.
func decodeBase(path string, data []byte) (baseFile, error) {
	if b, err := decodeBaseFast(data); err == nil {
		b.Table.sort()
		return b, nil
	}
	var b baseFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return baseFile{}, fmt.Errorf("parse %s: %w", path, err)
	}
	b.Table.sort()
	return b, nil
}

func signature(fi fs.FileInfo) string {
	return fmt.Sprintf("%d/%d/%d", fi.Size(), fi.ModTime().UnixNano(), inode(fi))
}

// apply applies rec to the sorted table t in place: removals, then
// additions and re-pointings.
func (t *Table) apply(rec journalRecord) {
	for _, h := range rec.RemoveHosts {
		if i, ok := t.vhostIndex(h); ok {
			t.VHosts = slices.Delete(t.VHosts, i, i+1)
		}
	}
	for _, l := range rec.RemoveListens {
		if i, ok := t.forwardIndex(l); ok {
			t.Forwards = slices.Delete(t.Forwards, i, i+1)
		}
	}
	for _, v := range rec.VHosts {
		if i, ok := t.vhostIndex(v.Host); ok {
			t.VHosts[i] = v
		} else {
			t.VHosts = slices.Insert(t.VHosts, i, v)
		}
	}
	for _, f := range rec.Forwards {
		if i, ok := t.forwardIndex(f.Listen); ok {
			t.Forwards[i] = f
		} else {
			t.Forwards = slices.Insert(t.Forwards, i, f)
		}
	}
}

// vhostIndex finds host in the sorted vhosts: its index, or where it
// would be inserted.
func (t *Table) vhostIndex(host string) (int, bool) {
	return slices.BinarySearchFunc(t.VHosts, host, func(v VHost, h string) int { return strings.Compare(v.Host, h) })
}

func (t *Table) forwardIndex(listen string) (int, bool) {
	return slices.BinarySearchFunc(t.Forwards, listen, func(f Forward, l string) int { return strings.Compare(f.Listen, l) })
}
