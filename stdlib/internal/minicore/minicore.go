// Package minicore locates tinyfarm's mini Tiny Core release for tests.
//
// The release is built from Debian packages by `make minicore`
// (testdata/minicore/build.sh; layout in testdata/minicore/README.md): a
// Tiny Core 15.x x86_64 mirror tree with the official release files
// (corepure64.gz = rootfs64.gz + modules64.gz, vmlinuz64) and .tcz extensions, a
// Debian kernel as a PVH vmlinux and a modules initramfs. Tests of other
// packages call Require to get absolute paths, or a skip when the release
// has not been built; ServeMirror serves the mirror over HTTP on loopback.
// The package's own tests check the release itself and boot it in QEMU and
// in a namespace guest.
//
// Nothing here depends on gopher-lua or on the rest of tinyfarm.
package minicore

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// Release layout constants: the mirror directory is
// <Mirror>/<Series>/<Arch>/tcz, as on the Tiny Core mirror.
const (
	Series    = "15.x"   // release series directory
	VersionID = "15.0"   // VERSION_ID in core's /etc/os-release
	Arch      = "x86_64" // the default build; `make minicore-x86` builds "x86"
	// Release file names in distribution_files for Arch, as on the
	// official mirror (TINYCORE.md §1): the core is the root file system
	// followed by the modules archive (two gzip members). Release.Names
	// has them for the release's own arch.
	CoreName    = "corepure64.gz"
	RootfsName  = "rootfs64.gz"
	ModulesName = "modules64.gz"
	KernelName  = "vmlinuz64"
	// EnvDirX86 names the environment variable that overrides the
	// location of the x86 (32-bit) release.
	EnvDirX86 = "TINYFARM_MINICORE_X86"
	// EnvDir names the environment variable that overrides the location
	// of the built release (the directory build.sh wrote).
	EnvDir = "TINYFARM_MINICORE"
)

// Release holds the absolute paths of a built mini release.
type Release struct {
	Arch          string // "x86_64" or "x86", from the mirror tree
	Names         Names  // the release file names of Arch
	Root          string // build output directory (OUT of build.sh)
	Mirror        string // mirror base: what /opt/tcemirror names, served by ServeMirror
	TCZDir        string // Mirror/15.x/x86_64/tcz
	DistDir       string // Mirror/15.x/x86_64/release/distribution_files
	Core          string // DistDir/corepure64.gz: Rootfs followed by the modules archive
	Rootfs        string // DistDir/rootfs64.gz: the root file system (gzip newc cpio)
	Vmlinux       string // kernel/vmlinux: PVH-bootable ELF kernel for QEMU -kernel
	Vmlinuz       string // kernel/vmlinuz: the Debian bzImage
	ModulesInitrd string // kernel/modules.gz: virtio/ext4/loop/squashfs/9p initramfs with an /init
	KernelVersion string // uname -r of the kernel, e.g. 6.1.0-56-amd64
}

// Names are a release's file names in distribution_files.
type Names struct{ Core, Rootfs, Modules, Kernel string }

// NamesOf returns the official release file names of arch (TINYCORE.md §1).
func NamesOf(arch string) Names {
	if arch == "x86" {
		return Names{"core.gz", "rootfs.gz", "modules.gz", "vmlinuz"}
	}
	return Names{CoreName, RootfsName, ModulesName, KernelName}
}

// Locate finds a built release: $TINYFARM_MINICORE, else
// <repo>/testdata/minicore/out found by walking up from the working
// directory (and from this source file) to the directory holding go.mod.
func Locate() (*Release, error) {
	var cands []string
	if d := os.Getenv(EnvDir); d != "" {
		cands = append(cands, d)
	} else {
		if wd, err := os.Getwd(); err == nil {
			if root := repoRoot(wd); root != "" {
				cands = append(cands, filepath.Join(root, "testdata", "minicore", "out"))
			}
		}
		if _, file, _, ok := runtime.Caller(0); ok {
			if root := repoRoot(filepath.Dir(file)); root != "" {
				cands = append(cands, filepath.Join(root, "testdata", "minicore", "out"))
			}
		}
	}
	if len(cands) == 0 {
		return nil, errors.New("locate minicore: no repository root (go.mod) above the working directory; set " + EnvDir)
	}
	var errs []error
	for _, c := range cands {
		r, err := Open(c)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// Open reads the release built into dir.
func Open(dir string) (*Release, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open minicore %s: %w", dir, err)
	}
	r := &Release{Root: abs, Mirror: filepath.Join(abs, "mirror"), Arch: Arch}
	if _, err := os.Stat(filepath.Join(r.Mirror, Series, Arch)); err != nil {
		if _, err := os.Stat(filepath.Join(r.Mirror, Series, "x86")); err == nil {
			r.Arch = "x86"
		}
	}
	r.Names = NamesOf(r.Arch)
	r.TCZDir = filepath.Join(r.Mirror, Series, r.Arch, "tcz")
	r.DistDir = filepath.Join(r.Mirror, Series, r.Arch, "release", "distribution_files")
	r.Core = filepath.Join(r.DistDir, r.Names.Core)
	r.Rootfs = filepath.Join(r.DistDir, r.Names.Rootfs)
	r.Vmlinux = filepath.Join(abs, "kernel", "vmlinux")
	r.Vmlinuz = filepath.Join(abs, "kernel", "vmlinuz")
	r.ModulesInitrd = filepath.Join(abs, "kernel", "modules.gz")
	for _, p := range []string{r.Core, r.Rootfs, r.Vmlinux, r.Vmlinuz, r.ModulesInitrd, r.TCZDir} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("open minicore %s: %w", abs, err)
		}
	}
	v, err := os.ReadFile(filepath.Join(abs, "kernel", "version"))
	if err != nil {
		return nil, fmt.Errorf("open minicore %s: %w", abs, err)
	}
	r.KernelVersion = strings.TrimSpace(string(v))
	if r.KernelVersion == "" {
		return nil, fmt.Errorf("open minicore %s: empty kernel/version", abs)
	}
	return r, nil
}

// Require returns the built release, or skips the test with a message
// saying how to build it.
func Require(t testing.TB) *Release {
	t.Helper()
	r, err := Locate()
	if err != nil {
		t.Skipf("mini Tiny Core release not built (run `make minicore`, or set %s): %v", EnvDir, err)
	}
	return r
}

// RequireX86 returns the built x86 (32-bit) release:
// $TINYFARM_MINICORE_X86, else <repo>/testdata/minicore/out-x86; or skips
// the test saying how to build it.
func RequireX86(t testing.TB) *Release {
	t.Helper()
	dir := os.Getenv(EnvDirX86)
	if dir == "" {
		wd, _ := os.Getwd()
		if root := repoRoot(wd); root != "" {
			dir = filepath.Join(root, "testdata", "minicore", "out-x86")
		}
	}
	r, err := Open(dir)
	if err != nil || r.Arch != "x86" {
		t.Skipf("x86 mini Tiny Core release not built (run `make minicore-x86`, or set %s): %v", EnvDirX86, err)
	}
	return r
}

func repoRoot(dir string) string {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Packages lists the extension names in the mirror (without .tcz), sorted.
func (r *Release) Packages() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(r.TCZDir, "*.tcz"))
	if err != nil {
		return nil, fmt.Errorf("list packages %s: %w", r.TCZDir, err)
	}
	names := make([]string, 0, len(m))
	for _, p := range m {
		names = append(names, strings.TrimSuffix(filepath.Base(p), ".tcz"))
	}
	sort.Strings(names)
	return names, nil
}

// TCZ returns the path of an extension file; name may omit ".tcz" and may
// end in "-KERNEL", which is replaced by the kernel version.
func (r *Release) TCZ(name string) string {
	return filepath.Join(r.TCZDir, r.ExtName(name)+".tcz")
}

// ExtName normalises an extension name as tce-load does: the base name
// without ".tcz", with a "-KERNEL" suffix replaced by "-<kernel version>".
func (r *Release) ExtName(name string) string {
	n := strings.TrimSuffix(filepath.Base(strings.TrimSpace(name)), ".tcz")
	if base, ok := strings.CutSuffix(n, "-KERNEL"); ok {
		n = base + "-" + r.KernelVersion
	}
	return n
}

// Deps reads an extension's .dep file: the direct dependencies as written
// (e.g. "openssl.tcz", "overlay-modules-KERNEL.tcz"), blank lines dropped.
// A missing .dep file means no dependencies.
func (r *Release) Deps(name string) ([]string, error) {
	f, err := os.Open(r.TCZ(name) + ".dep")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read deps %s: %w", name, err)
	}
	defer f.Close()
	var deps []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		if d := strings.Join(strings.Fields(s.Text()), ""); d != "" {
			deps = append(deps, d)
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read deps %s: %w", name, err)
	}
	return deps, nil
}

// ServeMirror serves the mirror directory over HTTP on 127.0.0.1 until the
// test ends and returns its base URL with a trailing slash (the value for
// /opt/tcemirror), e.g. "http://127.0.0.1:41234/".
func (r *Release) ServeMirror(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("serve mirror %s: %v", r.Mirror, err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(r.Mirror))}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return "http://" + ln.Addr().String() + "/"
}

// FrugalInitrd returns the initrd of a frugal QEMU boot: the release's
// core, which is the root file system followed by the modules initramfs
// (the kernel unpacks concatenated gzip cpio archives in order, so the
// modules' /init runs, loads the drivers and execs core's /sbin/init).
func (r *Release) FrugalInitrd(t testing.TB) string {
	t.Helper()
	return r.Core
}

// ExtractCore unpacks the core (every archive of it, in order: later ones
// overlay earlier ones) into dir (created if needed) with the cpio tool,
// keeping ownership and modes when run as root.
func (r *Release) ExtractCore(dir string) error { return extract(r.Core, dir) }

// ExtractRootfs unpacks the root file system alone (no kernel modules):
// what the seed's `zcat core | cpio -idm` leaves of a core, since cpio
// stops at the first archive's trailer.
func (r *Release) ExtractRootfs(dir string) error { return extract(r.Rootfs, dir) }

func extract(archive, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("extract core %s: %w", dir, err)
	}
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("extract core %s: %w", archive, err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	zr, err := gzip.NewReader(br)
	if err != nil {
		return fmt.Errorf("extract core %s: %w", archive, err)
	}
	// cpio stops at an archive's trailer: one cpio run per gzip member.
	for {
		zr.Multistream(false)
		cmd := exec.Command("cpio", "-idmu", "--quiet", "--no-absolute-filenames")
		cmd.Dir = dir
		cmd.Stdin = zr
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("extract core %s: cpio: %w: %s", archive, err, strings.TrimSpace(string(out)))
		}
		if _, err := io.Copy(io.Discard, zr); err != nil {
			return fmt.Errorf("extract core %s: %w", archive, err)
		}
		if err := zr.Reset(br); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("extract core %s: %w", archive, err)
		}
	}
}
