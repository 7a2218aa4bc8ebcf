package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// Host to host SSH, for migrations (`tinyfarm cluster drain`).
//
// A migration is driven over SSH, as g:migrate does: the source host logs
// in to the far host's sshd and runs the far tinyfarm's `migrate`
// subcommands there. In a cluster:
//
//   - the far host's address and pinned host key come from its facts
//     (ssh_addr, ssh_host_key), never trusted on first use;
//   - the source logs in with its cluster SSH key: an ed25519 key each
//     daemon makes in its cluster directory (ssh_key) and publishes the
//     public half of in its facts (cluster_key);
//   - each daemon keeps the other hosts' cluster keys in a block of its own
//     in the authorized_keys of Config.AuthorizedKeys, each line forced to
//     `tinyfarm cluster gate` (and no forwarding, no pty): the gate runs
//     only `tinyfarm migrate probe|sums|recv|import|incoming|discard|revoke`
//     on this host's state directory, with disk paths inside it. A cluster
//     key gets no shell.

// ClusterKeyFile is the host's cluster SSH key in its cluster directory.
const ClusterKeyFile = "ssh_key"

// EnsureClusterKey makes the host's cluster SSH key in dir unless it is
// there, and returns its public half (authorized_keys format).
func EnsureClusterKey(dir string) (string, error) {
	p := filepath.Join(dir, ClusterKeyFile)
	if b, err := os.ReadFile(p + ".pub"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return strings.TrimSpace(string(b)), nil
		}
	}
	k, err := ssh.GenerateHostKey()
	if err != nil {
		return "", fmt.Errorf("cluster ssh key: %w", err)
	}
	pem, err := k.OpenSSH()
	if err != nil {
		return "", fmt.Errorf("cluster ssh key: %w", err)
	}
	if err := fsutil.WriteFileAtomic(p, pem, 0o600); err != nil {
		return "", fmt.Errorf("cluster ssh key: %w", err)
	}
	pub := k.AuthorizedKey()
	if err := fsutil.WriteFileAtomic(p+".pub", []byte(pub+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("cluster ssh key: %w", err)
	}
	return pub, nil
}

// The markers of the daemon's block in authorized_keys.
const (
	keysBegin = "# tinyfarm cluster: BEGIN (kept by tinyfarm cluster serve; edits here are replaced)"
	keysEnd   = "# tinyfarm cluster: END"
)

// HostKeysBlock is the daemon's block of authorized_keys lines: each other
// host's cluster key, allowed only `gate` (the command line that runs
// `tinyfarm cluster gate` on this host), no forwarding, no pty.
func HostKeysBlock(self string, hosts []Host, gate string) string {
	var b strings.Builder
	b.WriteString(keysBegin + "\n")
	opts := `command="` + strings.ReplaceAll(gate, `"`, `\"`) + `",no-port-forwarding,no-agent-forwarding,no-X11-forwarding,no-pty`
	for _, h := range hosts {
		if h.Name == self || h.ClusterKey == "" || strings.ContainsAny(h.ClusterKey, "\n\r") {
			continue
		}
		f := strings.Fields(h.ClusterKey)
		if len(f) < 2 {
			continue
		}
		fmt.Fprintf(&b, "%s %s %s tinyfarm-cluster:%s\n", opts, f[0], f[1], h.Name)
	}
	b.WriteString(keysEnd + "\n")
	return b.String()
}

// replaceBlock puts block in place of the daemon's block in an
// authorized_keys file's text (appended when there is none); the other
// lines stay as they are.
func replaceBlock(text, block string) string {
	var out []string
	in := false
	for _, l := range strings.SplitAfter(text, "\n") {
		switch {
		case l == "":
		case strings.TrimSpace(l) == keysBegin:
			in = true
		case strings.TrimSpace(l) == keysEnd && in:
			in = false
		case !in:
			if !strings.HasSuffix(l, "\n") {
				l += "\n"
			}
			out = append(out, l)
		}
	}
	return strings.Join(out, "") + block
}

// AuthorizedKeysPath is the file the daemon keeps the hosts' keys in ("": none).
func (c *Config) AuthorizedKeysPath() string {
	if c.AuthorizedKeys != "" {
		if c.AuthorizedKeys == "none" {
			return ""
		}
		return c.AuthorizedKeys
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".ssh", "authorized_keys")
}

// GateCommand is the forced command of the hosts' keys: this binary's
// `cluster gate` on this state directory.
func GateCommand(exe, stateDir string) string {
	return "TINYFARM_HOME=" + ssh.ShellQuote(stateDir) + " exec " + ssh.ShellQuote(exe) + " cluster gate"
}

// keepHostKeys rewrites the daemon's block of authorized_keys whenever the
// hosts' cluster keys change (checked every few seconds).
func keepHostKeys(ctx context.Context, c *Client, cfg *Config, gate string, log *slog.Logger) {
	path := cfg.AuthorizedKeysPath()
	if path == "" || gate == "" {
		return
	}
	last := ""
	for {
		hosts, err := c.Hosts(ctx)
		if err == nil {
			block := HostKeysBlock(cfg.Host, hosts, gate)
			if block != last {
				if err := writeBlock(path, block); err != nil {
					log.Warn("cluster: authorized_keys", "err", err)
				} else {
					last = block
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func writeBlock(path, block string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	text := replaceBlock(string(old), block)
	if bytes.Equal(old, []byte(text)) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, []byte(text), 0o600)
}

// gateCommands are the far-side commands of a migration the gate allows.
var gateCommands = []string{"probe", "sums", "recv", "import", "incoming", "discard", "revoke"}

// GateArgs checks the command line another host asked for over SSH
// (SSH_ORIGINAL_COMMAND: what ops.Remote runs, `'tinyfarm' 'migrate'
// 'SUB' ...` quoted word by word) and returns the tinyfarm arguments to
// run on this host: a migrate subcommand, paths only inside stateDir's
// disks directory. Anything else is refused.
func GateArgs(cmdline, stateDir string) ([]string, error) {
	fail := func(why string) ([]string, error) {
		return nil, fmt.Errorf("cluster gate: %q: %s (a cluster key may only run the migration commands): %w", abbrev(cmdline), why, ErrInvalid)
	}
	words, ok := shellWords(cmdline)
	if !ok {
		return fail("not a plain quoted command line")
	}
	if len(words) < 3 || words[1] != "migrate" || !slices.Contains(gateCommands, words[2]) {
		return fail("not tinyfarm migrate " + strings.Join(gateCommands, "|"))
	}
	args := words[1:]
	if words[2] == "probe" && slices.Contains(args, "--share") {
		return nil, errNoShares // refused before anything is copied
	}
	if sub := words[2]; sub == "sums" || sub == "recv" {
		p := args[len(args)-1]
		disks := filepath.Join(stateDir, "disks") + string(filepath.Separator)
		if !filepath.IsAbs(p) || filepath.Clean(p) != p || !strings.HasPrefix(p, disks) {
			return fail("path " + p + " is not in " + disks)
		}
	}
	return args, nil
}

// CheckGateDefinition checks a guest definition sent to the gate's import
// or incoming: its disk inside stateDir's disks directory, any other file
// it names (extra disks, base, core, kernel, initrds) inside stateDir, and
// no shares (a share would hand a host directory to a guest another host
// controls; move such a guest with g:migrate and a key of your own).
func CheckGateDefinition(stateDir, disk string, files []string, shares int) error {
	disks := filepath.Join(stateDir, "disks") + string(filepath.Separator)
	if disk != "" && (filepath.Clean(disk) != disk || !strings.HasPrefix(disk, disks)) {
		return fmt.Errorf("cluster gate: disk %s is not in %s: %w", disk, disks, ErrInvalid)
	}
	for _, f := range files {
		if f != "" && (filepath.Clean(f) != f || !strings.HasPrefix(f, stateDir+string(filepath.Separator))) {
			return fmt.Errorf("cluster gate: %s is not in this host's state dir %s: %w", f, stateDir, ErrInvalid)
		}
	}
	if shares > 0 {
		return errNoShares
	}
	return nil
}

var errNoShares = fmt.Errorf("cluster gate: the guest has shares, which a cluster key may not bring to this host (a host directory for a guest another host controls): unshare it first, or move it with g:migrate and a key of your own: %w", ErrInvalid)

// shellWords splits a command line of single-quoted or plain words (what
// ssh.ShellJoin makes); ok=false for anything a shell would treat
// specially.
func shellWords(s string) (words []string, ok bool) {
	var cur strings.Builder
	have := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ':
			if have {
				words = append(words, cur.String())
				cur.Reset()
				have = false
			}
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, false
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			have = true
		case ch == '\\' && i+1 < len(s) && s[i+1] == '\'':
			cur.WriteByte('\'')
			i++
			have = true
		case strings.IndexByte("\"\\$`;&|<>(){}*?[]~#!\t\n\r=", ch) >= 0:
			return nil, false
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		words = append(words, cur.String())
	}
	return words, true
}

func abbrev(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}
