//go:build linux

package ops_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// TestProbeImporting: the far probe says an import has not ended while
// the guest is defined there and its disk still carries the migration's
// mark (which an import removes last): a rerun after a killed move waits
// for it before it forgets the guest here.
func TestProbeImporting(t *testing.T) {
	ctx := context.Background()
	state := t.TempDir()
	fm := farm.New(state, farm.Options{Drivers: farm.DefaultDrivers()})
	p, err := ops.ProbeMigration(ctx, fm, "web", nil, "", "")
	if err != nil || p.Exists || p.Importing {
		t.Fatalf("nothing there: %+v %v", p, err)
	}
	// What a far import does: the copy (with its mark), then the define.
	os.MkdirAll(filepath.Dir(p.Disk), 0o700)
	os.WriteFile(p.Disk, make([]byte, 1<<20), 0o600)
	mark := p.Disk + ".migrating"
	os.WriteFile(mark, []byte("here\n"), 0o600)
	if p, err := ops.ProbeMigration(ctx, fm, "web", nil, "", ""); err != nil || p.Exists || p.Importing || p.ForeignDisk {
		t.Fatalf("a copy received, not imported: %+v %v", p, err)
	}
	if _, err := fm.Define(farm.Definition{Name: "web", Driver: "ns", Disk: p.Disk, MemBytes: 64 << 20}, farm.ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	if p, err := ops.ProbeMigration(ctx, fm, "web", nil, "", ""); err != nil || !p.Exists || !p.Importing {
		t.Fatalf("defined, its import not ended: %+v %v", p, err)
	}
	os.Remove(mark)
	if p, err := ops.ProbeMigration(ctx, fm, "web", nil, "", ""); err != nil || !p.Exists || p.Importing {
		t.Fatalf("imported: %+v %v", p, err)
	}
}
