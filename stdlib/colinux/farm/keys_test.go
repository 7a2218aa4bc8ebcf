package farm

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// TestAuthorizeScript runs AuthorizeKey's script with this machine's sh
// (busybox's in a guest): the key is added once, after a last line
// without its newline, in a directory made for it; check mode changes
// nothing; a key there with another comment counts as there.
func TestAuthorizeScript(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Skip(err)
	}
	k, _ := ssh.GenerateHostKey()
	entry := ssh.AuthorizedKey(k.Public, "tinyfarm-cluster-controller")
	run := func(file string, check bool) string {
		t.Helper()
		b, err := exec.Command("/bin/sh", "-c", authorizeScript(file, u.Username, entry, check)).Output()
		if err != nil {
			t.Fatalf("script: %v", err)
		}
		return strings.TrimSpace(string(b))
	}
	dir := t.TempDir()
	fresh := filepath.Join(dir, "home", ".ssh", "authorized_keys")
	if got := run(fresh, true); got != "absent" {
		t.Errorf("check on no file: %q", got)
	}
	if _, err := os.Stat(filepath.Dir(fresh)); err == nil {
		t.Errorf("check mode made %s", filepath.Dir(fresh))
	}
	if got := run(fresh, false); got != "added" {
		t.Errorf("first: %q", got)
	}
	if got := run(fresh, false); got != "present" {
		t.Errorf("second: %q", got)
	}
	if b, _ := os.ReadFile(fresh); string(b) != entry+"\n" {
		t.Errorf("file: %q", b)
	}

	old := filepath.Join(dir, "old")
	os.WriteFile(old, []byte("ssh-ed25519 AAAAother farm"), 0o644) // no last newline
	if got := run(old, false); got != "added" {
		t.Errorf("after a line without newline: %q", got)
	}
	if b, _ := os.ReadFile(old); string(b) != "ssh-ed25519 AAAAother farm\n"+entry+"\n" {
		t.Errorf("file: %q", b)
	}

	other := filepath.Join(dir, "other")
	os.WriteFile(other, []byte("no-pty "+strings.Join(strings.Fields(entry)[:2], " ")+" added-by-hand\n"), 0o644)
	if got := run(other, false); got != "present" {
		t.Errorf("the key with another comment: %q", got)
	}
}
