// Package golden compares test output with files under testdata/, the
// way the renderers' tests (qemu argv, coLinux conf, nginx config) check
// what they render. `go test -update` rewrites the files.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

// update is registered in every test binary that imports this package;
// flags are the one piece of global state a test binary is meant to have.
var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// Check compares got with testdata/name, rewriting it under -update.
func Check(t testing.TB, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (go test -update rewrites it); got:\n%s", path, got)
	}
}
