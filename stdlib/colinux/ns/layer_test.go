//go:build linux

package ns_test

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// loopsBacking counts the loop devices whose backing file is p.
func loopsBacking(p string) int {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	n := 0
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == p {
			n++
		}
	}
	return n
}

// TestLayeredGuests: two guests on one base, each with its own layer
// disk, in the default user-namespace mode and without it. Each boots
// Tiny Core from the base, writes into its own layer (copy-on-write: the
// other guest and the base never see it), keeps what it wrote across a
// restart (the layer is its disk), and both run on one loop device of
// the base: one superblock, so one page cache for the base's files.
func TestLayeredGuests(t *testing.T) {
	needRoot(t)
	base := scatterDisk(t, "mkdir -p /opt/www; httpd -p 80 -h /opt/www")
	before := fileSum(t, base)
	for i, userns := range []bool{true, false} {
		name := "userns"
		if !userns {
			name = "plain"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			mk := func(n string, ip int) driver.Spec {
				s := spec(t, "lay"+n, filepath.Join(dir, n+".img"), ip) // layer made at start
				s.Base, s.UserNS = base, userns
				return s
			}
			s1, s2 := mk("a", 40+2*i), mk("b", 41+2*i)
			g1, g2 := start(t, s1), start(t, s2)
			if n := loopsBacking(base); n != 1 {
				t.Errorf("%d loop devices back the base, want 1 (shared)", n)
			}
			run := func(g driver.Guest, cmd string) string {
				t.Helper()
				res, err := g.(driver.Execer).Exec(context.Background(), []string{"sh", "-c", cmd}, driver.ExecOptions{})
				if err != nil || res.Code != 0 {
					t.Fatalf("exec %q: %v %+v %s", cmd, err, res, res.Stderr)
				}
				return string(res.Stdout)
			}
			run(g1, "echo mine > /opt/www/index.html; echo changed >> /etc/profile; rm /bin/ls; sync")
			if out := run(g2, "cat /opt/www/index.html 2>&1; ls /bin/ls; grep -c changed /etc/profile || true"); strings.Contains(out, "mine") || !strings.Contains(out, "/bin/ls") || !strings.HasSuffix(out, "0\n") {
				t.Errorf("guest b sees guest a's writes: %q", out)
			}
			// A mount to reach the layer or the base is refused (seccomp, caps).
			if res, _ := g1.(driver.Execer).Exec(context.Background(), []string{"sh", "-c", "mount -o remount,rw / && echo rw"}, driver.ExecOptions{}); strings.Contains(string(res.Stdout), "rw") {
				t.Error("guest remounted its root")
			}
			if err := g1.Stop(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			g1 = start(t, s1)
			if out := run(g1, "cat /opt/www/index.html; ls /bin/ls 2>&1; grep -c changed /etc/profile"); !strings.Contains(out, "mine") || !strings.Contains(out, "No such file") || !strings.HasSuffix(out, "1\n") {
				t.Errorf("guest a after a restart: %q (want its writes and its deletion kept)", out)
			}
			g1.Stop(context.Background(), 0)
			g2.Stop(context.Background(), 0)
		})
	}
	if fileSum(t, base) != before {
		t.Error("the base image changed")
	}
}
