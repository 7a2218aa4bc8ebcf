//go:build linux

package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/ready"
	"github.com/tinyfarm/tinyfarm/stdlib/persist"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
)

// Names Build writes inside the disk.
const (
	// DropbearHostKey is the guest's ed25519 host key in dropbear's
	// format, where the dropbear.tcz init script looks for it. The whole
	// set (ssh.HostKeySet.Files) is also in /etc/dropbear.
	DropbearHostKey = "usr/local/etc/dropbear/dropbear_ed25519_host_key"
	// OpenSSHHostKey is the same key in OpenSSH's format, where Tiny
	// Core's openssh.tcz keeps its keys (the ecdsa and rsa keys beside it).
	OpenSSHHostKey = "usr/local/etc/ssh/ssh_host_ed25519_key"
	// BlockID is the persist block id of Build's lines in opt/bootlocal.sh.
	BlockID = "image"
	// DropbearStart is the bootlocal line that starts dropbear when it is
	// among the extensions (and openssh is not).
	DropbearStart = "/usr/local/etc/init.d/dropbear start"
	// OpenSSHStart is the bootlocal line that starts sshd when openssh is
	// among the extensions: Tiny Core's own init script, which keeps the
	// host keys Build placed (TINYCORE.md "SSH servers").
	OpenSSHStart = "/usr/local/etc/init.d/openssh start"
	// SidecarSuffix names the sidecar next to the image.
	SidecarSuffix = ".tinyfarm.json"
	// formatVersion changes when Build's output for the same inputs does:
	// what the guest finds in it. Filesystem geometry alone (the block
	// size) does not rebuild existing disks, which hold guest state.
	formatVersion = 2
)

// Options configures [Build]. Zero fields take the documented default.
type Options struct {
	// Path is the image file to write. Required.
	Path string
	// Size is the image size in bytes. Default 0: the staged tree's size
	// plus a quarter plus 16 MiB, at least 32 MiB, rounded up to 1 MiB.
	Size int64
	// FS is the filesystem: "ext2", "ext3" or "ext4", with 4 KiB blocks.
	// Default "ext3".
	FS string
	// Label is the filesystem label (at most 16 bytes). Default the
	// hostname, else "tinycore".
	Label string
	// Core is the root file system: one or more gzip newc initramfs
	// files, unpacked in order (later ones overlay earlier ones). Each is
	// a local path, or a release file name ("rootfs64.gz") fetched from
	// Mirror's release/distribution_files/ (md5-checked against
	// <name>.md5.txt, cached by name): a name without "/" that is not a
	// local file. Default none: the Mirror's core for its arch, as the
	// official mirror names it (tcz.ReleaseFiles: x86_64 corepure64.gz,
	// x86 core.gz).
	Core []string
	// Mirror resolves, fetches and installs Extensions, and supplies Core
	// when Core is empty. Required when either is needed.
	Mirror *tcz.Client
	// Layout is Scatter or Frugal. Default Scatter.
	Layout Layout
	// Hostname is the guest's name: /etc/hostname (scatter) and the
	// host= boot code in Result.Bootcodes. Default "" (Tiny Core's "box").
	Hostname string
	// AuthorizedKeys are the lines of /home/tc/.ssh/authorized_keys
	// (tinyfarm's farm key). Default none (no file).
	AuthorizedKeys []string
	// Extensions are installed with their dependencies (scatter: extracted
	// into the root; frugal: copied into tce/optional and listed in
	// tce/onboot.lst). Default none.
	Extensions []string
	// Files maps guest paths ("/etc/motd") to content, written last,
	// root-owned, mode 0755 when the content starts with "#!" and 0644
	// otherwise; parents are created 0755. In the frugal layout paths
	// under home/ and opt/ go on the disk, others into tce/mydata.tgz
	// (restored at boot). Default none.
	Files map[string]string
	// Bootlocal lines go in the "image" block of opt/bootlocal.sh, after
	// the line that starts dropbear (when dropbear is an extension).
	Bootlocal []string
	// Check computes whether the image would change and writes nothing.
	Check bool
	// TempDir is where the staging tree is assembled. Default /dev/shm
	// when it is a writable tmpfs (the tree is scratch: no disk writes,
	// no fsync cost), else the image's directory.
	TempDir string
	// NoTreeCache turns off the cache of unpacked trees (TreeCacheName
	// in /dev/shm or TempDir), which rebuilds and further disks from the
	// same core and extensions link from instead of unpacking again.
	// Default false: the cache is used, unless the tree is staged in the
	// image's directory (no usable /dev/shm), which it would clutter.
	NoTreeCache bool
	// Logf receives progress notes. Default: discard.
	Logf func(format string, args ...any)
}

// Result reports a [Build].
type Result struct {
	// Path is the image's absolute path.
	Path string `json:"path"`
	// Changed is true when the image was (would be) written.
	Changed bool `json:"-"`
	// Reason says why it changed: "new image", "inputs changed", "image
	// changed outside tinyfarm", "no sidecar"; "" when unchanged.
	Reason string `json:"-"`
	// Layout, FS, Size, Label and UUID describe the image.
	Layout Layout `json:"layout"`
	FS     string `json:"fs"`
	Size   int64  `json:"size"`
	Label  string `json:"label"`
	UUID   string `json:"uuid"`
	// HostKey is the guest's SSH host key set, to pin: one authorized_keys
	// line per key, ed25519 first, then ecdsa P-256 and rsa 2048 (a disk
	// built before key sets holds the ed25519 line alone). "" in check
	// mode when the image does not exist yet.
	HostKey string `json:"host_key"`
	// Bootcodes are the kernel boot codes the disk expects: host= when a
	// hostname is set; frugal adds tce=, home= and opt= naming the disk by
	// UUID.
	Bootcodes map[string]string `json:"bootcodes,omitempty"`
	// Extensions is the resolved install order.
	Extensions []string `json:"extensions,omitempty"`
}

// sidecar is <image>.tinyfarm.json (mode 0600: it holds the host key).
type sidecar struct {
	Format      int    `json:"format"`
	Inputs      string `json:"inputs"`
	HostKeySeed string `json:"host_key_seed"`           // hex ed25519 seed
	HostKeysPEM string `json:"host_keys_pem,omitempty"` // the ecdsa and rsa keys
	ImageSize   int64  `json:"image_size"`
	ImageMtime  int64  `json:"image_mtime_ns"`
	Edited      bool   `json:"edited,omitempty"`
	Result
}

func sidecarPath(img string) string { return img + SidecarSuffix }

func readSidecar(img string) (*sidecar, error) {
	b, err := os.ReadFile(sidecarPath(img))
	if err != nil {
		return nil, err
	}
	var s sidecar
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("sidecar %s: %v: %w", sidecarPath(img), err, ErrInvalid)
	}
	return &s, nil
}

func writeSidecar(img string, s *sidecar) error {
	fi, err := os.Stat(img)
	if err != nil {
		return err
	}
	s.ImageSize, s.ImageMtime = fi.Size(), fi.ModTime().UnixNano()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(sidecarPath(img), append(b, '\n'), 0o600)
}

// fresh reports whether img still is the file the sidecar describes.
func (s *sidecar) fresh(img string) bool {
	fi, err := os.Stat(img)
	return err == nil && fi.Size() == s.ImageSize && fi.ModTime().UnixNano() == s.ImageMtime
}

func (o *Options) defaults() error {
	if o.Path == "" {
		return fmt.Errorf("image build: path is required: %w", ErrInvalid)
	}
	p, err := filepath.Abs(o.Path)
	if err != nil {
		return fmt.Errorf("image build %s: %w", o.Path, err)
	}
	o.Path = p
	if o.FS == "" {
		o.FS = "ext3"
	}
	switch o.FS {
	case "ext2", "ext3", "ext4":
	default:
		return fmt.Errorf("image build %s: fs %q: want ext2, ext3 or ext4: %w", o.Path, o.FS, ErrInvalid)
	}
	if o.Layout == "" {
		o.Layout = Scatter
	}
	if o.Layout != Scatter && o.Layout != Frugal {
		return fmt.Errorf("image build %s: layout %q: want scatter or frugal: %w", o.Path, o.Layout, ErrInvalid)
	}
	if o.Hostname != "" && !validHostname(o.Hostname) {
		return fmt.Errorf("image build %s: hostname %q: %w", o.Path, o.Hostname, ErrInvalid)
	}
	if o.Label == "" {
		o.Label = o.Hostname
		if o.Label == "" || len(o.Label) > 16 {
			o.Label = "tinycore"
		}
	}
	if len(o.Label) > 16 || strings.ContainsAny(o.Label, "\x00\n") {
		return fmt.Errorf("image build %s: label %q: at most 16 bytes: %w", o.Path, o.Label, ErrInvalid)
	}
	if o.Size < 0 {
		return fmt.Errorf("image build %s: negative size: %w", o.Path, ErrInvalid)
	}
	for _, k := range o.AuthorizedKeys {
		if strings.ContainsAny(k, "\n\x00") {
			return fmt.Errorf("image build %s: authorized key holds a newline: %w", o.Path, ErrInvalid)
		}
	}
	for p := range o.Files {
		if c, err := target.Clean(p); err != nil || c == "." {
			return fmt.Errorf("image build %s: file %q: %w", o.Path, p, ErrInvalid)
		}
	}
	if len(o.Extensions) > 0 && o.Mirror == nil {
		return fmt.Errorf("image build %s: extensions need a tcz mirror: %w", o.Path, ErrInvalid)
	}
	if len(o.Core) == 0 && o.Mirror == nil {
		return fmt.Errorf("image build %s: core: give a local core file or a tcz mirror: %w", o.Path, ErrInvalid)
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 63 {
		return false
	}
	for i, r := range h {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (r == '-' || r == '.') && i > 0
		if !ok {
			return false
		}
	}
	return h != ""
}

// Build makes (or, when its inputs are unchanged, keeps) the disk image
// described by opts; see the package documentation. The image passes
// `e2fsck -fn`. In check mode nothing is written or downloaded.
func Build(ctx context.Context, opts Options) (Result, error) {
	if err := opts.defaults(); err != nil {
		return Result{}, err
	}
	res := Result{Path: opts.Path, Layout: opts.Layout, FS: opts.FS, Label: opts.Label}
	old, err := readSidecar(opts.Path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		opts.Logf("image: %v (rebuilding)", err)
		old = nil
	}

	// A new image, or one whose sidecar lacks keys, needs an rsa key,
	// which takes tens of milliseconds to make: it is made while the
	// inputs are resolved and the tree staged.
	var keys *keyFuture
	if !opts.Check && (old == nil || old.HostKeysPEM == "") {
		keys = startHostKeys(old)
	}

	// Resolve the inputs: core, extension tree and checksums. Core is
	// hashed while the extensions are resolved (both read files whole).
	core, err := coreFiles(ctx, &opts)
	if err != nil {
		return res, err
	}
	coreSum := startSum(core)
	// Without an image or a sidecar the build is certain before any hash
	// is known: core's extraction starts now, alongside the rest.
	_, statErr := os.Stat(opts.Path)
	var st *staging
	if !opts.Check && (errors.Is(statErr, fs.ErrNotExist) || statErr == nil && old == nil) && canBuild(&opts) == nil {
		if st, err = startStaging(ctx, &opts, core, coreSum); err != nil {
			return res, fmt.Errorf("image build %s: staging: %w", opts.Path, err)
		}
		defer st.remove()
	}
	order, sums, complete, err := resolveExtensions(ctx, &opts)
	if err != nil {
		return res, err
	}
	res.Extensions = order
	cs := coreSum.wait()
	if cs.err != nil {
		return res, fmt.Errorf("image build %s: core: %w", opts.Path, cs.err)
	}
	inputs, err := inputsHash(&opts, cs.sum, order, sums)
	if err != nil {
		return res, err
	}
	res.UUID = uuidFrom(inputs)
	res.Bootcodes = bootcodes(&opts, res.UUID)

	switch {
	case errors.Is(statErr, fs.ErrNotExist):
		res.Reason = "new image"
	case statErr != nil:
		return res, fmt.Errorf("image build %s: %w", opts.Path, statErr)
	case old == nil:
		res.Reason = "no sidecar"
	case old.Format != formatVersion || old.Inputs != inputs || !complete:
		res.Reason = "inputs changed"
	}
	// A disk whose guest ran on it has changed since it was built: that is
	// the guest's state, not drift. Only changed inputs rebuild it.
	if res.Reason == "" {
		out := old.Result
		out.Path, out.Changed = opts.Path, false
		return out, nil
	}
	res.Changed = true
	if old != nil {
		res.HostKey = old.HostKey
	}
	if opts.Check {
		return res, nil
	}
	if err := canBuild(&opts); err != nil {
		return res, fmt.Errorf("image build %s: %s, but %w", opts.Path, res.Reason, err)
	}

	// The host keys: kept across rebuilds; a disk built with ed25519 alone
	// keeps it and gains the others.
	if keys == nil {
		keys = startHostKeys(old)
	}
	if st == nil {
		if st, err = startStaging(ctx, &opts, core, coreSum); err != nil {
			return res, fmt.Errorf("image build %s: staging: %w", opts.Path, err)
		}
		defer st.remove()
	}
	t0 := time.Now()
	switch opts.Layout {
	case Scatter:
		err = stageScatter(ctx, &opts, st, keys, order, sums)
	case Frugal:
		err = stageFrugal(ctx, &opts, st, keys, order)
	}
	if err != nil {
		return res, fmt.Errorf("image build %s: %w", opts.Path, err)
	}
	hk, err := keys.wait()
	if err != nil {
		return res, fmt.Errorf("image build %s: %w", opts.Path, err)
	}
	res.HostKey = hk.AuthorizedKeys()
	opts.Logf("image: staged %s in %v", opts.Layout, time.Since(t0).Round(time.Millisecond))
	size := opts.Size
	if size == 0 {
		used, err := treeSize(st.dir)
		if err != nil {
			return res, fmt.Errorf("image build %s: %w", opts.Path, err)
		}
		size = max(32<<20, used+used/4+16<<20)
		size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	}
	res.Size = size
	t1 := time.Now()
	// Once mkfs has read the staging tree, it is removed while the image
	// is synced and the sidecar written (st.remove waits for it).
	if err := mkfs(ctx, &opts, st.dir, size, res.UUID, st.removeAsync); err != nil {
		return res, err
	}
	opts.Logf("image: mkfs.%s in %v", opts.FS, time.Since(t1).Round(time.Millisecond))
	pemKeys, err := hk.MarshalPEM()
	if err != nil {
		return res, fmt.Errorf("image build %s: %w", opts.Path, err)
	}
	sc := &sidecar{Format: formatVersion, Inputs: inputs, HostKeySeed: hex.EncodeToString(hk.Ed25519.Private.Seed()),
		HostKeysPEM: string(pemKeys), Result: res}
	sc.Result.Changed, sc.Result.Reason = false, ""
	if err := writeSidecar(opts.Path, sc); err != nil {
		return res, fmt.Errorf("image build %s: sidecar: %w", opts.Path, err)
	}
	return res, nil
}

// keyFuture is a host key set being made (see startHostKeys).
type keyFuture struct {
	done chan struct{}
	set  *ssh.HostKeySet
	err  error
}

// startHostKeys starts hostKeys(old) in the background.
func startHostKeys(old *sidecar) *keyFuture {
	f := &keyFuture{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.set, f.err = hostKeys(old)
	}()
	return f
}

// wait returns the set once made.
func (f *keyFuture) wait() (*ssh.HostKeySet, error) {
	<-f.done
	return f.set, f.err
}

// hostKeys returns the disk's host key set: the sidecar's keys, completed
// with new ones for what it lacks.
func hostKeys(old *sidecar) (*ssh.HostKeySet, error) {
	var set ssh.HostKeySet
	if old != nil && old.HostKeySeed != "" {
		seed, err := hex.DecodeString(old.HostKeySeed)
		if err == nil && len(seed) == ed25519.SeedSize {
			if set.Ed25519, err = ssh.NewHostKey(ed25519.NewKeyFromSeed(seed)); err != nil {
				return nil, err
			}
		}
	}
	if old != nil && old.HostKeysPEM != "" {
		if err := set.ParsePEMInto([]byte(old.HostKeysPEM)); err != nil {
			return nil, err
		}
	}
	return ssh.GenerateHostKeySet(&set)
}

// canBuild reports why this process cannot write the image, or nil: the
// image attached to a loop device (a running guest), its directory
// missing and not creatable, or not running as root.
func canBuild(o *Options) error {
	if dev := loopOf(o.Path); dev != "" {
		return fmt.Errorf("the image is attached to %s (a running guest?): stop the guest first: %w", dev, ErrBusy)
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o755); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("building needs root: owners and setuid bits come from the staging tree that mkfs.%s -d copies, so it must be assembled as root (check mode works without): %w", o.FS, ErrUnsupported)
	}
	return nil
}

// staging is the tree mkfs turns into the image, and core's extraction,
// which runs from startStaging on: into the tree itself (scatter) or into
// a scratch tree next to it (frugal, which takes only parts of core).
type staging struct {
	dir, coreDir string
	cache        *treeCache // nil: not used
	cancel       context.CancelFunc
	unpacked     chan struct{} // closed when core's extraction ended
	err          error         // its error
	removed      chan struct{} // set by removeAsync, closed when done
}

func startStaging(ctx context.Context, o *Options, core []string, coreSum *sumFuture) (*staging, error) {
	// A build killed midway left its staging trees (in /dev/shm, memory):
	// the next build removes them.
	base := stagingBase(o)
	fsutil.RemoveStale(base, "tinyfarm-image-")
	fsutil.RemoveStale(base, "tinyfarm-core-")
	dir, err := os.MkdirTemp(base, fsutil.PidPrefix("tinyfarm-image-"))
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	st := &staging{dir: dir, coreDir: dir, unpacked: make(chan struct{})}
	if !o.NoTreeCache && (o.TempDir != "" || base != filepath.Dir(o.Path)) {
		st.cache = openTreeCache(base)
	}
	if o.Layout == Frugal {
		if st.coreDir, err = os.MkdirTemp(filepath.Dir(dir), fsutil.PidPrefix("tinyfarm-core-")); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	var uctx context.Context
	uctx, st.cancel = context.WithCancel(ctx)
	go func() {
		defer close(st.unpacked)
		unpack := func(ctx context.Context, dir string) error {
			_, err := UnpackAll(ctx, core, dir, UnpackOptions{})
			return err
		}
		// The cache is keyed by core's content, so it waits for the hash
		// (a few ms; Build needs it anyway).
		if cs := coreSum.wait(); st.cache != nil && cs.err == nil && cs.sum != "" {
			key := fmt.Sprintf("core%d-%s", treeCacheFormat, cs.sum)
			var hit bool
			hit, st.err = st.cache.materialize(uctx, key, st.coreDir, unpack)
			o.Logf("image: core from the tree cache: %v", hit)
			return
		}
		st.err = unpack(uctx, st.coreDir)
	}()
	return st, nil
}

// core waits for core's extraction.
func (st *staging) core() error {
	<-st.unpacked
	return st.err
}

// removeCore removes the scratch tree of a frugal build.
func (st *staging) removeCore() {
	if st.coreDir != st.dir {
		st.cancel()
		<-st.unpacked
		os.RemoveAll(st.coreDir)
	}
}

// removeAsync starts removing the trees.
func (st *staging) removeAsync() {
	if st.removed != nil {
		return
	}
	st.removed = make(chan struct{})
	go func() {
		defer close(st.removed)
		st.cancel()
		<-st.unpacked
		os.RemoveAll(st.dir)
		if st.coreDir != st.dir {
			os.RemoveAll(st.coreDir)
		}
	}()
}

// remove removes the trees (stopping core's extraction) and waits.
func (st *staging) remove() {
	st.removeAsync()
	<-st.removed
}

type hashResult struct {
	sum string
	err error
}

// sumFuture is filesSHA256 of some files, being computed.
type sumFuture struct {
	done chan struct{}
	res  hashResult
}

func startSum(ps []string) *sumFuture {
	f := &sumFuture{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.res.sum, f.res.err = filesSHA256(ps)
	}()
	return f
}

func (f *sumFuture) wait() hashResult {
	<-f.done
	return f.res
}

// filesSHA256 is the hex sha256 of the files' contents one after the
// other (so rootfs64.gz + modules64.gz hashes as corepure64.gz does); ""
// when a path is "" (content unknown in check mode).
func filesSHA256(ps []string) (string, error) {
	h := sha256.New()
	for _, p := range ps {
		if p == "" {
			return "", nil
		}
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func stagingBase(o *Options) string {
	if o.TempDir != "" {
		return o.TempDir
	}
	var st syscall.Statfs_t
	const tmpfsMagic = 0x01021994
	// The staged tree is at most about the image's size; a small
	// /dev/shm (64 MiB in a Docker container) would fail half way.
	need := max(o.Size, 256<<20)
	if err := syscall.Statfs("/dev/shm", &st); err == nil && st.Type == tmpfsMagic && syscall.Access("/dev/shm", 2) == nil &&
		int64(st.Bavail)*int64(st.Bsize) >= need {
		return "/dev/shm"
	}
	return filepath.Dir(o.Path)
}

// coreFiles returns the local files of the core (see Options.Core):
// local paths as given, release file names fetched from the mirror. In
// check mode a missing download is not made and its path is "".
func coreFiles(ctx context.Context, o *Options) ([]string, error) {
	names := o.Core
	if len(names) == 0 {
		rn, err := tcz.ReleaseFiles(o.Mirror.Config().Arch)
		if err != nil {
			return nil, fmt.Errorf("image build %s: core: %w", o.Path, err)
		}
		names = []string{rn.Core}
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		_, err := os.Stat(n)
		switch {
		case err == nil:
			out = append(out, n)
		case !errors.Is(err, fs.ErrNotExist) || strings.Contains(n, "/") || o.Mirror == nil:
			return nil, fmt.Errorf("image build %s: core %s: %w (a local file, or a release file name like %q with a tcz mirror)", o.Path, n, err, "corepure64.gz")
		default:
			p, _, err := o.Mirror.FetchRelease(ctx, n, tcz.FetchOptions{Check: o.Check})
			if err != nil {
				return nil, fmt.Errorf("image build %s: core: %w", o.Path, err)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// resolveExtensions returns the install order and each extension's md5.
// Outside check mode the tree is fetched (cached and verified). In check
// mode nothing is downloaded; complete is false when some extension is not
// cached yet (its md5 is then unknown and the image counts as changed).
func resolveExtensions(ctx context.Context, o *Options) (order []string, sums map[string]string, complete bool, err error) {
	sums = map[string]string{}
	if len(o.Extensions) == 0 {
		return nil, sums, true, nil
	}
	fr, err := o.Mirror.Fetch(ctx, tcz.FetchOptions{Check: o.Check}, o.Extensions...)
	if err != nil {
		return nil, nil, false, fmt.Errorf("image build %s: %w", o.Path, err)
	}
	complete = true
	for _, n := range fr.Order {
		// In check mode a stale cached copy about to be downloaded again
		// does not count: its md5 is not the one the build would use.
		if s, ok := fr.MD5[n]; ok && !(o.Check && slices.Contains(fr.Downloaded, n)) {
			sums[n] = s
		} else {
			complete = false
		}
	}
	return fr.Order, sums, complete, nil
}

func inputsHash(o *Options, coreSum string, order []string, sums map[string]string) (string, error) {
	in := struct {
		Format                int
		FS, Label, Hostname   string
		Layout                Layout
		Size                  int64
		Core                  string
		Keys, Exts, Bootlocal []string
		Order                 []string
		Sums, Files           map[string]string
	}{formatVersion, o.FS, o.Label, o.Hostname, o.Layout, o.Size, coreSum, o.AuthorizedKeys, o.Extensions, o.Bootlocal, order, sums, o.Files}
	b, err := json.Marshal(in) // maps marshal with sorted keys
	if err != nil {
		return "", err
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:]), nil
}

// uuidFrom derives a stable filesystem UUID (version 4 layout) from the
// inputs hash, so boot codes naming the disk survive identical rebuilds.
func uuidFrom(h string) string {
	b, _ := hex.DecodeString(h[:32])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func bootcodes(o *Options, uuid string) map[string]string {
	m := map[string]string{}
	if o.Hostname != "" {
		m["host"] = o.Hostname
	}
	if o.Layout == Frugal {
		m["tce"] = "UUID=" + uuid + "/tce"
		m["home"] = "UUID=" + uuid
		m["opt"] = "UUID=" + uuid
	}
	return m
}

// account is a user's numeric ids from the core's /etc/passwd.
type account struct{ uid, gid int }

// lookupUser reads name's uid and gid from etc/passwd in t; Tiny Core's
// tc (1001:50) when the file or the user is missing.
func lookupUser(ctx context.Context, t target.Target, name string) account {
	acc := account{1001, 50}
	b, err := target.ReadFile(ctx, t, "etc/passwd")
	if err != nil {
		return acc
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 4 && f[0] == name {
			u, err1 := strconv.Atoi(f[2])
			g, err2 := strconv.Atoi(f[3])
			if err1 == nil && err2 == nil {
				return account{u, g}
			}
		}
	}
	return acc
}

// stageScatter assembles a scatter root in st.dir. Core is being
// extracted into it (startStaging) while, concurrently, the extensions
// are installed (tcz.Client.Install, dependencies included) into a second
// empty tree, which is then merged into it with tce-load's `cp -ai` rule:
// what core has is kept. The result is what installing into the extracted
// core gives (the comparison test checks it against the seed's pipeline).
func stageScatter(ctx context.Context, o *Options, st *staging, keys *keyFuture, resolved []string, sums map[string]string) error {
	dir := st.dir
	ext := dir + ".ext"
	if len(o.Extensions) > 0 {
		if err := os.Mkdir(ext, 0o755); err != nil {
			return err
		}
		defer os.RemoveAll(ext)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(st.core)
	if len(o.Extensions) > 0 {
		install := func(ctx context.Context, dir string) error {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			et, err := target.OpenDir(dir, target.DirOptions{AllowDevices: true, NoSync: true})
			if err != nil {
				return err
			}
			defer et.Close()
			for _, e := range o.Extensions {
				if _, err := o.Mirror.Install(ctx, et, e, tcz.InstallOptions{TCEDir: "tce"}); err != nil {
					return err
				}
			}
			return nil
		}
		g.Go(func() error {
			var err error
			if key := extKey(o, resolved, sums); st.cache != nil && key != "" {
				var hit bool
				hit, err = st.cache.materialize(gctx, key, ext, install)
				o.Logf("image: extensions from the tree cache: %v", hit)
			} else {
				err = install(gctx, ext)
			}
			if err != nil {
				st.cancel() // core's extraction is not needed any more
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	t, err := target.OpenDir(dir, target.DirOptions{AllowDevices: true, NoSync: true})
	if err != nil {
		return err
	}
	defer t.Close()
	var order []string
	if len(o.Extensions) > 0 {
		kept, err := mergeTree(ext, dir)
		if err != nil {
			return err
		}
		if err := fixInstallRecords(ctx, t, kept); err != nil {
			return err
		}
		if order, err = tcz.Installed(ctx, t); err != nil {
			return err
		}
	}
	tc := lookupUser(ctx, t, "tc")
	if err := tceDir(ctx, t, tc, nil); err != nil {
		return err
	}
	if err := homeDir(ctx, t, tc, o.AuthorizedKeys); err != nil {
		return err
	}
	if o.Hostname != "" {
		if err := target.WriteFile(ctx, t, "etc/hostname", []byte(o.Hostname+"\n"), 0o644, 0, 0); err != nil {
			return err
		}
	}
	hk, err := keys.wait()
	if err != nil {
		return err
	}
	kfs, err := hk.Files()
	if err != nil {
		return err
	}
	for _, kf := range kfs {
		if _, err := target.MkdirAll(ctx, t, path.Dir(kf.Name), 0o755, target.MkdirOptions{}); err != nil {
			return err
		}
		if err := target.WriteFile(ctx, t, kf.Name, kf.Data, kf.Mode, 0, 0); err != nil {
			return err
		}
	}
	if err := writeFiles(ctx, t, o.Files); err != nil {
		return err
	}
	return bootlocal(ctx, t, o, order)
}

type keyFile struct {
	name string
	data []byte
	mode fs.FileMode
}

// bootlocal writes the image block (the SSH server's start line, then
// o.Bootlocal) and the ready marker into opt/bootlocal.sh. Both servers
// listen on port 22: openssh, when installed, is the one started.
func bootlocal(ctx context.Context, t target.Target, o *Options, order []string) error {
	var lines []string
	switch {
	case slices.Contains(order, "openssh"):
		lines = append(lines, OpenSSHStart)
	case slices.Contains(order, "dropbear"):
		lines = append(lines, DropbearStart)
	}
	lines = append(lines, o.Bootlocal...)
	if len(lines) > 0 {
		if _, err := persist.Bootlocal(ctx, t, lines, persist.BlockOptions{ID: BlockID}); err != nil {
			return err
		}
	}
	// The ready marker tells tinyfarm the guest has booted (its own
	// readiness signal, followed by one SSH handshake): the console line
	// every driver waits for.
	_, err := persist.Bootlocal(ctx, t, []string{ReadyLine}, persist.BlockOptions{ID: "ready"})
	return err
}

// ReadyLine is the bootlocal.sh line that prints the guest-ready marker
// the drivers wait for.
const ReadyLine = ready.Line

// tceDir creates tce/, tce/optional/ and tce/onboot.lst owned by tc:staff
// (what tc-config makes of a tce dir), with onboot entries.
func tceDir(ctx context.Context, t target.Target, tc account, onboot []string) error {
	for _, d := range []string{"tce", "tce/optional", "tce/ondemand"} {
		if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: d, Type: target.TypeDir, Mode: 0o775, Uid: tc.uid, Gid: tc.gid}}); err != nil {
			return err
		}
	}
	if ok, _ := target.Exists(ctx, t, "tce/onboot.lst"); !ok {
		if err := target.WriteFile(ctx, t, "tce/onboot.lst", nil, 0o664, tc.uid, tc.gid); err != nil {
			return err
		}
	}
	if len(onboot) > 0 {
		if _, err := persist.Onboot(ctx, t, onboot, persist.ListOptions{TCEDir: "tce"}); err != nil {
			return err
		}
	}
	return nil
}

// homeDir makes home/tc as tc-config would (a copy of etc/skel owned by
// tc) when missing, then .ssh/authorized_keys (0600).
func homeDir(ctx context.Context, t *target.Dir, tc account, keys []string) error {
	if ok, _ := target.Exists(ctx, t, "home/tc"); !ok {
		if _, err := target.MkdirAll(ctx, t, "home", 0o755, target.MkdirOptions{}); err != nil {
			return err
		}
		if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: "home/tc", Type: target.TypeDir, Mode: 0o755, Uid: tc.uid, Gid: tc.gid}}); err != nil {
			return err
		}
		if err := copySkel(ctx, t, "etc/skel", "home/tc", tc); err != nil {
			return err
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: "home/tc/.ssh", Type: target.TypeDir, Mode: 0o700, Uid: tc.uid, Gid: tc.gid}}); err != nil {
		return err
	}
	return target.WriteFile(ctx, t, "home/tc/.ssh/authorized_keys", []byte(strings.Join(keys, "\n")+"\n"), 0o600, tc.uid, tc.gid)
}

func copySkel(ctx context.Context, t *target.Dir, from, to string, tc account) error {
	es, err := t.ReadDir(ctx, from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range es {
		dst := to + "/" + path.Base(e.Name)
		switch e.Type {
		case target.TypeDir:
			if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: dst, Type: target.TypeDir, Mode: e.Mode, Uid: tc.uid, Gid: tc.gid}}); err != nil {
				return err
			}
			if err := copySkel(ctx, t, e.Name, dst, tc); err != nil {
				return err
			}
		case target.TypeRegular:
			b, err := target.ReadFile(ctx, t, e.Name)
			if err != nil {
				return err
			}
			if err := target.WriteFile(ctx, t, dst, b, e.Mode, tc.uid, tc.gid); err != nil {
				return err
			}
		case target.TypeSymlink:
			if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: dst, Type: target.TypeSymlink, Linkname: e.Linkname, Uid: tc.uid, Gid: tc.gid}}); err != nil {
				return err
			}
		}
	}
	return nil
}

func fileMode(content string) fs.FileMode {
	if strings.HasPrefix(content, "#!") {
		return 0o755
	}
	return 0o644
}

func writeFiles(ctx context.Context, t target.Target, files map[string]string) error {
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	slices.Sort(names)
	for _, p := range names {
		n, _ := target.Clean(p)
		if _, err := target.MkdirAll(ctx, t, path.Dir(n), 0o755, target.MkdirOptions{}); err != nil {
			return err
		}
		if err := target.WriteFile(ctx, t, n, []byte(files[p]), fileMode(files[p]), 0, 0); err != nil {
			return err
		}
	}
	return nil
}

// stageFrugal assembles a frugal data disk in st.dir: tce/ with the
// extension tree and onboot.lst, home/tc, opt/ seeded from core's /opt
// plus the bootlocal block, and tce/mydata.tgz holding what must land
// outside home and opt (host keys, other Files), restored by tc-config.
func stageFrugal(ctx context.Context, o *Options, st *staging, keys *keyFuture, order []string) error {
	dir, scratch := st.dir, st.coreDir
	defer st.removeCore()
	if err := st.core(); err != nil {
		return err
	}
	ct, err := target.OpenDir(scratch, target.DirOptions{NoSync: true})
	if err != nil {
		return err
	}
	defer ct.Close()
	t, err := target.OpenDir(dir, target.DirOptions{NoSync: true})
	if err != nil {
		return err
	}
	defer t.Close()
	tc := lookupUser(ctx, ct, "tc")
	if err := tceDir(ctx, t, tc, nil); err != nil {
		return err
	}
	for _, n := range order {
		for _, f := range []string{n + ".tcz", n + ".tcz.md5.txt", n + ".tcz.dep"} {
			b, err := os.ReadFile(o.Mirror.CachePath(f))
			if errors.Is(err, fs.ErrNotExist) && strings.HasSuffix(f, ".dep") {
				continue
			}
			if err != nil {
				return err
			}
			if err := target.WriteFile(ctx, t, "tce/optional/"+f, b, 0o664, tc.uid, tc.gid); err != nil {
				return err
			}
		}
	}
	if err := tceDir(ctx, t, tc, o.Extensions); err != nil {
		return err
	}
	// home/tc from core's skel, then the keys.
	if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: "home", Type: target.TypeDir, Mode: 0o755}}); err != nil {
		return err
	}
	if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: "home/tc", Type: target.TypeDir, Mode: 0o755, Uid: tc.uid, Gid: tc.gid}}); err != nil {
		return err
	}
	if err := copyTree(ctx, ct, t, "etc/skel", "home/tc", &tc); err != nil {
		return err
	}
	if err := homeDir(ctx, t, tc, o.AuthorizedKeys); err != nil {
		return err
	}
	// opt/ as core has it, then the bootlocal block.
	if err := copyTree(ctx, ct, t, "opt", "opt", nil); err != nil {
		return err
	}
	if err := bootlocal(ctx, t, o, order); err != nil {
		return err
	}
	// Files: home/ and opt/ on the disk, the rest into mydata.tgz.
	onDisk, inTgz := map[string]string{}, map[string]string{}
	for p, c := range o.Files {
		n, _ := target.Clean(p)
		if n == "home" || n == "opt" || strings.HasPrefix(n, "home/") || strings.HasPrefix(n, "opt/") {
			onDisk[n] = c
		} else {
			inTgz[n] = c
		}
	}
	if err := writeFiles(ctx, t, onDisk); err != nil {
		return err
	}
	var tgz []keyFile
	hk, err := keys.wait()
	if err != nil {
		return err
	}
	kfs, err := hk.Files()
	if err != nil {
		return err
	}
	keyDirs := map[string]bool{}
	for _, kf := range kfs {
		tgz = append(tgz, keyFile{kf.Name, kf.Data, kf.Mode})
		keyDirs[path.Dir(kf.Name)] = true
	}
	if o.Hostname != "" {
		inTgz["etc/hostname"] = o.Hostname + "\n"
	}
	for n, c := range inTgz {
		tgz = append(tgz, keyFile{n, []byte(c), fileMode(c)})
	}
	data, err := mydata(tgz)
	if err != nil {
		return err
	}
	if err := target.WriteFile(ctx, t, "tce/mydata.tgz", data, 0o664, tc.uid, tc.gid); err != nil {
		return err
	}
	// filetool backups must keep the host keys.
	var add []string
	for d := range keyDirs {
		add = append(add, d)
	}
	slices.Sort(add)
	_, err = persist.Filetool(ctx, t, persist.FiletoolOptions{Add: add})
	return err
}

// copyTree copies from (in src) to to (in dst) recursively; with owner set,
// every entry gets that owner, else the source's.
func copyTree(ctx context.Context, src, dst *target.Dir, from, to string, owner *account) error {
	es, err := src.ReadDir(ctx, from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi, err := src.Lstat(ctx, from); err == nil {
		e := fi
		e.Name = to
		if owner != nil {
			e.Uid, e.Gid = owner.uid, owner.gid
		}
		e.ModTime = time.Time{}
		if err := dst.Apply(ctx, target.Change{Entry: e}); err != nil {
			return err
		}
	}
	for _, e := range es {
		d := e
		d.Name = to + "/" + path.Base(e.Name)
		d.ModTime = time.Time{}
		if owner != nil {
			d.Uid, d.Gid = owner.uid, owner.gid
		}
		switch e.Type {
		case target.TypeDir:
			if err := copyTree(ctx, src, dst, e.Name, d.Name, owner); err != nil {
				return err
			}
		case target.TypeRegular:
			b, err := target.ReadFile(ctx, src, e.Name)
			if err != nil {
				return err
			}
			if err := dst.Apply(ctx, target.Change{Entry: d, Body: target.BytesBody(b)}); err != nil {
				return err
			}
		case target.TypeSymlink:
			if err := dst.Apply(ctx, target.Change{Entry: d}); err != nil {
				return err
			}
		}
	}
	return nil
}

// mydata renders files as a gzipped tar relative to / (what tc-config
// restores with `tar -C / -zxf`), sorted, root-owned, fixed times.
func mydata(files []keyFile) ([]byte, error) {
	slices.SortFunc(files, func(a, b keyFile) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	dirs := map[string]bool{}
	epoch := time.Unix(0, 0)
	for _, f := range files {
		var parents []string
		for d := path.Dir(f.name); d != "." && !dirs[d]; d = path.Dir(d) {
			parents = append(parents, d)
			dirs[d] = true
		}
		for i := len(parents) - 1; i >= 0; i-- {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: parents[i] + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: int64(f.mode), Size: int64(len(f.data)), ModTime: epoch, Format: tar.FormatUSTAR}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// treeSize estimates the space dir takes in an ext filesystem: content
// rounded up to 4 KiB blocks plus one block per directory and an inode's
// worth (256 bytes) per entry.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n += 256
		if d.IsDir() {
			n += 4096
			return nil
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += (fi.Size() + 4095) &^ 4095
		}
		return nil
	})
	return n, err
}

// mkfs turns the staged tree into the image: mkfs.<fs> -d into a
// temporary file next to the image, fsync, rename over it. Once mkfs has
// read the tree it calls done (only when it succeeded).
//
// The filesystem has 4 KiB blocks whatever its size (mke2fs would pick
// 1 KiB below 512 MiB). mke2fs -d writes file data with one pwrite per
// block, so this divides its main cost by four; every file block then
// lies on a 4 KiB boundary of the image file, the unit of host block
// sharing (ops.Unify) and of the guest's page cache; and there is a
// little more free space (fewer bitmaps and descriptors). Features, inode
// count and journal size stay mke2fs's choice for the size. Other mke2fs
// options save nothing here: on a regular file mke2fs punches the file
// and zeroes inode tables and journal with fallocate, writing no data.
func mkfs(ctx context.Context, o *Options, tree string, size int64, uuid string, done func()) error {
	// A build killed during mkfs left its temporary image: removed here.
	fsutil.RemoveStaleTemps(filepath.Dir(o.Path), filepath.Base(o.Path))
	name := filepath.Join(filepath.Dir(o.Path), fsutil.TempName(filepath.Base(o.Path)))
	tmp, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("image build %s: %w", o.Path, err)
	}
	ok := false
	defer func() {
		tmp.Close()
		if !ok {
			os.Remove(name)
		}
	}()
	// Mode first: mke2fs's own fsync then covers it.
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("image build %s: %w", o.Path, err)
	}
	cmd := exec.CommandContext(ctx, "mkfs."+o.FS, "-q", "-F", "-b", "4096", "-L", o.Label, "-U", uuid,
		"-E", "root_owner=0:0", "-d", tree, name, strconv.FormatInt(size/1024, 10)+"k")
	// The image is written back while mke2fs fills it, so that its final
	// fsync finds little left to do.
	stop := startWriteback(tmp)
	out, err := cmd.CombinedOutput()
	stop()
	if err != nil {
		return fmt.Errorf("image build %s: mkfs.%s: %w: %s", o.Path, o.FS, err, strings.TrimSpace(string(out)))
	}
	done()
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("image build %s: %w", o.Path, err)
	}
	if err := os.Rename(name, o.Path); err != nil {
		return fmt.Errorf("image build %s: %w", o.Path, err)
	}
	ok = true
	syncDir(filepath.Dir(o.Path))
	return nil
}

// mergeTree moves every entry of src that dst lacks into dst, top-down,
// keeping what dst has (cp -ai). It returns the names dst already had.
// A directory of src where dst has a non-directory is refused with
// ErrUnsafePath, so no move ever goes through a symlink of dst: every
// parent used is a directory verified one level up.
func mergeTree(src, dst string) (map[string]bool, error) {
	kept := map[string]bool{}
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil || rel == "." {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := os.Lstat(to)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if err := os.Rename(p, to); err != nil {
				return err
			}
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		case err != nil:
			return err
		}
		kept[filepath.ToSlash(rel)] = true
		if d.IsDir() {
			if !fi.IsDir() {
				return fmt.Errorf("merge %s: core has a %v there: %w", rel, fi.Mode().Type(), ErrUnsafePath)
			}
			return nil
		}
		return nil
	})
	return kept, err
}

// fixInstallRecords makes the install records read as if the extensions
// had been installed into core directly: names core already had are not
// "created by" an extension (tcz's .files lists), and the first-boot block
// goes into core's own opt/bootsync.sh.
func fixInstallRecords(ctx context.Context, t *target.Dir, kept map[string]bool) error {
	lists, err := t.ReadDir(ctx, tcz.FilesDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, l := range lists {
		if !strings.HasSuffix(l.Name, ".list") {
			continue
		}
		b, err := target.ReadFile(ctx, t, l.Name)
		if err != nil {
			return err
		}
		var out strings.Builder
		for _, n := range strings.SplitAfter(string(b), "\n") {
			if n != "" && !kept[strings.TrimSuffix(n, "\n")] {
				out.WriteString(n)
			}
		}
		if out.String() != string(b) {
			if err := target.WriteFile(ctx, t, l.Name, []byte(out.String()), l.Mode, l.Uid, l.Gid); err != nil {
				return err
			}
		}
	}
	if ok, _ := target.Exists(ctx, t, tcz.FirstbootQueue); ok && kept["opt/bootsync.sh"] {
		if _, err := persist.Bootsync(ctx, t, tcz.FirstbootScript, persist.BlockOptions{ID: tcz.FirstbootBlockID}); err != nil {
			return err
		}
	}
	return nil
}

// extKey is the tree cache key of the extension tree Install makes from
// o.Extensions: their names, the resolved order and every archive's md5
// (verified by the mirror). "" when an md5 is missing.
func extKey(o *Options, order []string, sums map[string]string) string {
	for _, n := range order {
		if sums[n] == "" {
			return ""
		}
	}
	b, err := json.Marshal(struct {
		Exts, Order []string
		Sums        map[string]string
	}{o.Extensions, order, sums})
	if err != nil {
		return ""
	}
	h := sha256.Sum256(b)
	return fmt.Sprintf("ext%d-%x", treeCacheFormat, h)
}
