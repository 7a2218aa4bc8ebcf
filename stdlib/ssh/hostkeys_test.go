//go:build linux

package ssh

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestHostKeySetFilesReadByRealServers: every file Files renders is read by
// the real tool of its server (ssh-keygen for OpenSSH's, dropbearkey for
// dropbear's) and gives the set's public key; each parses back.
func TestHostKeySetFilesReadByRealServers(t *testing.T) {
	set, err := GenerateHostKeySet(nil)
	if err != nil {
		t.Fatal(err)
	}
	pubs := map[string]string{} // key type -> "type base64"
	for _, l := range strings.Split(set.AuthorizedKeys(), "\n") {
		f := strings.Fields(l)
		pubs[f[0]] = f[0] + " " + f[1]
	}
	if len(pubs) != 3 || pubs["ssh-ed25519"] == "" || pubs["ecdsa-sha2-nistp256"] == "" || pubs["ssh-rsa"] == "" {
		t.Fatalf("AuthorizedKeys %q", set.AuthorizedKeys())
	}
	if !strings.HasPrefix(set.AuthorizedKeys(), "ssh-ed25519 ") {
		t.Errorf("ed25519 is not first: %q", set.AuthorizedKeys())
	}
	files, err := set.Files()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
		p := filepath.Join(dir, f.Name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, f.Data, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"usr/local/etc/ssh/ssh_host_ed25519_key", "usr/local/etc/ssh/ssh_host_ecdsa_key.pub",
		"usr/local/etc/ssh/ssh_host_rsa_key", "usr/local/etc/dropbear/dropbear_rsa_host_key", "etc/dropbear/dropbear_ecdsa_host_key",
		"etc/dropbear/dropbear_ed25519_host_key"} {
		if !strings.Contains(strings.Join(names, "\n")+"\n", want+"\n") {
			t.Errorf("Files lacks %s: %q", want, names)
		}
	}
	keygen, kerr := exec.LookPath("ssh-keygen")
	dbkey, derr := exec.LookPath("dropbearkey")
	for _, f := range files {
		if strings.HasSuffix(f.Name, ".pub") {
			continue
		}
		p := filepath.Join(dir, f.Name)
		var one HostKeySet
		if err := one.ParseHostKeyFile(f.Data); err != nil {
			t.Errorf("%s: %v", f.Name, err)
			continue
		}
		got := AuthorizedKey(one.PublicKeys()[0], "")
		if pubs[strings.Fields(got)[0]] != got {
			t.Errorf("%s parses to %s", f.Name, got)
		}
		var tool []string
		switch {
		case strings.Contains(f.Name, "/ssh/") && kerr == nil:
			tool = []string{keygen, "-y", "-f", p}
		case strings.Contains(f.Name, "dropbear") && derr == nil:
			tool = []string{dbkey, "-y", "-f", p}
		default:
			continue
		}
		out, err := exec.Command(tool[0], tool[1:]...).CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(tool, " "), err, out)
			continue
		}
		if !strings.Contains(string(out), got) {
			t.Errorf("%s says\n%s\nwant %s", strings.Join(tool, " "), out, got)
		}
	}
	// The PEM form kept beside a disk round-trips.
	b, err := set.MarshalPEM()
	if err != nil {
		t.Fatal(err)
	}
	back := HostKeySet{Ed25519: set.Ed25519}
	if err := back.ParsePEMInto(b); err != nil || back.AuthorizedKeys() != set.AuthorizedKeys() {
		t.Errorf("PEM round trip: %v\n%s\n%s", err, back.AuthorizedKeys(), set.AuthorizedKeys())
	}
	// An existing ed25519 key is kept when the set is completed.
	full, err := GenerateHostKeySet(&HostKeySet{Ed25519: set.Ed25519})
	if err != nil || full.Ed25519 != set.Ed25519 || full.ECDSA == nil || full.RSA == nil {
		t.Errorf("completing a set: %+v %v", full, err)
	}
	if ps, err := ParsePublicKeys(set.AuthorizedKeys() + "\n\n"); err != nil || len(ps) != 3 {
		t.Errorf("ParsePublicKeys: %d %v", len(ps), err)
	}
	if _, err := ParsePublicKeys(" \n"); err == nil {
		t.Error("ParsePublicKeys of nothing succeeded")
	}
}

// TestPinnedSetOldServer: a real dropbear serving only the rsa and ecdsa
// keys of a set (what an old server without ed25519 offers) is verified by
// pinning the set; a different set is refused, and so is pinning ed25519
// alone, with a message naming the algorithms.
func TestPinnedSetOldServer(t *testing.T) {
	set, err := GenerateHostKeySet(nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := set.Files()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var keys []string
	for _, f := range files {
		if strings.HasPrefix(f.Name, DropbearKeyDir) && !strings.Contains(f.Name, "ed25519") {
			p := filepath.Join(dir, filepath.Base(f.Name))
			mustWrite(t, p, string(f.Data), 0o600)
			keys = append(keys, p)
		}
	}
	env := startDropbearKeys(t, keys, set.PublicKeys())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := env.dial(ctx, Config{})
	if err != nil {
		t.Fatalf("pinned set: %v", err)
	}
	c.Close()
	other, _ := GenerateHostKeySet(nil)
	_, err = env.dial(ctx, Config{HostKeys: other.PublicKeys()})
	var hk *HostKeyError
	if !errors.As(err, &hk) || len(hk.Want) != 3 {
		t.Errorf("another set: %v", err)
	}
	_, err = env.dial(ctx, Config{HostKey: set.Ed25519.Public})
	if !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), "ssh-ed25519") {
		t.Errorf("ed25519 alone: %v", err)
	}
}
