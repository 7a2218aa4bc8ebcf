package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// The file names of a host's TLS material in its cluster directory.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
	certFile   = "host.crt"
	keyFile    = "host.key"
)

// certValidity is how long the CA and host certificates are valid. Rotation
// is a re-join; ten years keeps a farm from expiring under its owner.
const certValidity = 10 * 365 * 24 * time.Hour

// CA is the cluster's certificate authority: made by `cluster init`, it
// signs every host's certificate, which serves etcd's client and peer
// ports, the join endpoint, and authenticates the host as an etcd client.
type CA struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a fresh CA named after the cluster.
func NewCA(cluster string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tinyfarm cluster " + cluster + " CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: %w", err)
	}
	return caFrom(der, key)
}

func caFrom(der []byte, key *ecdsa.PrivateKey) (*CA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("cluster ca: %w", err)
	}
	return &CA{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}, nil
}

// LoadCA reads the CA of a cluster directory.
func LoadCA(dir string) (*CA, error) {
	cb, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("cluster ca: %w", err)
	}
	kb, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("cluster ca: %w", err)
	}
	return parseCA(cb, kb)
}

func parseCA(certPEM, keyPEM []byte) (*CA, error) {
	cblk, _ := pem.Decode(certPEM)
	kblk, _ := pem.Decode(keyPEM)
	if cblk == nil || kblk == nil {
		return nil, errors.New("cluster ca: not PEM")
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cluster ca key: %w", err)
	}
	return caFrom(cblk.Bytes, key)
}

// Fingerprint is the SHA-256 of the CA certificate (DER), in hex: what a
// join token pins, so a joining host trusts only this cluster's CA.
func (ca *CA) Fingerprint() string { return certFingerprint(ca.Cert.Raw) }

func certFingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// Save writes the CA into dir (the key readable by root only).
func (ca *CA) Save(dir string) error {
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, caCertFile), ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("cluster ca: %w", err)
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(dir, caKeyFile), ca.KeyPEM, 0o600); err != nil {
		return fmt.Errorf("cluster ca: %w", err)
	}
	return nil
}

// SignHost signs a host certificate for the public key pub, valid as a TLS
// server for ips (and localhost) and as a TLS client: etcd's peers are both.
func (ca *CA) SignHost(name string, pub any, ips []net.IP) ([]byte, error) {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost", name},
		IPAddresses:  append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("cluster sign %s: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// newHostKey makes a host's private key and a CSR-like request: the public
// key travels to the signer, the private key never leaves the host.
func newHostKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// IssueHost makes and saves a host key and certificate into dir, signed by
// ca: what `cluster init` does for the first host (and tests for others).
func (ca *CA) IssueHost(dir, name string, ips []net.IP) error {
	key, keyPEM, err := newHostKey()
	if err != nil {
		return fmt.Errorf("cluster host key: %w", err)
	}
	certPEM, err := ca.SignHost(name, &key.PublicKey, ips)
	if err != nil {
		return err
	}
	return saveHostCert(dir, certPEM, keyPEM, ca.CertPEM)
}

func saveHostCert(dir string, certPEM, keyPEM, caPEM []byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cluster certs: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		perm os.FileMode
	}{{certFile, certPEM, 0o644}, {keyFile, keyPEM, 0o600}, {caCertFile, caPEM, 0o644}} {
		if err := fsutil.WriteFileAtomic(filepath.Join(dir, f.name), f.data, f.perm); err != nil {
			return fmt.Errorf("cluster certs: %w", err)
		}
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}
