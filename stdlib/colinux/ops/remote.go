package ops

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/errtext"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// Remote is another tinyfarm host, an inventory entry: reached over SSH,
// where tinyfarm runs too (DESIGN.md, "Outgrowing one host": no cluster
// protocol, the far tinyfarm is driven over the SSH channel).
type Remote struct {
	Name    string // for messages; default Address
	Address string // host name or IP address. Required
	Port    int    // default 22
	User    string // default "root"
	Key     string // private key file (OpenSSH/PEM, unencrypted). Required
	HostKey string // the host's pinned public key, authorized_keys format. Required
	// StateDir is the far tinyfarm's state directory (its TINYFARM_HOME).
	// Default: the far tinyfarm's own default.
	StateDir string
	// Binary is the path of the tinyfarm binary there. Default "tinyfarm".
	Binary string
	// Timeout bounds the connection attempt. Default 10s.
	Timeout time.Duration
}

// Label names the remote host in messages: its name, else its address.
func (r Remote) Label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Address
}

// Dial connects to the remote host.
func (r Remote) Dial(ctx context.Context) (*ssh.Client, error) {
	if r.Address == "" || r.Key == "" || r.HostKey == "" {
		return nil, fmt.Errorf("host %s: want address, key and host_key: %w", r.Label(), farm.ErrInvalid)
	}
	pubs, err := ssh.ParsePublicKeys(r.HostKey)
	if err != nil {
		return nil, fmt.Errorf("host %s: host_key: %w", r.Label(), err)
	}
	if r.User == "" {
		r.User = "root"
	}
	if r.Timeout <= 0 {
		r.Timeout = 10 * time.Second
	}
	c, err := ssh.Dial(ctx, ssh.Config{Host: r.Address, Port: r.Port, User: r.User, KeyPath: r.Key, HostKeys: pubs, Timeout: r.Timeout, Retries: 1})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", r.Label(), err)
	}
	return c, nil
}

// tinyfarm runs the far tinyfarm with args over c.
func (r Remote) tinyfarm(ctx context.Context, c *ssh.Client, stdin io.Reader, args ...string) ([]byte, error) {
	return r.tinyfarmWatch(ctx, c, stdin, nil, args...)
}

// tinyfarmWatch is tinyfarm, calling watch (when set) with each line of
// the far tinyfarm's stderr as it comes.
func (r Remote) tinyfarmWatch(ctx context.Context, c *ssh.Client, stdin io.Reader, watch func(line string), args ...string) ([]byte, error) {
	bin := r.Binary
	if bin == "" {
		bin = "tinyfarm"
	}
	env := map[string]string{}
	if r.StateDir != "" {
		env["TINYFARM_HOME"] = r.StateDir
	}
	cmd := ssh.ShellJoin(append([]string{bin}, args...)...)
	ro := ssh.RunOptions{Env: env, IgnoreExit: true}
	var lw *lineWatcher
	if watch != nil {
		lw = &lineWatcher{fn: watch}
		ro.Stderr = lw
	}
	res, err := c.RunStream(ctx, cmd, stdin, ro)
	if lw != nil {
		res.Stderr = lw.all.Bytes()
	}
	if err != nil {
		return nil, fmt.Errorf("host %s: %s: %w", r.Label(), cmd, err)
	}
	if res.Code != 0 {
		return res.Stdout, r.exitError(cmd, res.Code, res.Stderr)
	}
	return res.Stdout, nil
}

// exitError is the error of a far tinyfarm that exited code: the end of
// its stderr (its first lines, when it crashed), at most 600 bytes.
func (r Remote) exitError(cmd string, code int, stderr []byte) error {
	return fmt.Errorf("host %s: %s: exit %d: %s", r.Label(), cmd, code, errtext.Tail(stderr, 600))
}

func hostLabel() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

func abbrevBytes(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// lineWatcher keeps what is written to it and calls fn with each
// complete line (without its newline) as it comes.
type lineWatcher struct {
	fn      func(string)
	all     bytes.Buffer
	partial []byte
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.all.Write(p)
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.fn(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}
