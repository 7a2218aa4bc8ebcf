package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// A join token hands a new host everything it needs to trust the cluster
// without trusting on first use: the join endpoint's address, the SHA-256
// of the cluster CA (the endpoint's certificate must chain to exactly
// that CA) and a one-time secret (etcd deletes it in the transaction that
// admits the host, so a token admits one host).
const tokenPrefix = "tfjoin1."

// Token is a parsed join token.
type Token struct {
	Addr   string `json:"a"`  // join endpoint "10.0.0.1:2381"
	CA     string `json:"ca"` // SHA-256 of the CA certificate, hex
	Secret string `json:"s"`
}

func (t Token) String() string {
	b, _ := json.Marshal(t)
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// ParseToken reads a token printed by `cluster init` or `cluster token`.
func ParseToken(s string) (Token, error) {
	var t Token
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(s), tokenPrefix))
	if err != nil || !strings.HasPrefix(strings.TrimSpace(s), tokenPrefix) || json.Unmarshal(b, &t) != nil || t.Addr == "" || len(t.CA) != 64 || t.Secret == "" {
		return Token{}, fmt.Errorf("join token: not a tinyfarm join token (it starts with %s; make one with `tinyfarm cluster token` on a member): %w", tokenPrefix, ErrInvalid)
	}
	return t, nil
}

func secretKey(secret string) string {
	s := sha256.Sum256([]byte(secret))
	return Prefix + "join/" + hex.EncodeToString(s[:])
}

// NewToken stores a fresh one-time secret for ttl and returns the token
// that carries it to a joining host, pointing at joinAddr.
func (c *Client) NewToken(ctx context.Context, joinAddr, caFingerprint string, ttl time.Duration) (Token, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return Token{}, err
	}
	t := Token{Addr: joinAddr, CA: caFingerprint, Secret: base64.RawURLEncoding.EncodeToString(raw)}
	err := c.call(ctx, "cluster token", func(ctx context.Context) error {
		g, err := c.etcd.Grant(ctx, int64(ttl/time.Second))
		if err != nil {
			return err
		}
		_, err = c.etcd.Put(ctx, secretKey(t.Secret), "issued by "+c.host, clientv3.WithLease(g.ID))
		return err
	})
	return t, err
}

// consumeSecret deletes a join secret if it exists: true once per token.
func (c *Client) consumeSecret(ctx context.Context, secret string) (bool, error) {
	var ok bool
	err := c.call(ctx, "cluster join secret", func(ctx context.Context) error {
		k := secretKey(secret)
		t, err := c.etcd.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), ">", 0)).Then(clientv3.OpDelete(k)).Commit()
		ok = err == nil && t.Succeeded
		return err
	})
	return ok, err
}

// joinRequest is what a joining host sends: the secret, its name and
// address, and its public key (its private key never leaves it).
type joinRequest struct {
	Secret    string `json:"secret"`
	Name      string `json:"name"`
	Advertise string `json:"advertise"`
	PeerPort  int    `json:"peer_port"`
	PublicKey []byte `json:"public_key"` // PKIX DER
	// Subnet is the farm subnet the host keeps (its guests live on it):
	// claimed for it before it is admitted (Config.FarmSubnet).
	Subnet string `json:"subnet,omitempty"`
}

// joinResponse admits it: its certificate, the CA (with its key, so any
// member can admit hosts later, as k3s servers share theirs), and the
// initial cluster to start its etcd member with.
type joinResponse struct {
	Cert           []byte   `json:"cert"`
	CACert         []byte   `json:"ca_cert"`
	CAKey          []byte   `json:"ca_key"`
	InitialCluster string   `json:"initial_cluster"`
	ClusterToken   string   `json:"cluster_token"`
	Endpoints      []string `json:"endpoints"`
}

// joinHandler admits hosts that bring a valid one-time secret: it signs
// their key and adds them as etcd members (etcd's MemberAdd).
func joinHandler(c *Client, ca *CA, clusterToken string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/join" {
			http.NotFound(w, r)
			return
		}
		var req joinRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "bad join request: "+err.Error(), http.StatusBadRequest)
			return
		}
		ip := net.ParseIP(req.Advertise)
		if ip == nil || !validName(req.Name) || req.Name == "" || req.PeerPort <= 0 {
			http.Error(w, "bad join request: want a host name, an advertise IP and a peer port", http.StatusBadRequest)
			return
		}
		pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
		if _, isEC := pub.(*ecdsa.PublicKey); err != nil || !isEC {
			http.Error(w, "bad join request: public key", http.StatusBadRequest)
			return
		}
		ok, err := c.consumeSecret(r.Context(), req.Secret)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		if !ok {
			http.Error(w, "join token unknown, used or expired: make a new one with `tinyfarm cluster token` on a member", http.StatusForbidden)
			return
		}
		if req.Subnet != "" {
			// Before the host is a member: a farm that overlaps another
			// host's is refused with nothing changed.
			p, err := netip.ParsePrefix(req.Subnet)
			if err == nil {
				_, err = c.ClaimHostSubnet(r.Context(), req.Name, p)
			}
			if err != nil {
				c.restoreSecret(r.Context(), req.Secret)
				http.Error(w, err.Error(), http.StatusConflict)
				return
			}
		}
		cert, err := ca.SignHost(req.Name, pub, []net.IP{ip})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		peer := "https://" + net.JoinHostPort(req.Advertise, fmt.Sprint(req.PeerPort))
		var initial []string
		var endpoints []string
		err = addLearner(r.Context(), c, req.Name, peer, &initial, &endpoints)
		if err != nil {
			// Not admitted: the token stays good for another try.
			c.restoreSecret(r.Context(), req.Secret)
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(joinResponse{
			Cert: cert, CACert: ca.CertPEM, CAKey: ca.KeyPEM,
			InitialCluster: strings.Join(initial, ","), ClusterToken: clusterToken, Endpoints: endpoints,
		})
	})
}

// serveJoin serves the join endpoint on ln with the host's certificate
// (chained to the CA, which the joiner pins) until ctx ends.
func serveJoin(ctx context.Context, ln net.Listener, cfg *Config, c *Client, ca *CA, clusterToken string) error {
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("cluster join endpoint: %w", err)
	}
	cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
	srv := &http.Server{
		Handler:           joinHandler(c, ca, clusterToken),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0), // handshakes refused by pinning joiners
	}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("cluster join endpoint: %w", err)
	}
	return nil
}

// pinnedTLS trusts a server only if its chain contains the CA with the
// token's fingerprint and its leaf is signed by that CA.
func pinnedTLS(fingerprint string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin check below, never skipped
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			var ca *x509.Certificate
			for _, der := range raw {
				if certFingerprint(der) == fingerprint {
					ca, _ = x509.ParseCertificate(der)
				}
			}
			if ca == nil || !ca.IsCA || len(raw) == 0 {
				return fmt.Errorf("join endpoint's certificate does not chain to the CA in the token (sha256 %s): not this cluster: %w", fingerprint[:16], ErrJoinDenied)
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return err
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("join endpoint's certificate is not signed by the cluster CA: %w", ErrJoinDenied)
			}
			return nil
		},
	}
}

// requestJoin asks the join endpoint of tok to admit this host (cfg: its
// name, address and ports) and saves the certificates it gets into
// cfg.Dir. It returns how to start the member.
func requestJoin(ctx context.Context, cfg *Config, tok Token) (memberStart, []string, error) {
	key, keyPEM, err := newHostKey()
	if err != nil {
		return memberStart{}, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return memberStart{}, nil, err
	}
	body, _ := json.Marshal(joinRequest{Secret: tok.Secret, Name: cfg.Host, Advertise: cfg.Advertise, PeerPort: cfg.PeerPort, PublicKey: pub, Subnet: cfg.FarmSubnet})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: pinnedTLS(tok.CA)}, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+tok.Addr+"/join", bytes.NewReader(body))
	if err != nil {
		return memberStart{}, nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return memberStart{}, nil, fmt.Errorf("cluster join via %s: %w", tok.Addr, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusForbidden {
		return memberStart{}, nil, fmt.Errorf("cluster join via %s: %s: %w", tok.Addr, strings.TrimSpace(string(rb)), ErrJoinDenied)
	}
	if resp.StatusCode == http.StatusConflict {
		return memberStart{}, nil, fmt.Errorf("cluster join via %s: this host's farm subnet %s: %s: %w", tok.Addr, cfg.FarmSubnet, strings.TrimSpace(string(rb)), ErrTaken)
	}
	if resp.StatusCode != http.StatusOK {
		return memberStart{}, nil, fmt.Errorf("cluster join via %s: %s: %s", tok.Addr, resp.Status, strings.TrimSpace(string(rb)))
	}
	var jr joinResponse
	if err := json.Unmarshal(rb, &jr); err != nil {
		return memberStart{}, nil, fmt.Errorf("cluster join via %s: %w", tok.Addr, err)
	}
	if blk, _ := pem.Decode(jr.CACert); blk == nil || certFingerprint(blk.Bytes) != tok.CA {
		return memberStart{}, nil, fmt.Errorf("cluster join via %s: the CA sent is not the one in the token: %w", tok.Addr, ErrJoinDenied)
	}
	ca, err := parseCA(jr.CACert, jr.CAKey)
	if err != nil {
		return memberStart{}, nil, err
	}
	if err := ca.Save(cfg.Dir); err != nil {
		return memberStart{}, nil, err
	}
	if err := saveHostCert(cfg.Dir, jr.Cert, keyPEM, jr.CACert); err != nil {
		return memberStart{}, nil, err
	}
	return memberStart{initialCluster: jr.InitialCluster, existing: true, token: jr.ClusterToken}, jr.Endpoints, nil
}

// addLearner adds a joining host as an etcd learner (replacing an old
// entry of the same name or address) and returns the initial cluster it
// starts with. etcd refuses reconfiguration while a member joined less
// than a few seconds ago ("unhealthy cluster"), so that is retried.
func addLearner(ctx context.Context, c *Client, name, peer string, initial, endpoints *[]string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := c.call(ctx, "cluster member add "+name, func(ctx context.Context) error {
			ml, err := c.etcd.MemberList(ctx)
			if err != nil {
				return err
			}
			for _, m := range ml.Members {
				if m.Name == name || (len(m.PeerURLs) > 0 && m.PeerURLs[0] == peer) {
					if _, err := c.etcd.MemberRemove(ctx, m.ID); err != nil {
						return err
					}
				}
			}
			// As a learner: it does not count for quorum until it has
			// caught up and promoted itself (etcd's advice for adding
			// members), so a one-host cluster never loses quorum to a join.
			add, err := c.etcd.MemberAddAsLearner(ctx, []string{peer})
			if err != nil {
				return err
			}
			*initial, *endpoints = nil, nil
			for _, m := range add.Members {
				mn := m.Name
				if m.ID == add.Member.ID {
					mn = name
				}
				if mn == "" {
					continue // another member added but not started yet
				}
				for _, u := range m.PeerURLs {
					*initial = append(*initial, mn+"="+u)
				}
				*endpoints = append(*endpoints, m.ClientURLs...)
			}
			return nil
		})
		if err == nil || !errors.Is(err, rpctypes.ErrUnhealthy) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// restoreSecret puts back a consumed join secret for a while, after an
// admission that failed half-way.
func (c *Client) restoreSecret(ctx context.Context, secret string) {
	c.call(ctx, "cluster join secret", func(ctx context.Context) error {
		g, err := c.etcd.Grant(ctx, 600)
		if err != nil {
			return err
		}
		_, err = c.etcd.Put(ctx, secretKey(secret), "restored after a failed join", clientv3.WithLease(g.ID))
		return err
	})
}
