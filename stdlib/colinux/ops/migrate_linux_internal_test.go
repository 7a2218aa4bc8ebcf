//go:build linux

package ops

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// TestDiskSHA256Later: the disk is hashed as it was when held, after its
// guest's destroy moved it (a kept disk) or removed it.
func TestDiskSHA256Later(t *testing.T) {
	data := bytes.Repeat([]byte("tinyfarm disk "), 100_000)
	s := sha256.Sum256(data)
	want := hex.EncodeToString(s[:])
	for _, gone := range []string{"moved", "removed"} {
		dir := t.TempDir()
		p := filepath.Join(dir, "g.img")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sum, release := diskSHA256Later(p)
		if gone == "moved" {
			os.Rename(p, filepath.Join(dir, "kept.img"))
		} else {
			os.Remove(p)
		}
		got, err := sum()
		release()
		if err != nil || got != want {
			t.Errorf("%s: %s, %v; want %s", gone, got, err, want)
		}
	}
	sum, release := diskSHA256Later(filepath.Join(t.TempDir(), "missing.img"))
	defer release()
	if _, err := sum(); !os.IsNotExist(err) {
		t.Errorf("a missing disk: %v", err)
	}
}
