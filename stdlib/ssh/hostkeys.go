package ssh

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"strings"

	xssh "golang.org/x/crypto/ssh"
)

// HostKeySet is a guest's host keys, one per algorithm every Tiny Core SSH
// server knows between them: ed25519 (OpenSSH 6.5+, dropbear 2020+),
// ecdsa P-256 (OpenSSH 5.7+, dropbear 2013+) and rsa 2048 (all). An old
// server that has no ed25519 serves the ecdsa or rsa key of the same set,
// so pinning the set verifies it.
type HostKeySet struct {
	Ed25519 *HostKey
	ECDSA   *ecdsa.PrivateKey
	RSA     *rsa.PrivateKey
}

// RSAHostKeyBits is the size of the rsa host key. The rsa key is the one
// only a server with neither ed25519 nor ecdsa serves (OpenSSH before 5.7,
// dropbear before 2013.62), and such a server signs with ssh-rsa (SHA-1),
// so the key size is not the weak link there. 2048 bits is OpenSSH's
// default before 8.0 and NIST SP 800-57's minimum through 2030, and Go
// makes such a key in a quarter of the time of a 3072-bit one (about
// 50 ms against 200 ms), which every new image waits for. A 3072-bit key
// kept in an image's sidecar stays as it is.
const RSAHostKeyBits = 2048

// GenerateHostKeySet makes the keys the set lacks: a nil set gets all
// three; an existing ed25519 key (a disk built with ed25519 alone) is kept.
func GenerateHostKeySet(s *HostKeySet) (*HostKeySet, error) {
	out := &HostKeySet{}
	if s != nil {
		*out = *s
	}
	var err error
	if out.Ed25519 == nil {
		if out.Ed25519, err = GenerateHostKey(); err != nil {
			return nil, err
		}
	}
	if out.ECDSA == nil {
		if out.ECDSA, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("generate ecdsa host key: %w", err)
		}
	}
	if out.RSA == nil {
		if out.RSA, err = rsa.GenerateKey(rand.Reader, RSAHostKeyBits); err != nil {
			return nil, fmt.Errorf("generate rsa host key: %w", err)
		}
	}
	return out, nil
}

// PublicKeys returns the public keys, ed25519 first (the preferred
// algorithm), then ecdsa, then rsa; missing ones are left out.
func (s *HostKeySet) PublicKeys() []xssh.PublicKey {
	var out []xssh.PublicKey
	if s.Ed25519 != nil {
		out = append(out, s.Ed25519.Public)
	}
	for _, k := range []any{s.ecdsaPublic(), s.rsaPublic()} {
		if k == nil {
			continue
		}
		if p, err := xssh.NewPublicKey(k); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func (s *HostKeySet) ecdsaPublic() any {
	if s.ECDSA == nil {
		return nil
	}
	return &s.ECDSA.PublicKey
}

func (s *HostKeySet) rsaPublic() any {
	if s.RSA == nil {
		return nil
	}
	return &s.RSA.PublicKey
}

// AuthorizedKeys returns the public keys as authorized_keys lines joined by
// "\n" (no trailing newline): the form a guest's host_key holds and
// [ParsePublicKeys] reads.
func (s *HostKeySet) AuthorizedKeys() string {
	var lines []string
	for _, p := range s.PublicKeys() {
		lines = append(lines, AuthorizedKey(p, ""))
	}
	return strings.Join(lines, "\n")
}

// MarshalPEM encodes the ecdsa and rsa private keys as PEM blocks (SEC1
// and PKCS#1, which every OpenSSH reads), for keeping them beside a disk.
// The ed25519 key is kept as its seed by the caller.
func (s *HostKeySet) MarshalPEM() ([]byte, error) {
	var b bytes.Buffer
	if s.ECDSA != nil {
		der, err := x509.MarshalECPrivateKey(s.ECDSA)
		if err != nil {
			return nil, fmt.Errorf("host key: ecdsa: %w", err)
		}
		pem.Encode(&b, &pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	}
	if s.RSA != nil {
		pem.Encode(&b, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(s.RSA)})
	}
	return b.Bytes(), nil
}

// ParsePEMInto reads what MarshalPEM wrote into s.
func (s *HostKeySet) ParsePEMInto(data []byte) error {
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			return nil
		}
		switch blk.Type {
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(blk.Bytes)
			if err != nil {
				return fmt.Errorf("host key: ecdsa: %w", err)
			}
			s.ECDSA = k
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
			if err != nil {
				return fmt.Errorf("host key: rsa: %w", err)
			}
			s.RSA = k
		default:
			return fmt.Errorf("host key: unexpected PEM block %q", blk.Type)
		}
	}
}

// Where Tiny Core's SSH servers look for host keys, relative to the root.
const (
	// OpenSSHKeyDir: Tiny Core's openssh.tcz keeps sshd_config and
	// ssh_host_*_key here (TINYCORE.md "SSH servers"; its init script
	// creates missing keys there and keeps present ones).
	OpenSSHKeyDir = "usr/local/etc/ssh"
	// DropbearKeyDir is where the dropbear extension's init script looks
	// (tinyfarm's mini release; testdata/minicore/pkgs/dropbear).
	DropbearKeyDir = "usr/local/etc/dropbear"
	// DropbearDefaultKeyDir is dropbear's compiled-in key directory
	// (dropbear(8): /etc/dropbear/dropbear_*_host_key), used by a dropbear
	// started without -r.
	DropbearDefaultKeyDir = "etc/dropbear"
)

// HostKeyFile is one file of a host key set as a server reads it.
type HostKeyFile struct {
	Name string // relative to the guest root, e.g. "usr/local/etc/ssh/ssh_host_rsa_key"
	Data []byte
	Mode fs.FileMode
}

// Files renders the set for every Tiny Core SSH server: OpenSSH's
// ssh_host_{ed25519,ecdsa,rsa}_key (+ .pub) in OpenSSHKeyDir, the ecdsa
// and rsa keys in PEM (read by every OpenSSH, also those before 6.5's new
// key format) and ed25519 in OpenSSH's format; dropbear's
// dropbear_{ed25519,ecdsa,rsa}_host_key in its own format in DropbearKeyDir
// and DropbearDefaultKeyDir.
func (s *HostKeySet) Files() ([]HostKeyFile, error) {
	var out []HostKeyFile
	add := func(typ string, openssh, dropbear []byte, pub xssh.PublicKey) {
		base := OpenSSHKeyDir + "/ssh_host_" + typ + "_key"
		out = append(out, HostKeyFile{base, openssh, 0o600}, HostKeyFile{base + ".pub", []byte(AuthorizedKey(pub, "") + "\n"), 0o644})
		for _, d := range []string{DropbearKeyDir, DropbearDefaultKeyDir} {
			out = append(out, HostKeyFile{d + "/dropbear_" + typ + "_host_key", dropbear, 0o600})
		}
	}
	if s.Ed25519 != nil {
		pemb, err := s.Ed25519.OpenSSH()
		if err != nil {
			return nil, err
		}
		add("ed25519", pemb, s.Ed25519.Dropbear(), s.Ed25519.Public)
	}
	if s.ECDSA != nil {
		der, err := x509.MarshalECPrivateKey(s.ECDSA)
		if err != nil {
			return nil, fmt.Errorf("host key: ecdsa: %w", err)
		}
		pub, err := xssh.NewPublicKey(&s.ECDSA.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("host key: ecdsa: %w", err)
		}
		add("ecdsa", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), MarshalDropbearECDSA(s.ECDSA), pub)
	}
	if s.RSA != nil {
		pub, err := xssh.NewPublicKey(&s.RSA.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("host key: rsa: %w", err)
		}
		add("rsa", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(s.RSA)}), MarshalDropbearRSA(s.RSA), pub)
	}
	return out, nil
}

// ParseHostKeyFile reads one private host key file of any of the formats
// Files writes (OpenSSH's, PEM, dropbear's) into s.
func (s *HostKeySet) ParseHostKeyFile(data []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		k, err := xssh.ParseRawPrivateKey(data)
		if err != nil {
			return fmt.Errorf("parse host key: %w", err)
		}
		switch k := k.(type) {
		case *ed25519.PrivateKey:
			hk, err := NewHostKey(*k)
			if err != nil {
				return err
			}
			s.Ed25519 = hk
		case ed25519.PrivateKey:
			hk, err := NewHostKey(k)
			if err != nil {
				return err
			}
			s.Ed25519 = hk
		case *ecdsa.PrivateKey:
			s.ECDSA = k
		case *rsa.PrivateKey:
			s.RSA = k
		default:
			return fmt.Errorf("parse host key: unsupported key type %T", k)
		}
		return nil
	}
	name, _, ok := readString(data)
	if !ok {
		return errors.New("parse host key: not a PEM or dropbear key")
	}
	switch string(name) {
	case dropbearEd25519Name:
		k, err := ParseDropbearEd25519(data)
		if err != nil {
			return err
		}
		hk, err := NewHostKey(k)
		if err != nil {
			return err
		}
		s.Ed25519 = hk
	case "ecdsa-sha2-nistp256":
		k, err := ParseDropbearECDSA(data)
		if err != nil {
			return err
		}
		s.ECDSA = k
	case "ssh-rsa":
		k, err := ParseDropbearRSA(data)
		if err != nil {
			return err
		}
		s.RSA = k
	default:
		return fmt.Errorf("parse host key: dropbear key type %q not supported", name)
	}
	return nil
}

// MarshalDropbearECDSA encodes a P-256 key in dropbear's key file format:
// the strings "ecdsa-sha2-nistp256", "nistp256", the uncompressed public
// point, and the private scalar as an mpint (dropbear ecdsa.c
// buf_put_ecdsa_priv_key).
func MarshalDropbearECDSA(k *ecdsa.PrivateKey) []byte {
	var b []byte
	b = appendString(b, []byte("ecdsa-sha2-nistp256"))
	b = appendString(b, []byte("nistp256"))
	b = appendString(b, elliptic.Marshal(elliptic.P256(), k.X, k.Y)) //nolint:staticcheck // the SSH wire form of the point
	b = appendMpint(b, k.D)
	return b
}

// ParseDropbearECDSA decodes what MarshalDropbearECDSA writes and checks
// that the point belongs to the scalar.
func ParseDropbearECDSA(data []byte) (*ecdsa.PrivateKey, error) {
	name, rest, ok := readString(data)
	curve, rest, ok2 := readString(rest)
	point, rest, ok3 := readString(rest)
	d, rest, ok4 := readMpint(rest)
	if !ok || !ok2 || !ok3 || !ok4 || string(name) != "ecdsa-sha2-nistp256" || string(curve) != "nistp256" || len(rest) != 0 {
		return nil, errors.New("parse dropbear key: malformed ecdsa key")
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), point) //nolint:staticcheck // the SSH wire form of the point
	if x == nil {
		return nil, errors.New("parse dropbear key: bad ecdsa point")
	}
	k := &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, D: d}
	if cx, cy := elliptic.P256().ScalarBaseMult(d.Bytes()); cx.Cmp(x) != 0 || cy.Cmp(y) != 0 { //nolint:staticcheck // check only
		return nil, errors.New("parse dropbear key: ecdsa point does not match the scalar")
	}
	return k, nil
}

// MarshalDropbearRSA encodes an rsa key in dropbear's key file format: the
// string "ssh-rsa" and the mpints e, n, d, p, q (dropbear rsa.c
// buf_put_rsa_priv_key).
func MarshalDropbearRSA(k *rsa.PrivateKey) []byte {
	var b []byte
	b = appendString(b, []byte("ssh-rsa"))
	b = appendMpint(b, big.NewInt(int64(k.E)))
	b = appendMpint(b, k.N)
	b = appendMpint(b, k.D)
	b = appendMpint(b, k.Primes[0])
	b = appendMpint(b, k.Primes[1])
	return b
}

// ParseDropbearRSA decodes what MarshalDropbearRSA writes.
func ParseDropbearRSA(data []byte) (*rsa.PrivateKey, error) {
	name, rest, ok := readString(data)
	if !ok || string(name) != "ssh-rsa" {
		return nil, errors.New("parse dropbear key: not an rsa key")
	}
	var v [5]*big.Int
	for i := range v {
		if v[i], rest, ok = readMpint(rest); !ok {
			return nil, errors.New("parse dropbear key: malformed rsa key")
		}
	}
	if len(rest) != 0 || !v[0].IsInt64() {
		return nil, errors.New("parse dropbear key: malformed rsa key")
	}
	k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: v[1], E: int(v[0].Int64())}, D: v[2], Primes: []*big.Int{v[3], v[4]}}
	if err := k.Validate(); err != nil {
		return nil, fmt.Errorf("parse dropbear key: rsa: %w", err)
	}
	k.Precompute()
	return k, nil
}

// appendMpint appends a non-negative SSH mpint (RFC 4251 §5).
func appendMpint(b []byte, n *big.Int) []byte {
	v := n.Bytes()
	if len(v) > 0 && v[0]&0x80 != 0 {
		v = append([]byte{0}, v...)
	}
	return appendString(b, v)
}

func readMpint(b []byte) (*big.Int, []byte, bool) {
	v, rest, ok := readString(b)
	if !ok || len(v) > 0 && v[0]&0x80 != 0 {
		return nil, nil, false
	}
	return new(big.Int).SetBytes(v), rest, true
}

// ParsePublicKeys parses one or more public keys, one authorized_keys line
// each (blank lines skipped): a guest's pinned host key set.
func ParsePublicKeys(text string) ([]xssh.PublicKey, error) {
	var out []xssh.PublicKey
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		p, err := ParsePublicKey(l)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, errors.New("parse public keys: none given")
	}
	return out, nil
}
