// Package fsutil holds the file primitives every tinyfarm module shares:
// atomic writes (temp + fsync + rename + directory fsync) and unified diffs
// for check mode.
package fsutil

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/aymanbagabas/go-udiff"
)

// WriteFileAtomic replaces path with data so that a reader (or a crash)
// sees either the old file or the new one, never half of it.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	// A writer killed before its rename left its temporary file: this
	// write of the same file removes it.
	RemoveStaleTemps(dir, filepath.Base(path))
	tmp := filepath.Join(dir, TempName(filepath.Base(path)))
	// A full file system fails the create, the write, the fsync or the
	// close: each says what the write needed and what is free.
	fail := func(err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the temporary name means nothing to the user
		}
		return fmt.Errorf("write %s: %w", path, SpaceError(dir, int64(len(data)), err))
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fail(err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the rename durable; best effort on filesystems without dir fsync
		d.Close()
	}
	return nil
}

// Diff returns a unified diff from old to new labelled with name, or a
// one-line note for binary content. Empty when equal.
func Diff(name string, old, new []byte) string {
	if bytes.Equal(old, new) {
		return ""
	}
	if isBinary(old) || isBinary(new) {
		return fmt.Sprintf("Binary file %s differs (%d -> %d bytes)\n", name, len(old), len(new))
	}
	return udiff.Unified(name+" (before)", name+" (after)", string(old), string(new))
}

func isBinary(b []byte) bool {
	if len(b) > 8000 {
		b = b[:8000]
	}
	return bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b)
}

// WriteJSONAtomic writes v as indented JSON with a trailing newline,
// atomically (see WriteFileAtomic).
func WriteJSONAtomic(path string, v any, perm fs.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return WriteFileAtomic(path, append(data, '\n'), perm)
}
