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

	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// TestRunVsShell is what a user waits for: `tinyfarm run` of a playbook
// with one image.build (core + openssh with its dependencies, a new image
// each time, so host keys are made and the image is written and synced)
// against the seed's pipeline on the same inputs, staged on /dev/shm,
// process start included on both sides. Pairs alternate; wall and CPU
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
	run := func(i int) (wall, cpu time.Duration) {
		img := filepath.Join(work, fmt.Sprintf("tf%d.img", i))
		cmd := exec.Command(bin, "run", book, "-e", "mirror=file://"+rel.Mirror, "-e", "cache="+cache,
			"-e", "kernel="+rel.KernelVersion, "-e", "core="+rel.Core, "-e", "img="+img)
		cmd.Env = append(os.Environ(), "TINYFARM_HOME="+filepath.Join(work, "state"))
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
	run(-1)
	c, err := tcz.New(tcz.Config{URL: "file://" + rel.Mirror, Cache: cache, Kernel: rel.KernelVersion})
	if err != nil {
		t.Fatal(err)
	}
	deps, err := c.Deps(context.Background(), "openssh")
	if err != nil {
		t.Fatal(err)
	}
	order := deps.Order
	script := `set -e; R=$(mktemp -d "$STAGE/seed.XXXXXX"); cd "$R"; zcat "$CORE" | cpio -idm --quiet
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
	var sw, sc, tw, tc, ratios []time.Duration
	for i := 0; i < pairs; i++ {
		w, c := shell(i)
		sw, sc = append(sw, w), append(sc, c)
		w2, c2 := run(i)
		tw, tc = append(tw, w2), append(tc, c2)
		ratios = append(ratios, w2*1000/w) // per pair, in thousandths
	}
	med := func(d []time.Duration) time.Duration { d = slices.Clone(d); slices.Sort(d); return d[len(d)/2] }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	t.Logf("shell wall %v cpu %v; tinyfarm run wall %v cpu %v; median pair ratio %.2f (%d pairs)",
		med(sw), med(sc), med(tw), med(tc), float64(med(ratios))/1000, pairs)
	fmt.Printf("tinyfarm run image.build, core+openssh, new image, median ms wall\t%.0f\tseed shell pipeline (zcat|cpio, unsquashfs, mkfs.ext3 -d)\t%.0f\t%.2f\n",
		ms(med(tw)), ms(med(sw)), float64(med(ratios))/1000)
	fmt.Printf("tinyfarm run image.build, core+openssh, new image, median ms CPU\t%.0f\tseed shell pipeline CPU\t%.0f\t%.2f\n",
		ms(med(tc)), ms(med(sc)), float64(med(tc))/float64(med(sc)))
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
