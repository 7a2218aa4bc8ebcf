package ssh

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestEnsureFarmKey(t *testing.T) {
	dir := t.TempDir()
	k1, err := EnsureFarmKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "keys", "farm_ed25519")
	if k1.Path != path {
		t.Errorf("Path = %q, want %q", k1.Path, path)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, path + ".pub": 0o644, filepath.Dir(path): 0o700} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode = %v, want %v", p, st.Mode().Perm(), want)
		}
	}
	if k1.PublicKey().Type() != "ssh-ed25519" {
		t.Errorf("key type %s", k1.PublicKey().Type())
	}
	pub, _ := os.ReadFile(path + ".pub")
	if string(pub) != k1.AuthorizedKey()+"\n" || !strings.HasPrefix(string(pub), "ssh-ed25519 AAAA") ||
		!strings.HasSuffix(string(pub), " tinyfarm\n") {
		t.Errorf(".pub = %q", pub)
	}
	if parsed, err := ParsePublicKey(string(pub)); err != nil || !bytes.Equal(parsed.Marshal(), k1.PublicKey().Marshal()) {
		t.Errorf("ParsePublicKey(.pub) = %v, %v", parsed, err)
	}

	// Reused afterwards, and the .pub is rewritten when lost.
	os.Remove(path + ".pub")
	k2, err := EnsureFarmKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k2.AuthorizedKey() != k1.AuthorizedKey() {
		t.Error("second EnsureFarmKey made a new key")
	}
	if pub2, err := os.ReadFile(path + ".pub"); err != nil || !bytes.Equal(pub2, pub) {
		t.Errorf(".pub not restored: %q, %v", pub2, err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 2 {
		t.Errorf("keys dir holds %d entries, want 2 (temp files left?)", len(ents))
	}
}

func TestEnsureFarmKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	keys := make([]string, 8)
	for i := range keys {
		wg.Go(func() {
			k, err := EnsureFarmKey(dir)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = k.AuthorizedKey()
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if k != keys[0] {
			t.Fatalf("concurrent callers got different keys: %q vs %q", k, keys[0])
		}
	}
}

func TestDropbearFormatRoundTrip(t *testing.T) {
	hk, err := GenerateHostKey()
	if err != nil {
		t.Fatal(err)
	}
	data := hk.Dropbear()
	if len(data) != 4+11+4+64 || !bytes.Equal(data[4:15], []byte("ssh-ed25519")) {
		t.Fatalf("dropbear key layout: % x", data)
	}
	priv, err := ParseDropbearEd25519(data)
	if err != nil {
		t.Fatal(err)
	}
	if !priv.Equal(hk.Private) {
		t.Fatal("round trip changed the key")
	}
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1 // public half no longer matches the seed
	if _, err := ParseDropbearEd25519(bad); err == nil {
		t.Error("corrupt public half accepted")
	}
	if _, err := ParseDropbearEd25519(data[:20]); err == nil {
		t.Error("truncated key accepted")
	}
	pemData, err := hk.OpenSSH()
	if err != nil || !bytes.HasPrefix(pemData, []byte("-----BEGIN OPENSSH PRIVATE KEY-----")) {
		t.Fatalf("OpenSSH() = %.40q, %v", pemData, err)
	}
	if _, err := NewHostKey(ed25519.PrivateKey{1, 2}); err == nil {
		t.Error("short key accepted")
	}
}

// TestDropbearkeyReadsOurFormat proves the writer against dropbear's own tool.
func TestDropbearkeyReadsOurFormat(t *testing.T) {
	tool, err := exec.LookPath("dropbearkey")
	if err != nil {
		t.Skip("dropbearkey not installed (apt-get install dropbear-bin)")
	}
	hk, err := GenerateHostKey()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dropbear_ed25519_host_key")
	if err := os.WriteFile(file, hk.Dropbear(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "-y", "-f", file).CombinedOutput()
	if err != nil {
		t.Fatalf("dropbearkey -y: %v\n%s", err, out)
	}
	var line string
	for l := range strings.Lines(string(out)) {
		if strings.HasPrefix(l, "ssh-ed25519 ") {
			line = l
		}
	}
	got, err := ParsePublicKey(line)
	if err != nil {
		t.Fatalf("dropbearkey output %q: %v", out, err)
	}
	if !bytes.Equal(got.Marshal(), hk.Public.Marshal()) {
		t.Fatalf("dropbearkey sees %s, we wrote %s", line, hk.AuthorizedKey())
	}
	if !strings.Contains(string(out), Fingerprint(hk.Public)) {
		t.Logf("dropbearkey fingerprint line differs in form: %s", out)
	}
}
