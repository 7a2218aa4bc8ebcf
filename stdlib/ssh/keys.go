package ssh

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	xssh "golang.org/x/crypto/ssh"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// Farm key file names, relative to the state dir.
const (
	// FarmKeyFile is the farm's private key (OpenSSH format, mode 0600) under the state dir.
	FarmKeyFile = "keys/farm_ed25519"
	// FarmKeyComment is the comment written into the farm key and its authorized_keys line.
	FarmKeyComment = "tinyfarm"
)

// FarmKey is the ed25519 client key tinyfarm logs into every guest with.
type FarmKey struct {
	// Signer signs authentication requests; pass it as [Config.Signer].
	Signer xssh.Signer
	// Path is the private key file (OpenSSH format), usable with `ssh -i`.
	Path string
}

// PublicKey returns the public half of the farm key.
func (k *FarmKey) PublicKey() xssh.PublicKey { return k.Signer.PublicKey() }

// AuthorizedKey returns the farm key's authorized_keys line, without a trailing newline.
func (k *FarmKey) AuthorizedKey() string { return AuthorizedKey(k.PublicKey(), FarmKeyComment) }

// EnsureFarmKey returns the farm key of stateDir, creating it on first use: an ed25519 key in
// stateDir/keys/farm_ed25519 (mode 0600, directory 0700) and its public half in
// farm_ed25519.pub (authorized_keys format). Files are written atomically (temp file, fsync,
// link/rename, fsync of the directory), and a concurrent creator never replaces a key that
// already exists: every caller ends up with the same key.
func EnsureFarmKey(stateDir string) (*FarmKey, error) {
	path := filepath.Join(stateDir, FarmKeyFile)
	k, err := loadFarmKey(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("farm key %s: %w", path, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("farm key %s: generate: %w", path, err)
	}
	block, err := xssh.MarshalPrivateKey(priv, FarmKeyComment)
	if err != nil {
		return nil, fmt.Errorf("farm key %s: marshal: %w", path, err)
	}
	// Link, unlike rename, fails when the key already exists: a concurrent creator keeps its key.
	if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600, false); err != nil &&
		!errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("farm key %s: %w", path, err)
	}
	return loadFarmKey(path)
}

// loadFarmKey reads the private key at path and (re)writes its .pub file when missing or stale.
func loadFarmKey(path string) (*FarmKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("farm key %s: %w", path, err)
	}
	signer, err := xssh.ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("farm key %s: %w", path, err)
	}
	k := &FarmKey{Signer: signer, Path: path}
	pub := []byte(k.AuthorizedKey() + "\n")
	if old, err := os.ReadFile(path + ".pub"); err != nil || !bytes.Equal(old, pub) {
		if err := writeFileAtomic(path+".pub", pub, 0o644, true); err != nil {
			return nil, fmt.Errorf("farm key %s.pub: %w", path, err)
		}
	}
	return k, nil
}

// AuthorizedKey formats pub as one authorized_keys (or .pub) line: "type base64 comment",
// without a trailing newline. An empty comment is left out.
func AuthorizedKey(pub xssh.PublicKey, comment string) string {
	line := strings.TrimSuffix(string(xssh.MarshalAuthorizedKey(pub)), "\n")
	if comment != "" {
		line += " " + comment
	}
	return line
}

// ParsePublicKey parses one public key in authorized_keys format ("ssh-ed25519 AAAA... comment");
// options and comment are ignored.
func ParsePublicKey(line string) (xssh.PublicKey, error) {
	pub, _, _, _, err := xssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		return nil, fmt.Errorf("parse public key %q: %w", abbrev(line, 40), err)
	}
	return pub, nil
}

// Fingerprint returns the OpenSSH SHA256 fingerprint of pub, "SHA256:...".
func Fingerprint(pub xssh.PublicKey) string { return xssh.FingerprintSHA256(pub) }

// HostKey is a guest's ed25519 host key pair. The image builder installs the private half in the
// guest (in the format of its SSH server); tinyfarm pins [HostKey.Public].
type HostKey struct {
	// Private is the ed25519 private key (seed followed by public key).
	Private ed25519.PrivateKey
	// Public is the public half, to pin with [Config.HostKey].
	Public xssh.PublicKey
}

// GenerateHostKey makes a new ed25519 host key pair.
func GenerateHostKey() (*HostKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate host key: %w", err)
	}
	return NewHostKey(priv)
}

// NewHostKey wraps an existing ed25519 private key, e.g. one read back with
// [ParseDropbearEd25519].
func NewHostKey(priv ed25519.PrivateKey) (*HostKey, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("host key: ed25519 private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	pub, err := xssh.NewPublicKey(priv.Public())
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	return &HostKey{Private: priv, Public: pub}, nil
}

// OpenSSH returns the private key in OpenSSH PEM format ("-----BEGIN OPENSSH PRIVATE KEY-----"),
// as OpenSSH's sshd reads it from /etc/ssh/ssh_host_ed25519_key.
func (h *HostKey) OpenSSH() ([]byte, error) {
	block, err := xssh.MarshalPrivateKey(h.Private, "")
	if err != nil {
		return nil, fmt.Errorf("host key: marshal: %w", err)
	}
	return pem.EncodeToMemory(block), nil
}

// Dropbear returns the private key in dropbear's own format, as dropbear reads it with
// `-r /etc/dropbear/dropbear_ed25519_host_key`.
func (h *HostKey) Dropbear() []byte { return MarshalDropbearEd25519(h.Private) }

// AuthorizedKey returns the public half as one line "ssh-ed25519 AAAA..." (no newline), the
// form known_hosts entries and [ParsePublicKey] use.
func (h *HostKey) AuthorizedKey() string { return AuthorizedKey(h.Public, "") }

const dropbearEd25519Name = "ssh-ed25519"

// MarshalDropbearEd25519 encodes priv in dropbear's key file format: the SSH wire strings
// "ssh-ed25519" and the 64 bytes of the 32-byte seed followed by the 32-byte public key.
// It panics if priv is not ed25519.PrivateKeySize bytes long.
func MarshalDropbearEd25519(priv ed25519.PrivateKey) []byte {
	if len(priv) != ed25519.PrivateKeySize {
		panic("ssh: MarshalDropbearEd25519: bad private key length")
	}
	var b []byte
	b = appendString(b, []byte(dropbearEd25519Name))
	b = appendString(b, priv) // Go's ed25519.PrivateKey is already seed || public key
	return b
}

// ParseDropbearEd25519 decodes a dropbear ed25519 key file and checks that its public half
// matches its seed.
func ParseDropbearEd25519(data []byte) (ed25519.PrivateKey, error) {
	name, rest, ok := readString(data)
	if !ok || string(name) != dropbearEd25519Name {
		return nil, errors.New("parse dropbear key: not an ed25519 key")
	}
	key, rest, ok := readString(rest)
	if !ok || len(key) != ed25519.PrivateKeySize || len(rest) != 0 {
		return nil, errors.New("parse dropbear key: malformed ed25519 key")
	}
	priv := ed25519.NewKeyFromSeed(key[:ed25519.SeedSize])
	if !bytes.Equal(priv[ed25519.SeedSize:], key[ed25519.SeedSize:]) {
		return nil, errors.New("parse dropbear key: public key does not match the seed")
	}
	return priv, nil
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func readString(b []byte) (s, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(len(b)-4) < uint64(n) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// writeFileAtomic writes data to path through a temporary file in the same directory, fsyncs
// it, then renames it into place (replace) or hard-links it (!replace: fails with fs.ErrExist
// when path exists), and fsyncs the directory.
func writeFileAtomic(path string, data []byte, perm fs.FileMode, replace bool) (err error) {
	dir := filepath.Dir(path)
	defer func() {
		var pe *fs.PathError
		if errors.As(err, &pe) && pe.Path != path {
			err = fmt.Errorf("write %s: %w", path, pe.Err) // not the temporary name
		}
		if err != nil {
			err = fsutil.SpaceError(dir, int64(len(data)), err)
		}
	}()
	fsutil.RemoveStaleTemps(dir, filepath.Base(path)) // a killed writer's
	tmp := filepath.Join(dir, fsutil.TempName(filepath.Base(path)))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		os.Remove(tmp) // harmless after rename; cleans up after link or failure
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		f = nil
		return err
	}
	f = nil
	if replace {
		err = os.Rename(tmp, path)
	} else {
		err = os.Link(tmp, path)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// abbrev shortens s to at most n runes for messages.
func abbrev(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "..."
}
