//go:build linux

package imagebench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// TestRunVsShell is what a user waits for: `tinyfarm run` of a playbook
// with one image.build (core + openssh with its dependencies, a new image
// each time, so host keys are made and the image is written and synced)
// against the seed's pipeline on the same inputs, staged on /dev/shm,
// process start included on both sides. tinyfarm runs twice per pair:
// cold (a fresh state dir and an empty tree cache, image.TreeCacheName in
// /dev/shm: the first disk from these inputs) and warm (the next disk or
// a rebuild, linking the unpacked trees from the cache). Pairs alternate; wall and CPU
// (user+sys of the process and its children) are medians of
// $TINYFARM_BENCH_PAIRS pairs (default 11); the ratio is the median of
// the pairs' ratios, so load that drifts during the run cancels out.
// TINYFARM_BENCH_CORE picks
// another core (default: the mini release's corepure64.gz, rootfs64 and
// modules64, 13.6 MB unpacked).
func TestRunVsShell(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") == "" {
		t.Skip("set TINYFARM_BENCH=1 (bench/image.sh)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	rel := locate(t)
	if c := os.Getenv("TINYFARM_BENCH_CORE"); c != "" {
		rel.Core = c
	}
	pairs := 11
	if n, err := strconv.Atoi(os.Getenv("TINYFARM_BENCH_PAIRS")); err == nil && n > 0 {
		pairs = n
	}
	work := t.TempDir()
	// TINYFARM_BENCH_BIN runs another build (an older commit's, for a
	// before/after in one session); default: this tree's.
	bin := os.Getenv("TINYFARM_BENCH_BIN")
	if bin == "" {
		bin = filepath.Join(work, "tinyfarm")
		if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/tinyfarm").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v %s", err, out)
		}
	}
	cache := filepath.Join(work, "cache")
	book := filepath.Join(work, "build.lua")
	os.WriteFile(book, []byte(`local tcz, image = require("tcz"), require("image")
tcz.mirror{url = vars.mirror, cache = vars.cache, kernel = vars.kernel}
image.build{path = vars.img, core = {vars.core}, size = "64M", extensions = {"openssh"}, hostname = "web1"}
`), 0o644)
	stage := "/dev/shm"
	run := func(i int, cold bool) (wall, cpu time.Duration) {
		state := filepath.Join(work, "state")
		if cold {
			// Removing the shared cache only makes a concurrent build
			// fill it again (see image's treeCache).
			if err := os.RemoveAll(filepath.Join(stage, image.TreeCacheName)); err != nil {
				t.Fatal(err)
			}
			state = filepath.Join(work, fmt.Sprintf("state%d", i))
		}
		img := filepath.Join(work, fmt.Sprintf("tf%d.img", i))
		cmd := exec.Command(bin, "run", book, "-e", "mirror=file://"+rel.Mirror, "-e", "cache="+cache,
			"-e", "kernel="+rel.KernelVersion, "-e", "core="+rel.Core, "-e", "img="+img)
		cmd.Env = append(os.Environ(), "TINYFARM_HOME="+state)
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tinyfarm run: %v\n%s", err, out)
		}
		wall = time.Since(t0)
		os.Remove(img)
		os.Remove(img + ".tinyfarm.json")
		return wall, cpuOf(cmd)
	}
	// The order of openssh's tree, as tinyfarm resolves it (the first run
	// fills the cache both sides read).
	run(-1, false)
	c, err := tcz.New(tcz.Config{URL: "file://" + rel.Mirror, Cache: cache, Kernel: rel.KernelVersion})
	if err != nil {
		t.Fatal(err)
	}
	deps, err := c.Deps(context.Background(), "openssh")
	if err != nil {
		t.Fatal(err)
	}
	order := deps.Order
	script := `set -e; R=$(mktemp -d "$STAGE/seed.XXXXXX"); trap 'rm -rf "$R"' EXIT; cd "$R"; zcat "$CORE" | cpio -idm --quiet
for p in $ORDER; do unsquashfs -q -n -f -d "$R" "$TCZ/$p.tcz" >/dev/null; done
mkfs.ext3 -q -F -L root -d "$R" "$IMG" 64M; cd /; rm -rf "$R"`
	shell := func(i int) (wall, cpu time.Duration) {
		img := filepath.Join(work, fmt.Sprintf("seed%d.img", i))
		cmd := exec.Command("bash", "-c", script)
		cmd.Env = append(os.Environ(), "STAGE="+stage, "CORE="+rel.Core, "TCZ="+filepath.Join(cache, "optional"),
			"ORDER="+strings.Join(order, " "), "IMG="+img)
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("shell: %v %s", err, out)
		}
		wall = time.Since(t0)
		os.Remove(img)
		return wall, cpuOf(cmd)
	}
	shell(-1)
	var sw, sc []time.Duration
	type side struct {
		name                      string
		cold                      bool
		wall, cpu, wratio, cratio []time.Duration
	}
	sides := []*side{{name: "cold tree cache", cold: true}, {name: "warm tree cache"}}
	for i := 0; i < pairs; i++ {
		w, c := shell(i)
		sw, sc = append(sw, w), append(sc, c)
		for _, s := range sides {
			w2, c2 := run(i, s.cold)
			s.wall, s.cpu = append(s.wall, w2), append(s.cpu, c2)
			// per pair, in thousandths
			s.wratio, s.cratio = append(s.wratio, w2*1000/w), append(s.cratio, c2*1000/c)
		}
	}
	med := func(d []time.Duration) time.Duration { d = slices.Clone(d); slices.Sort(d); return d[len(d)/2] }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load average %s", strings.TrimSpace(string(load)))
	for _, s := range sides {
		t.Logf("shell wall %v cpu %v; tinyfarm run (%s) wall %v cpu %v; median pair ratio wall %.2f cpu %.2f (%d pairs)",
			med(sw), med(sc), s.name, med(s.wall), med(s.cpu), float64(med(s.wratio))/1000, float64(med(s.cratio))/1000, pairs)
		fmt.Printf("tinyfarm run image.build, core+openssh, new image, %s, median ms wall\t%.0f\tseed shell pipeline (zcat|cpio, unsquashfs, mkfs.ext3 -d)\t%.0f\t%.2f\n",
			s.name, ms(med(s.wall)), ms(med(sw)), float64(med(s.wratio))/1000)
		fmt.Printf("tinyfarm run image.build, core+openssh, new image, %s, median ms CPU\t%.0f\tseed shell pipeline CPU\t%.0f\t%.2f\n",
			s.name, ms(med(s.cpu)), ms(med(sc)), float64(med(s.cratio))/1000)
	}
}

// cpuOf is the user+system time of a finished command and the children it
// waited for.
func cpuOf(cmd *exec.Cmd) time.Duration {
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
