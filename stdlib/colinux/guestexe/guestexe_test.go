//go:build unix

package guestexe_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guestexe"
)

// TestFind builds the real tinyfarm-guest with a stamp, as make build
// does, and checks when tinyfarm (self) would run it instead of itself.
func TestFind(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/tinyfarm-guest")
	}
	dir := t.TempDir()
	helper := filepath.Join(dir, guestexe.Name)
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/tinyfarm/tinyfarm/stdlib/colinux/guestexe.Stamp=s1", "-o", helper, "github.com/tinyfarm/tinyfarm/cmd/tinyfarm-guest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	self := filepath.Join(dir, "tinyfarm")
	if err := os.WriteFile(self, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	check := func(what, stamp, want string) {
		t.Helper()
		if got := guestexe.Find(self, stamp); got != want {
			t.Errorf("%s: Find = %s, want %s", what, got, want)
		}
	}
	check("same stamp", "s1", helper)
	check("another build's helper", "s2", self)
	check("a plain go build (no stamp)", "", self)
	if err := os.Chmod(helper, 0o775); err != nil {
		t.Fatal(err)
	}
	check("group-writable helper", "s1", self)
	os.Chmod(helper, 0o755)
	if err := os.WriteFile(helper, []byte("guestexe.Stamp=s1 not a Go binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	check("not a Go binary", "s1", self)
	os.Remove(helper)
	check("no helper", "s1", self)
	if p, err := guestexe.Path(); err != nil || p != mustExe(t) {
		t.Errorf("Path in a test binary (no stamp) = %s, %v; want the binary itself", p, err)
	}
}

func mustExe(t *testing.T) string {
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
