package target_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// TestPutFile: a new file is changed (with a diff) and written; the same
// content and mode again is unchanged; a mode-only change says so; check
// mode compares and writes nothing.
func TestPutFile(t *testing.T) {
	dir := t.TempDir()
	d, err := target.OpenDir(dir, target.DirOptions{NoChown: true, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	put := func(data string, mode os.FileMode, check bool) target.PutResult {
		t.Helper()
		r, err := target.PutFile(ctx, d, "etc/motd", []byte(data), mode, 0, 0, check)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	if r := put("hello\n", 0o644, true); !r.Changed || !strings.Contains(r.Diff, "+hello") {
		t.Errorf("check of a new file: %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "etc/motd")); !os.IsNotExist(err) {
		t.Fatalf("check mode wrote the file: %v", err)
	}
	if r := put("hello\n", 0o644, false); !r.Changed {
		t.Errorf("new file: %+v", r)
	}
	if r := put("hello\n", 0o644, false); r.Changed {
		t.Errorf("same file again: %+v", r)
	}
	if r := put("hello\n", 0o600, false); !r.Changed || r.Diff != "" || r.Detail != "mode 0644 -> 0600" {
		t.Errorf("mode only: %+v", r)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "etc/motd")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode on disk %v", fi.Mode())
	}
}
