package tcz

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// TestInstallSSHServerPlacesHostKeys installs the mini release's openssh
// and dropbear into roots holding host keys the way disks do: the keys end
// up where the new server reads them, in its format, before it first
// starts; existing files are kept; a root without keys is left alone.
func TestInstallSSHServerPlacesHostKeys(t *testing.T) {
	dir := minicoreMirror(t)
	newClient := func() *Client {
		c, err := New(Config{URL: "file://" + dir, Cache: t.TempDir(), Kernel: "6.1.0-56-amd64"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	write := func(root, name string, data []byte) {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keyOf := func(root, name string) string {
		b, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			return ""
		}
		var s ssh.HostKeySet
		if err := s.ParseHostKeyFile(b); err != nil {
			t.Errorf("%s: %v", name, err)
			return ""
		}
		return s.AuthorizedKeys()
	}

	// A disk built before key sets: one ed25519 key, for dropbear and in etc/ssh.
	old, _ := ssh.GenerateHostKey()
	tg := newTarget(t)
	write(tg.Path(), "usr/local/etc/dropbear/dropbear_ed25519_host_key", old.Dropbear())
	r, err := newClient().Install(ctx, tg, "openssh", InstallOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := keyOf(tg.Path(), "usr/local/etc/ssh/ssh_host_ed25519_key"); got != old.AuthorizedKey() {
		t.Errorf("openssh's ed25519 key %q, want the disk's %q", got, old.AuthorizedKey())
	}
	if !slices.Contains(r.Files, "usr/local/etc/ssh/ssh_host_ed25519_key") {
		t.Errorf("Files lacks the key: %q", r.Files)
	}
	if _, err := os.Stat(filepath.Join(tg.Path(), "usr/local/etc/ssh/ssh_host_rsa_key")); err == nil {
		t.Error("an rsa key was invented: the init script makes its own, unpinned")
	}

	// A full set that only OpenSSH has: dropbear gets all three, in both places.
	set, _ := ssh.GenerateHostKeySet(nil)
	files, _ := set.Files()
	tg = newTarget(t)
	for _, f := range files {
		if filepath.Dir(f.Name) == ssh.OpenSSHKeyDir {
			write(tg.Path(), f.Name, f.Data)
		}
	}
	mine := []byte("not a key the server reads")
	write(tg.Path(), "etc/dropbear/dropbear_rsa_host_key", mine)
	if _, err := newClient().Install(ctx, tg, "dropbear", InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		got := keyOf(tg.Path(), "usr/local/etc/dropbear/dropbear_"+typ+"_host_key")
		if got == "" || !slices.Contains(splitLines(set.AuthorizedKeys()), got) {
			t.Errorf("dropbear %s key %q not from the set", typ, got)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(tg.Path(), "etc/dropbear/dropbear_rsa_host_key")); string(b) != string(mine) {
		t.Error("an existing key file was replaced")
	}

	// No keys: nothing placed.
	tg = newTarget(t)
	if _, err := newClient().Install(ctx, tg, "openssh", InstallOptions{}); err != nil {
		t.Fatal(err)
	}
	if es, err := os.ReadDir(filepath.Join(tg.Path(), "usr/local/etc/ssh")); err != nil || len(es) != 1 {
		t.Errorf("usr/local/etc/ssh holds %v (%v), want only sshd_config.example", es, err)
	}
}

func splitLines(s string) []string { return strings.Split(s, "\n") }
