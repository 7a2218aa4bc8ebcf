//go:build linux

package ssh

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	xssh "golang.org/x/crypto/ssh"
)

// dropbearEnv is a real dropbear listening on 127.0.0.1, started by the test.
type dropbearEnv struct {
	Host       string
	Port       int
	User       string           // the login user: the user running the test
	HostKey    *HostKey         // written for dropbear by MarshalDropbearEd25519
	Pins       []xssh.PublicKey // when set, dial pins these (HostKeys) instead of HostKey
	Farm       *FarmKey         // authorized in the temp home of root
	KnownHosts string           // lists the host key for "[127.0.0.1]:port"
	Dir        string           // the test's scratch dir (remote commands may use it)
	log        *syncBuf         // dropbear's stderr
	cmd        *exec.Cmd        // dropbear itself
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDropbear runs Debian's dropbear with a host key in the format our Go writer produces.
// dropbear reads ~/.ssh/authorized_keys of the login user from /etc/passwd; to leave the real
// ~/.ssh alone, dropbear runs in a private mount namespace in which a copy of /etc/passwd (the
// current user's home replaced by a temp dir) is bind-mounted over /etc/passwd. As non-root, a
// user namespace grants the mount. Nothing on the host changes.
//
// The login user is the one running the test; its login shell is set to /bin/sh, as in a Tiny Core guest (busybox sh). extra are more
// dropbear arguments.
func startDropbear(tb testing.TB, extra ...string) *dropbearEnv {
	tb.Helper()
	return startDropbearKeys(tb, nil, nil, extra...)
}

// startDropbearKeys is startDropbear serving the given host key files (each
// passed with -r) instead of env.HostKey's ed25519 file, pinned as pins;
// nil: env.HostKey.
func startDropbearKeys(tb testing.TB, keyFiles []string, pins []xssh.PublicKey, extra ...string) *dropbearEnv {
	tb.Helper()
	bin, err := exec.LookPath("dropbear")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/dropbear"); err != nil {
			tb.Skip("dropbear not installed (apt-get install dropbear-bin)")
		}
	}
	dir := tb.TempDir()
	env := &dropbearEnv{Host: "127.0.0.1", Dir: dir, log: &syncBuf{}, Pins: pins}
	if env.Farm, err = EnsureFarmKey(filepath.Join(dir, "state")); err != nil {
		tb.Fatal(err)
	}
	if env.HostKey, err = GenerateHostKey(); err != nil {
		tb.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	mustWrite(tb, filepath.Join(home, ".ssh", "authorized_keys"), env.Farm.AuthorizedKey()+"\n", 0o600)
	for _, d := range []string{home, filepath.Join(home, ".ssh")} {
		if err := os.Chmod(d, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	keyFile := filepath.Join(dir, "dropbear_ed25519_host_key")
	mustWrite(tb, keyFile, string(env.HostKey.Dropbear()), 0o600)

	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		tb.Fatal(err)
	}
	var lines []string
	for l := range strings.Lines(string(passwd)) {
		if f := strings.Split(strings.TrimSuffix(l, "\n"), ":"); len(f) == 7 && f[2] == strconv.Itoa(os.Geteuid()) {
			env.User = f[0]
			f[5], f[6] = home, "/bin/sh"
			l = strings.Join(f, ":") + "\n"
		}
		lines = append(lines, l)
	}
	if env.User == "" {
		tb.Skipf("uid %d has no /etc/passwd entry for dropbear to log in as", os.Geteuid())
	}
	fakePasswd := filepath.Join(dir, "passwd")
	mustWrite(tb, fakePasswd, strings.Join(lines, ""), 0o644)

	env.Port = freePort(tb)
	env.KnownHosts = filepath.Join(dir, "known_hosts")
	mustWrite(tb, env.KnownHosts, fmt.Sprintf("[127.0.0.1]:%d %s\n", env.Port, env.HostKey.AuthorizedKey()), 0o600)

	script := `mount --make-rprivate / && mount --bind "$1" /etc/passwd && shift && exec "$@"`
	env.cmd = exec.Command("/bin/sh", "-c", script, "sh", fakePasswd,
		bin, "-F", "-E", "-s", "-p", net.JoinHostPort(env.Host, strconv.Itoa(env.Port)),
		"-P", filepath.Join(dir, "dropbear.pid"))
	if keyFiles == nil {
		keyFiles = []string{keyFile}
	}
	for _, k := range keyFiles {
		env.cmd.Args = append(env.cmd.Args, "-r", k)
	}
	env.cmd.Args = append(env.cmd.Args, extra...)
	env.cmd.Stdout, env.cmd.Stderr = env.log, env.log
	if os.Geteuid() == 0 {
		env.cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	} else {
		// Same uid inside the user namespace (dropbear then logs in only as itself, without
		// setgroups, which a user namespace forbids); CAP_SYS_ADMIN there allows the bind mount.
		env.cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS,
			UidMappings: []syscall.SysProcIDMap{{ContainerID: os.Geteuid(), HostID: os.Geteuid(), Size: 1}},
			GidMappings: []syscall.SysProcIDMap{{ContainerID: os.Getegid(), HostID: os.Getegid(), Size: 1}},
			AmbientCaps: []uintptr{21}, // CAP_SYS_ADMIN
		}
	}
	if err := env.cmd.Start(); err != nil {
		tb.Skipf("cannot start dropbear in a private mount namespace: %v", err)
	}
	exited := make(chan struct{})
	go func() { env.cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = env.cmd.Process.Signal(syscall.SIGTERM) // only the dropbear this test started
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = env.cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			tb.Logf("dropbear log:\n%s", env.log.String())
		}
	})
	// Wait until it answers: this also exercises Dial's retries.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := env.dial(ctx, Config{Retries: 100, Backoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		select {
		case <-exited:
			tb.Skipf("dropbear exited at start (no mount namespace here?): %v\n%s", err, env.log.String())
		default:
		}
		tb.Fatalf("dropbear did not come up: %v\n%s", err, env.log.String())
	}
	c.Close()
	return env
}

// dial connects to the dropbear as root with the farm key and the pinned host key; fields of
// extra override the defaults.
func (e *dropbearEnv) dial(ctx context.Context, extra Config) (*Client, error) {
	cfg := extra
	cfg.Host, cfg.Port, cfg.User = e.Host, e.Port, e.User
	if cfg.Signer == nil && cfg.KeyPath == "" {
		cfg.Signer = e.Farm.Signer
	}
	switch {
	case cfg.HostKey != nil || cfg.KnownHosts != "" || cfg.HostKeys != nil:
	case e.Pins != nil:
		cfg.HostKeys = e.Pins
	default:
		cfg.HostKey = e.HostKey.Public
	}
	return Dial(ctx, cfg)
}

func (e *dropbearEnv) client(tb testing.TB) *Client {
	tb.Helper()
	c, err := e.dial(context.Background(), Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// opensshArgs is the OpenSSH client command line that runs cmd on the dropbear.
func (e *dropbearEnv) opensshArgs(cmd string) []string {
	return []string{"-F", "/dev/null", "-i", e.Farm.Path, "-o", "UserKnownHostsFile=" + e.KnownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "LogLevel=ERROR", "-p", strconv.Itoa(e.Port), e.User + "@" + e.Host, cmd}
}

func mustWrite(tb testing.TB, path, data string, perm fs.FileMode) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), perm); err != nil {
		tb.Fatal(err)
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDropbear(t *testing.T) {
	env := startDropbear(t)
	c := env.client(t)
	ctx := t.Context()

	t.Run("run", func(t *testing.T) {
		res, err := c.Run(ctx, `id -u; echo "$HOME"; echo oops >&2`, RunOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if want := strconv.Itoa(os.Geteuid()) + "\n" + filepath.Join(env.Dir, "home") + "\n"; string(res.Stdout) != want || string(res.Stderr) != "oops\n" {
			t.Errorf("got %q / %q, want %q", res.Stdout, res.Stderr, want)
		}
		res, err = c.Run(ctx, "echo no >&2; exit 42", RunOptions{})
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != 42 || res.Code != 42 || !strings.HasSuffix(err.Error(), "exit status 42: no") {
			t.Errorf("exit 42: %+v, %v", res, err)
		}
		res, err = c.Run(ctx, "wc -c", RunOptions{Stdin: bytes.NewReader(make([]byte, 100_000))})
		if err != nil || strings.TrimSpace(string(res.Stdout)) != "100000" {
			t.Errorf("stdin: %q, %v", res.Stdout, err)
		}
		res, err = c.Run(ctx, `printf %s "$X"`, RunOptions{Env: map[string]string{"X": "a'b c"}})
		if err != nil || string(res.Stdout) != "a'b c" {
			t.Errorf("env: %q, %v", res.Stdout, err)
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		version := string(c.conn.ServerVersion())
		if dropbearSessionBug(version) != (c.sessions != nil) {
			t.Errorf("%s: session cap %v", version, c.sessions != nil)
		}
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Go(func() {
				res, err := c.Run(ctx, "echo "+strconv.Itoa(i), RunOptions{})
				if err != nil || string(res.Stdout) != strconv.Itoa(i)+"\n" {
					t.Errorf("run %d: %q, %v", i, res.Stdout, err)
				}
			})
		}
		wg.Wait()
	})

	t.Run("cancel", func(t *testing.T) {
		pidFile := filepath.Join(env.Dir, "sleep.pid")
		cctx, cancel := context.WithCancel(ctx)
		time.AfterFunc(300*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Run(cctx, "echo $$ > "+ShellQuote(pidFile)+"; exec sleep 30", RunOptions{})
		if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
			t.Fatalf("cancel: %v after %v", err, time.Since(start))
		}
		data, _ := os.ReadFile(pidFile)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		if pid <= 0 {
			t.Fatalf("no pid file: %q", data)
		}
		deadline := time.Now().Add(5 * time.Second)
		for processAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("remote sleep %d survived the cancel", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, err := c.Run(ctx, "true", RunOptions{}); err != nil {
			t.Errorf("connection unusable after cancel: %v", err)
		}
	})

	t.Run("sftp", func(t *testing.T) {
		if _, err := os.Stat("/usr/lib/sftp-server"); err != nil {
			t.Skip("dropbear runs /usr/lib/sftp-server, which is missing here")
		}
		dir := filepath.Join(env.Dir, "files")
		if err := c.MkdirAll(ctx, dir, 0o700); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "conf")
		for i, mode := range []fs.FileMode{0o600, 0o755} {
			data := []byte(strings.Repeat("x", 70_000*(i+1)))
			if err := c.WriteFile(ctx, p, data, mode); err != nil {
				t.Fatal(err)
			}
			if got, err := c.ReadFile(ctx, p); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("ReadFile: %d bytes, %v", len(got), err)
			}
			if m := modeOf(t, p); m != mode {
				t.Errorf("mode %v, want %v", m, mode)
			}
		}
		s, err := c.sftpClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.HasExtension("posix-rename@openssh.com"); !ok {
			t.Error("OpenSSH sftp-server should offer posix-rename")
		}
		local := filepath.Join(t.TempDir(), "l")
		os.WriteFile(local, []byte("local"), 0o640)
		if err := c.Put(ctx, local, filepath.Join(dir, "put"), 0); err != nil {
			t.Fatal(err)
		}
		back := filepath.Join(t.TempDir(), "back")
		if err := c.Get(ctx, filepath.Join(dir, "put"), back); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(back); string(b) != "local" || modeOf(t, back) != 0o640 {
			t.Errorf("Put/Get: %q %v", b, modeOf(t, back))
		}
		if _, err := c.ReadFile(ctx, filepath.Join(dir, "nope")); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing file: %v", err)
		}
		ents, _ := os.ReadDir(dir)
		if len(ents) != 2 {
			t.Errorf("temp files left: %v", ents)
		}
	})

	t.Run("stream", func(t *testing.T) {
		src := t.TempDir()
		os.MkdirAll(filepath.Join(src, "usr/local/etc"), 0o755)
		os.WriteFile(filepath.Join(src, "usr/local/etc/app.conf"), []byte("streamed\n"), 0o640)
		tarCmd := exec.Command("tar", "-c", "-C", src, ".")
		tarOut, err := tarCmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := tarCmd.Start(); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(env.Dir, "guestroot")
		_, err = c.RunStream(ctx, "mkdir -p "+ShellQuote(dest)+" && tar -x -C "+ShellQuote(dest), tarOut, RunOptions{})
		if werr := tarCmd.Wait(); err == nil {
			err = werr
		}
		if err != nil {
			t.Fatal(err)
		}
		if b, err := os.ReadFile(filepath.Join(dest, "usr/local/etc/app.conf")); err != nil || string(b) != "streamed\n" {
			t.Errorf("extracted: %q, %v", b, err)
		}
	})

	t.Run("known_hosts", func(t *testing.T) {
		c2, err := env.dial(ctx, Config{KnownHosts: env.KnownHosts})
		if err != nil {
			t.Fatal(err)
		}
		c2.Close()
	})

	t.Run("key_path", func(t *testing.T) {
		c2, err := env.dial(ctx, Config{KeyPath: env.Farm.Path})
		if err != nil {
			t.Fatal(err)
		}
		c2.Close()
	})

	t.Run("host_key_mismatch", func(t *testing.T) {
		other, _ := GenerateHostKey()
		_, err := env.dial(ctx, Config{HostKey: other.Public})
		if !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), Fingerprint(env.HostKey.Public)) ||
			!strings.Contains(err.Error(), Fingerprint(other.Public)) {
			t.Errorf("mismatch: %v", err)
		}
	})

	t.Run("auth_failure", func(t *testing.T) {
		stranger, _ := EnsureFarmKey(t.TempDir())
		_, err := env.dial(ctx, Config{Signer: stranger.Signer})
		if !errors.Is(err, ErrAuth) {
			t.Errorf("auth: %v", err)
		}
	})

	t.Run("openssh_client", func(t *testing.T) {
		sshBin, err := exec.LookPath("ssh")
		if err != nil {
			t.Skip("OpenSSH client not installed")
		}
		// The farm key file is usable by OpenSSH, and our known_hosts line is valid for it.
		out, err := exec.Command(sshBin, env.opensshArgs("echo hi")...).CombinedOutput()
		if err != nil || string(out) != "hi\n" {
			t.Errorf("ssh: %q, %v", out, err)
		}
	})
}

func processAlive(pid int) bool {
	// /proc/PID/stat field 3 is the state; a zombie (Z) waits only for its parent.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}

// BenchmarkDropbearRun: one command on a warm connection (goal: under 5 ms).
func BenchmarkDropbearRun(b *testing.B) {
	env := startDropbear(b)
	c := env.client(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.Run(ctx, "true", RunOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDropbearDialRun: a fresh connection per command (what a per-command client pays).
func BenchmarkDropbearDialRun(b *testing.B) {
	env := startDropbear(b)
	ctx := context.Background()
	for b.Loop() {
		c, err := env.dial(ctx, Config{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Run(ctx, "true", RunOptions{}); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// BenchmarkOpenSSHRun: the OpenSSH client, one process and connection per command.
func BenchmarkOpenSSHRun(b *testing.B) {
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		b.Skip("OpenSSH client not installed")
	}
	env := startDropbear(b)
	args := env.opensshArgs("true")
	for b.Loop() {
		if out, err := exec.Command(sshBin, args...).CombinedOutput(); err != nil {
			b.Fatalf("ssh: %v: %s", err, out)
		}
	}
}

// BenchmarkDropbearRunStream: bulk copy into the guest through one command's stdin.
func BenchmarkDropbearRunStream(b *testing.B) {
	env := startDropbear(b)
	c := env.client(b)
	ctx := context.Background()
	const size = 32 << 20
	b.SetBytes(size)
	for b.Loop() {
		res, err := c.RunStream(ctx, "wc -c", io.LimitReader(zeros{}, size), RunOptions{})
		if err != nil || strings.TrimSpace(string(res.Stdout)) != strconv.Itoa(size) {
			b.Fatalf("%q, %v", res.Stdout, err)
		}
	}
}

// BenchmarkDropbearRunStreamWindow1M: the same with dropbear's receive window raised from its
// 24 KiB default (-W 1048576), as a guest image may configure it.
func BenchmarkDropbearRunStreamWindow1M(b *testing.B) {
	env := startDropbear(b, "-W", "1048576")
	c := env.client(b)
	ctx := context.Background()
	const size = 32 << 20
	b.SetBytes(size)
	for b.Loop() {
		res, err := c.RunStream(ctx, "wc -c", io.LimitReader(zeros{}, size), RunOptions{})
		if err != nil || strings.TrimSpace(string(res.Stdout)) != strconv.Itoa(size) {
			b.Fatalf("%q, %v", res.Stdout, err)
		}
	}
}

// BenchmarkDropbearWriteFile: one atomic 1 MiB SFTP write.
func BenchmarkDropbearWriteFile(b *testing.B) {
	env := startDropbear(b)
	c := env.client(b)
	ctx := context.Background()
	data := make([]byte, 1<<20)
	p := filepath.Join(env.Dir, "bench.bin")
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := c.WriteFile(ctx, p, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
