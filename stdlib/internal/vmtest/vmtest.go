// Package vmtest runs a test binary inside a QEMU VM booted from the mini
// release's kernel, the way u-root's vmtest does: the binary (with the
// shared libraries it needs), busybox and an /init script go into an
// initramfs; /init runs the binary and prints a result marker on the
// serial console, which the host side reads.
//
// It lets a test exercise what the host it runs on cannot offer, e.g. a
// pure cgroup v2 hierarchy on a host that boots with cgroup v1.
package vmtest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// Inside is the environment variable /init sets for the binary it runs:
// its value says what to do inside the VM.
const Inside = "TINYFARM_VMTEST"

// ResultMarker starts the console line /init prints after the binary
// ended: "TINYFARM-VMTEST-RESULT rc=N".
const ResultMarker = "TINYFARM-VMTEST-RESULT"

// Archive builds a newc cpio archive (an initramfs). Parent directories
// of every entry are added on the way (the kernel does not make them).
type Archive struct {
	buf  bytes.Buffer
	ino  uint32
	have map[string]bool
	err  error
}

func clean(name string) string { return strings.TrimPrefix(path.Clean("/"+name), "/") }

func (a *Archive) header(name string, mode uint32, size int) { a.headerDev(name, mode, size, 0, 0) }

func (a *Archive) headerDev(name string, mode uint32, size int, major, minor uint32) {
	if a.have == nil {
		a.have = map[string]bool{}
	}
	a.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	fmt.Fprintf(&a.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		a.ino, mode, 0, 0, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	a.buf.WriteString(name)
	a.buf.WriteByte(0)
	a.pad()
}

func (a *Archive) pad() {
	for a.buf.Len()%4 != 0 {
		a.buf.WriteByte(0)
	}
}

func (a *Archive) parents(name string) {
	if d := path.Dir(name); d != "." && d != "/" {
		a.Dir(d, 0o755)
	}
}

// Dir adds a directory (and its parents).
func (a *Archive) Dir(name string, perm fs.FileMode) {
	name = clean(name)
	if name == "" || a.have[name] {
		return
	}
	a.parents(name)
	a.header(name, 0o040000|uint32(perm.Perm()), 0)
	a.have[name] = true
}

// File adds a regular file.
func (a *Archive) File(name string, data []byte, perm fs.FileMode) {
	name = clean(name)
	a.parents(name)
	a.header(name, 0o100000|uint32(perm.Perm()), len(data))
	a.buf.Write(data)
	a.pad()
	a.have[name] = true
}

// CharDev adds a character device node (e.g. dev/console, which the
// kernel opens for /init's standard streams before /init runs).
func (a *Archive) CharDev(name string, perm fs.FileMode, major, minor uint32) {
	name = clean(name)
	a.parents(name)
	a.headerDev(name, 0o020000|uint32(perm.Perm()), 0, major, minor)
	a.have[name] = true
}

// Symlink adds a symbolic link.
func (a *Archive) Symlink(name, target string) {
	name = clean(name)
	a.parents(name)
	a.header(name, 0o120777, len(target))
	a.buf.WriteString(target)
	a.pad()
	a.have[name] = true
}

// HostFile adds the host file src (symlinks followed) as name.
func (a *Archive) HostFile(name, src string, perm fs.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	a.File(name, b, perm)
	return nil
}

// lddLib matches the paths in ldd's output: "libc.so.6 => /lib/.../libc.so.6
// (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)".
var lddLib = regexp.MustCompile(`(?m)(?:=>\s+|^\s*)(/\S+)\s+\(0x`)

// SharedLibs lists the shared libraries (and the ELF interpreter) the
// dynamic executable exe loads, from ldd; none for a static one.
func SharedLibs(exe string) ([]string, error) {
	out, err := exec.Command("ldd", exe).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) || bytes.Contains(out, []byte("statically linked")) {
			return nil, nil
		}
		return nil, fmt.Errorf("vmtest: ldd %s: %v: %s", exe, err, out)
	}
	var libs []string
	for _, m := range lddLib.FindAllSubmatch(out, -1) {
		libs = append(libs, string(m[1]))
	}
	return libs, nil
}

// Executable adds the host executable src as name, with the shared
// libraries it needs at their host paths.
func (a *Archive) Executable(name, src string) error {
	if err := a.HostFile(name, src, 0o755); err != nil {
		return err
	}
	libs, err := SharedLibs(src)
	if err != nil {
		return err
	}
	for _, l := range libs {
		if a.have[clean(l)] {
			continue
		}
		if err := a.HostFile(l, l, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// Bytes ends the archive (TRAILER!!!) and returns it, uncompressed.
func (a *Archive) Bytes() []byte {
	a.header("TRAILER!!!", 0, 0)
	return a.buf.Bytes()
}

// WriteInitrd writes file: the gzip-compressed archives, appended in order
// to the already compressed initramfs files in prefix (the kernel unpacks
// concatenated archives in order, later entries replacing earlier ones).
func WriteInitrd(file string, prefix []string, archives ...*Archive) (err error) {
	f, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("vmtest: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("vmtest: %w", cerr)
		}
	}()
	for _, p := range prefix {
		in, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			return fmt.Errorf("vmtest: %s: %w", p, err)
		}
	}
	for _, a := range archives {
		zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
		if _, err := zw.Write(a.Bytes()); err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("vmtest: %w", err)
		}
	}
	return nil
}

// ParseResult finds the result marker in console output: the exit status
// /init reported, or an error when the marker is missing.
func ParseResult(console string) (int, error) {
	i := strings.LastIndex(console, ResultMarker+" rc=")
	if i < 0 {
		return -1, errors.New("vmtest: no result marker on the console")
	}
	rest := console[i+len(ResultMarker)+4:]
	j := strings.IndexAny(rest, "\r\n")
	if j < 0 {
		j = len(rest)
	}
	rc, err := strconv.Atoi(strings.TrimSpace(rest[:j]))
	if err != nil {
		return -1, fmt.Errorf("vmtest: result marker: %w", err)
	}
	return rc, nil
}

// InitScript is a busybox /init (at path in the archive, with busybox at
// /bin/busybox and a dev/console node) that prepares a minimal system,
// runs setup then command, prints ResultMarker with command's exit status
// and powers off.
//
// It first moves everything into a tmpfs and switch_roots there: the
// initramfs root (rootfs) cannot be pivot_root'ed away, and container
// runtimes (the ns driver among them) pivot_root out of the host's root.
func InitScript(path, setup, command string) string {
	return `#!/bin/busybox sh
B=/bin/busybox
if [ "$1" != stage2 ]; then
	$B mkdir -p /newroot
	$B mount -t tmpfs -o mode=755 root /newroot
	for f in /*; do
		case "$f" in
		/newroot | /proc | /sys | /dev) ;;
		*) $B cp -a "$f" /newroot/ ;;
		esac
	done
	$B mkdir -p /newroot/proc /newroot/sys /newroot/dev
	exec $B switch_root /newroot ` + path + ` stage2
fi
$B mkdir -p /bin /sbin /usr/bin /usr/sbin /tmp /run
$B --install -s
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o ptmxmode=0666 devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
` + setup + `
` + command + `
rc=$?
[ $rc = 0 ] || { echo "vmtest: kernel log:"; dmesg | tail -n 60; }
echo "` + ResultMarker + ` rc=$rc"
sync
poweroff -f
sleep 60
`
}
