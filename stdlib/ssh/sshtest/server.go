//go:build unix

// Package sshtest runs an in-process SSH server with exec and SFTP for tests.
//
// The server listens on 127.0.0.1, accepts public-key logins for any user name with the keys it
// is given (and a client key it generates), runs exec requests with /bin/sh -c in its root
// directory, and serves SFTP confined to that root: "/" of the SFTP view is the root directory
// and no path, symlinks included, escapes it. Exec is NOT confined (commands see the host's
// file system; use relative paths). Everything stops in t.Cleanup.
package sshtest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Server is a running test server.
type Server struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Host is "127.0.0.1".
	Host string
	// Port is the listening port.
	Port int
	// Root is the directory exec runs in and SFTP is confined to.
	Root string
	// HostKey is the server's ed25519 public host key, to pin.
	HostKey ssh.PublicKey
	// HostSigner is the server's host key pair.
	HostSigner ssh.Signer
	// ClientSigner is a client key the server always accepts.
	ClientSigner ssh.Signer

	t        testing.TB
	ln       net.Listener
	env      []string
	keys     [][]byte
	root     *os.Root
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]bool
	accepted int
	commands []string
	closed   bool
}

// Option configures [NewServer].
type Option func(*Server)

// WithAuthorizedKey makes the server accept pub too (repeatable).
func WithAuthorizedKey(pub ssh.PublicKey) Option {
	return func(s *Server) { s.keys = append(s.keys, pub.Marshal()) }
}

// WithAddr makes the server listen on addr (default "127.0.0.1:0").
func WithAddr(addr string) Option {
	return func(s *Server) { s.Addr = addr }
}

// WithHostKey makes the server use signer as its host key (default: a new ed25519 key).
func WithHostKey(signer ssh.Signer) Option {
	return func(s *Server) { s.HostSigner = signer }
}

// WithEnv adds "NAME=value" entries to the environment of executed commands (default: the test
// process's environment).
func WithEnv(env ...string) Option {
	return func(s *Server) { s.env = append(s.env, env...) }
}

// NewServer starts a server rooted at root (which must exist). It fails the test on error and
// stops in t.Cleanup, killing the commands it started.
func NewServer(t testing.TB, root string, opts ...Option) *Server {
	t.Helper()
	s := &Server{Addr: "127.0.0.1:0", Root: root, t: t, conns: map[net.Conn]bool{}}
	for _, o := range opts {
		o(s)
	}
	if s.HostSigner == nil {
		s.HostSigner = newSigner(t)
	}
	s.HostKey = s.HostSigner.PublicKey()
	s.ClientSigner = newSigner(t)
	s.keys = append(s.keys, s.ClientSigner.PublicKey().Marshal())
	var err error
	if s.root, err = os.OpenRoot(root); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	if s.ln, err = net.Listen("tcp", s.Addr); err != nil {
		s.root.Close()
		t.Fatalf("sshtest: %v", err)
	}
	s.Addr = s.ln.Addr().String()
	host, port, _ := net.SplitHostPort(s.Addr)
	s.Host = host
	s.Port, _ = strconv.Atoi(port)

	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			for _, k := range s.keys {
				if bytes.Equal(k, key.Marshal()) {
					return nil, nil
				}
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(s.HostSigner)
	s.wg.Add(1)
	go s.serve(cfg)
	t.Cleanup(s.Close)
	return s
}

func newSigner(t testing.TB) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	return signer
}

// Close stops the server: it closes the listener and every connection, kills running commands
// and waits for its goroutines. It is called by t.Cleanup; calling it earlier is fine.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.root.Close()
}

// Accepted returns how many TCP connections the server has accepted.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// Commands returns the exec command lines received so far, in order.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

func (s *Server) serve(cfg *ssh.ServerConfig) {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return
		}
		s.accepted++
		s.conns[nc] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, nc)
				s.mu.Unlock()
				nc.Close()
			}()
			s.handleConn(nc, cfg)
		}()
	}
}

func (s *Server) handleConn(nc net.Conn, cfg *ssh.ServerConfig) {
	conn, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handleSession(ch, chReqs)
		}()
	}
}

func (s *Server) handleSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			s.mu.Lock()
			s.commands = append(s.commands, p.Command)
			s.mu.Unlock()
			s.exec(ch, reqs, p.Command)
			return
		case "subsystem":
			var p struct{ Name string }
			if err := ssh.Unmarshal(req.Payload, &p); err != nil || p.Name != "sftp" {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			go ssh.DiscardRequests(reqs)
			srv := sftp.NewRequestServer(ch, rootHandlers(s.root))
			_ = srv.Serve()
			srv.Close()
			return
		default: // env, pty-req, shell, ...: refused, as a restrictive server does
			_ = req.Reply(false, nil)
		}
	}
}

// exec runs command with /bin/sh -c in the root directory, and reports its exit status. A
// "signal" request or the channel closing kills the command's process group.
func (s *Server) exec(ch ssh.Channel, reqs <-chan *ssh.Request, command string) {
	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = s.Root
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout = ch
	cmd.Stderr = ch.Stderr()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "sshtest: %v\n", err)
		sendExit(ch, 127)
		return
	}
	pid := cmd.Process.Pid
	kill := func() { _ = syscall.Kill(-pid, syscall.SIGKILL) } // the group this server started
	go func() {
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	exited := make(chan struct{})
	go func() {
		for {
			select {
			case req, ok := <-reqs:
				if !ok { // channel closed by the client or the server stopping
					kill()
					return
				}
				if req.Type == "signal" {
					kill()
				}
				_ = req.Reply(false, nil)
			case <-exited:
				go ssh.DiscardRequests(reqs)
				return
			}
		}
	}()
	err = cmd.Wait()
	close(exited)
	var ee *exec.ExitError
	switch {
	case err == nil:
		sendExit(ch, 0)
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			sendSignal(ch, ws.Signal())
		} else {
			sendExit(ch, ee.ExitCode())
		}
	default:
		sendExit(ch, 255)
	}
}

func sendExit(ch ssh.Channel, code int) {
	_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(code)))
}

func sendSignal(ch ssh.Channel, sig syscall.Signal) {
	name := map[syscall.Signal]string{syscall.SIGKILL: "KILL", syscall.SIGTERM: "TERM",
		syscall.SIGINT: "INT", syscall.SIGHUP: "HUP", syscall.SIGPIPE: "PIPE"}[sig]
	if name == "" {
		name = "USR1"
	}
	_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
		Signal     string
		CoreDumped bool
		Message    string
		Lang       string
	}{Signal: name}))
}
