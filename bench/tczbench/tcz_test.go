// Package tczbench measures tcz's resolve + fetch of 20 extensions from a
// loopback HTTP mirror against sequential wget of the same files, the way
// tce-load fetches (one wget per .dep, .md5.txt and .tcz, in order).
//
//	go test ./bench/tczbench -run '^$' -bench . -benchtime 5x
//	TINYFARM_BENCH=1 go test ./bench/tczbench -run TestFetchVsWget -v   # TSV rows for bench/run.sh
package tczbench

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

const nPkgs = 20

// buildMirror packs nPkgs extensions (~256 KiB each, incompressible):
// p00 depends on p01..p04, each of those on four more, and so on.
func buildMirror(tb testing.TB) string {
	tb.Helper()
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		tb.Skip("mksquashfs not installed")
	}
	root := tb.TempDir()
	out := filepath.Join(root, "15.x/x86_64/tcz")
	for i := 0; i < nPkgs; i++ {
		src := tb.TempDir()
		os.MkdirAll(filepath.Join(src, "usr/local/lib"), 0o755)
		buf := make([]byte, 256<<10)
		rand.Read(buf)
		os.WriteFile(filepath.Join(src, "usr/local/lib", fmt.Sprintf("p%02d.so", i)), buf, 0o644)
		var deps []string
		for j := 4*i + 1; j <= 4*i+4 && j < nPkgs; j++ {
			deps = append(deps, fmt.Sprintf("p%02d", j))
		}
		if _, err := tcz.Pack(context.Background(), tcz.PackOptions{Dir: src, Name: fmt.Sprintf("p%02d", i), Deps: deps, Out: out}); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}

// serve serves dir on 127.0.0.1, each response delayed by latency.
func serve(tb testing.TB, dir string, latency time.Duration) string {
	fs := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(latency)
		fs.ServeHTTP(w, r)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
}

func tczFetch(tb testing.TB, url string) time.Duration {
	c, err := tcz.New(tcz.Config{URL: url, Cache: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	r, err := c.Fetch(context.Background(), tcz.FetchOptions{}, "p00")
	if err != nil {
		tb.Fatal(err)
	}
	d := time.Since(start)
	if len(r.Downloaded) != nPkgs {
		tb.Fatalf("downloaded %d", len(r.Downloaded))
	}
	return d
}

// wgetFetch replays tce-load's sequence with one wget process per file:
// for each extension in dependency order, .dep then .md5.txt then .tcz.
func wgetFetch(tb testing.TB, url string) time.Duration {
	if _, err := exec.LookPath("wget"); err != nil {
		tb.Skip("wget not installed (scripts/deps.sh installs it)")
	}
	dir := tb.TempDir()
	start := time.Now()
	for i := 0; i < nPkgs; i++ {
		for _, suf := range []string{".tcz.dep", ".tcz.md5.txt", ".tcz"} {
			f := fmt.Sprintf("p%02d%s", i, suf)
			cmd := exec.Command("wget", "-q", "-O", filepath.Join(dir, f), url+"/15.x/x86_64/tcz/"+f)
			if err := cmd.Run(); err != nil && suf != ".tcz.dep" {
				tb.Fatalf("wget %s: %v", f, err)
			}
		}
	}
	return time.Since(start)
}

func bench(b *testing.B, latency time.Duration, f func(testing.TB, string) time.Duration) {
	url := serve(b, buildMirror(b), latency)
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += f(b, url)
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/fetch20")
}

func BenchmarkTCZFetch20(b *testing.B)             { bench(b, 0, tczFetch) }
func BenchmarkWgetFetch20(b *testing.B)            { bench(b, 0, wgetFetch) }
func BenchmarkTCZFetch20Latency20ms(b *testing.B)  { bench(b, 20*time.Millisecond, tczFetch) }
func BenchmarkWgetFetch20Latency20ms(b *testing.B) { bench(b, 20*time.Millisecond, wgetFetch) }

// TestFetchVsWget prints bench/run.sh rows (metric, value, anchor, anchor
// value, ratio), best of 3 runs each.
func TestFetchVsWget(t *testing.T) {
	if os.Getenv("TINYFARM_BENCH") != "1" {
		t.Skip("set TINYFARM_BENCH=1")
	}
	dir := buildMirror(t)
	for _, lat := range []time.Duration{0, 20 * time.Millisecond} {
		url := serve(t, dir, lat)
		best := func(f func(testing.TB, string) time.Duration) time.Duration {
			m := time.Hour
			for i := 0; i < 3; i++ {
				m = min(m, f(t, url))
			}
			return m
		}
		a, w := best(tczFetch), best(wgetFetch)
		name := "tcz resolve+fetch 20 pkgs (loopback)"
		if lat > 0 {
			name = fmt.Sprintf("tcz resolve+fetch 20 pkgs (+%v/request)", lat)
		}
		fmt.Println(strings.Join([]string{name, fmt.Sprintf("%.0fms", ms(a)), "sequential wget", fmt.Sprintf("%.0fms", ms(w)), fmt.Sprintf("%.1fx faster", ms(w)/ms(a))}, "\t"))
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
