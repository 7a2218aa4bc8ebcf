//go:build linux

// Package imagebench times image.Build (scatter disk: core + nginx with
// its dependencies) against the seed's shell pipeline on the same inputs
// in the same run: zcat corepure64.gz | cpio -idm, unsquashfs -f -d per
// extension in dependency order, mkfs.ext3 -d. Run by bench/image.sh.
package imagebench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

func TestBuildVsShell(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") == "" {
		t.Skip("set TINYFARM_BENCH=1 (bench/image.sh)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	rel := locate(t)
	ctx := context.Background()
	work := t.TempDir()
	c, err := tcz.New(tcz.Config{URL: "file://" + rel.Mirror, Cache: filepath.Join(work, "cache"), Kernel: rel.KernelVersion})
	if err != nil {
		t.Fatal(err)
	}
	fr, err := c.Fetch(ctx, tcz.FetchOptions{}, "nginx") // warm cache: both sides start from local files
	if err != nil {
		t.Fatal(err)
	}
	// Both sides stage in the same place: tinyfarm's default staging base
	// (tmpfs), then the image's own file system (a host without a usable
	// /dev/shm).
	for _, where := range []string{"tmpfs", "disk"} {
		stage := filepath.Join(work, "stage")
		os.MkdirAll(stage, 0o755)
		if fi, err := os.Stat("/dev/shm"); where == "tmpfs" && err == nil && fi.IsDir() {
			stage = "/dev/shm"
		}
		script := `set -e; R=$(mktemp -d "$STAGE/seed.XXXXXX"); cd "$R"; zcat "$CORE" | cpio -idm --quiet
	for p in $ORDER; do unsquashfs -q -n -f -d "$R" "$TCZ/$p.tcz" >/dev/null; done
	mkfs.ext3 -q -F -L root -d "$R" "$IMG" 64M; cd /; rm -rf "$R"`
		shell := func(i int) time.Duration {
			cmd := exec.Command("bash", "-c", script)
			cmd.Env = append(os.Environ(), "STAGE="+stage, "CORE="+rel.Core, "TCZ="+filepath.Join(work, "cache", "optional"),
				"ORDER="+strings.Join(fr.Order, " "), "IMG="+filepath.Join(work, fmt.Sprintf("seed%s%d.img", where, i)))
			t0 := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("shell: %v %s", err, out)
			}
			return time.Since(t0)
		}
		build := func(i int) time.Duration {
			t0 := time.Now()
			_, err := image.Build(ctx, image.Options{Path: filepath.Join(work, fmt.Sprintf("tf%s%d.img", where, i)), Core: []string{rel.Core}, Mirror: c,
				Size: 64 << 20, Extensions: []string{"nginx"}, Hostname: "web1", TempDir: stage,
				// Unpacking every time, as the pipeline does (TestRunVsShell
				// measures the tree cache).
				NoTreeCache: true})
			if err != nil {
				t.Fatal(err)
			}
			return time.Since(t0)
		}
		shell(-1)
		build(-1) // warm page cache
		const n = 7
		var ts, tb []time.Duration
		for i := 0; i < n; i++ {
			ts = append(ts, shell(i))
			tb = append(tb, build(i))
		}
		slices.Sort(ts)
		slices.Sort(tb)
		ms, mb := ts[n/2], tb[n/2]
		t.Logf("staging %s: shell %v, tinyfarm %v (medians of %d)", where, ms, mb, n)
		fmt.Printf("image build: core+nginx scatter disk, staging %s, no tree cache, median ms\t%.0f\tseed shell pipeline (cpio|unsquashfs|mkfs.ext3 -d)\t%.0f\t%.2f\n",
			where, float64(mb.Microseconds())/1000, float64(ms.Microseconds())/1000, float64(mb)/float64(ms))
	}
}

type release struct{ Mirror, Core, KernelVersion string }

// locate finds the mini release ($TINYFARM_MINICORE or testdata/minicore/out).
func locate(t *testing.T) release {
	out := os.Getenv("TINYFARM_MINICORE")
	if out == "" {
		out, _ = filepath.Abs("../../testdata/minicore/out")
	}
	r := release{Mirror: filepath.Join(out, "mirror")}
	r.Core = filepath.Join(r.Mirror, "15.x/x86_64/release/distribution_files/corepure64.gz")
	if _, err := os.Stat(r.Core); err != nil {
		t.Skip("mini release not built (make minicore)")
	}
	if b, err := os.ReadFile(filepath.Join(out, "kernel/version")); err == nil {
		r.KernelVersion = strings.TrimSpace(string(b))
	}
	return r
}
