//go:build linux

package ssh

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
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

	"github.com/tinyfarm/tinyfarm/stdlib/ssh/sshtest"
	xssh "golang.org/x/crypto/ssh"
)

// dialTest starts an in-process server rooted at a temp dir and connects to it.
func dialTest(t *testing.T, opts ...sshtest.Option) (*Client, *sshtest.Server) {
	t.Helper()
	srv := sshtest.NewServer(t, t.TempDir(), opts...)
	c, err := Dial(t.Context(), Config{Host: srv.Host, Port: srv.Port, User: "tc",
		Signer: srv.ClientSigner, HostKey: srv.HostKey, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, srv
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"":        "''",
		"abc":     "'abc'",
		"it's":    `'it'\''s'`,
		"'":       `''\'''`,
		"a b\n$x": "'a b\n$x'",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	// Each word survives a real shell unchanged.
	words := []string{"", "plain", "it's", `a "b" \c`, "$HOME `id` $(id)", "x\ny", "'''", "*", "-n", "; rm -rf /"}
	out, err := exec.Command("/bin/sh", "-c", "for a in "+ShellJoin(words...)+`; do printf '%s\0' "$a"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", words) {
		t.Errorf("through sh: %q, want %q", got, words)
	}
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		cmd  string
		opts RunOptions
		want string
	}{
		{"id -u", RunOptions{}, "id -u"},
		{"echo 'hi'", RunOptions{Sudo: true}, `sudo -n sh -c 'echo '\''hi'\'''`},
		{"echo $B", RunOptions{Env: map[string]string{"B": "it's", "A": "1"}}, `export A='1' B='it'\''s'; echo $B`},
		{"x", RunOptions{Sudo: true, Env: map[string]string{"A": "1"}}, `sudo -n sh -c 'export A='\''1'\''; x'`},
	} {
		got, err := commandLine(tc.cmd, tc.opts)
		if err != nil || got != tc.want {
			t.Errorf("commandLine(%q, %+v) = %s, %v; want %s", tc.cmd, tc.opts, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "1A", "A-B", "A B", "A=B"} {
		if _, err := commandLine("x", RunOptions{Env: map[string]string{bad: "v"}}); err == nil {
			t.Errorf("env name %q accepted", bad)
		}
	}
}

func TestRun(t *testing.T) {
	c, _ := dialTest(t)
	ctx := t.Context()

	res, err := c.Run(ctx, "echo out; echo err >&2", RunOptions{})
	if err != nil || res.Code != 0 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Errorf("Run = %+v, %v", res, err)
	}

	res, err = c.Run(ctx, "echo partial; echo broken >&2; exit 3", RunOptions{})
	var ee *ExitError
	if !errors.Is(err, ErrExit) || !errors.As(err, &ee) || ee.Code != 3 {
		t.Fatalf("exit 3: err = %v", err)
	}
	if res.Code != 3 || string(res.Stdout) != "partial\n" {
		t.Errorf("exit 3: result %+v", res)
	}
	if want := `run "echo partial; echo broken >&2; exit 3" on tc@` + c.dest[3:] + ": exit status 3: broken"; err.Error() != want {
		t.Errorf("error text:\n got %s\nwant %s", err, want)
	}

	res, err = c.Run(ctx, "exit 7", RunOptions{IgnoreExit: true})
	if err != nil || res.Code != 7 {
		t.Errorf("IgnoreExit: %+v, %v", res, err)
	}

	res, err = c.Run(ctx, "kill -KILL $$", RunOptions{})
	if !errors.Is(err, ErrExit) || res.Signal != "KILL" || res.Code != -1 {
		t.Errorf("signal: %+v, %v", res, err)
	}

	res, err = c.Run(ctx, "tr a-z A-Z", RunOptions{Stdin: strings.NewReader("hello\n")})
	if err != nil || string(res.Stdout) != "HELLO\n" {
		t.Errorf("stdin: %+v, %v", res, err)
	}

	res, err = c.Run(ctx, "cat", RunOptions{})
	if err != nil || len(res.Stdout) != 0 {
		t.Errorf("no stdin must mean empty input: %+v, %v", res, err)
	}

	res, err = c.Run(ctx, `printf '%s|%s' "$GREETING" "$OTHER"`, RunOptions{Env: map[string]string{"GREETING": "it's $me", "OTHER": "x y"}})
	if err != nil || string(res.Stdout) != "it's $me|x y" {
		t.Errorf("env: %q, %v", res.Stdout, err)
	}

	var out bytes.Buffer
	res, err = c.Run(ctx, "echo streamed", RunOptions{Stdout: &out})
	if err != nil || out.String() != "streamed\n" || res.Stdout != nil {
		t.Errorf("Stdout writer: %q, %+v, %v", out.String(), res, err)
	}
}

func TestRunSudo(t *testing.T) {
	bin := t.TempDir()
	// A stand-in sudo that checks -n and runs the rest: the quoting is what is under test.
	script := "#!/bin/sh\n[ \"$1\" = -n ] || { echo 'sudo: -n missing' >&2; exit 99; }\nshift\nexec \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "sudo"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	c, srv := dialTest(t, sshtest.WithEnv("PATH="+bin+":"+os.Getenv("PATH")))
	cmd := `printf '%s\n' "it's" 'a "b"' "$(echo c d)"; echo $((1+2))`
	res, err := c.Run(t.Context(), cmd, RunOptions{Sudo: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := "it's\na \"b\"\nc d\n3\n"; string(res.Stdout) != want {
		t.Errorf("stdout %q, want %q", res.Stdout, want)
	}
	got := srv.Commands()
	if want := "sudo -n sh -c " + ShellQuote(cmd); len(got) != 1 || got[0] != want {
		t.Errorf("server received %q, want %q", got, want)
	}
}

func TestConcurrentRunsShareOneConnection(t *testing.T) {
	c, srv := dialTest(t)
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Go(func() {
			res, err := c.Run(t.Context(), "echo "+strconv.Itoa(i)+"; exit "+strconv.Itoa(i%3), RunOptions{IgnoreExit: true})
			if err != nil || string(res.Stdout) != strconv.Itoa(i)+"\n" || res.Code != i%3 {
				t.Errorf("run %d: %+v, %v", i, res, err)
			}
		})
	}
	for i := range 8 {
		wg.Go(func() {
			p := fmt.Sprintf("/f%d", i)
			data := bytes.Repeat([]byte{byte(i)}, 100_000)
			if err := c.WriteFile(t.Context(), p, data, 0o600); err != nil {
				t.Error(err)
				return
			}
			if got, err := c.ReadFile(t.Context(), p); err != nil || !bytes.Equal(got, data) {
				t.Errorf("read back %s: %d bytes, %v", p, len(got), err)
			}
		})
	}
	wg.Wait()
	if n := srv.Accepted(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

func TestRunCancelKillsCommand(t *testing.T) {
	c, srv := dialTest(t)
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	res, err := c.Run(ctx, "echo $$ > pid; echo started; exec sleep 30", RunOptions{})
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if string(res.Stdout) != "started\n" {
		t.Errorf("partial stdout %q", res.Stdout)
	}
	data, err := os.ReadFile(filepath.Join(srv.Root, "pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	deadline := time.Now().Add(3 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("remote command %d still running after cancel", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The connection is still usable.
	if _, err := c.Run(t.Context(), "true", RunOptions{}); err != nil {
		t.Errorf("run after cancel: %v", err)
	}
}

func TestRunTimeout(t *testing.T) {
	c, _ := dialTest(t)
	start := time.Now()
	_, err := c.Run(t.Context(), "sleep 30", RunOptions{Timeout: 200 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestRunStream(t *testing.T) {
	c, srv := dialTest(t)
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	pr, pw := io.Pipe()
	go func() {
		for b := data; len(b) > 0; b = b[min(len(b), 100_000):] {
			pw.Write(b[:min(len(b), 100_000)])
		}
		pw.Close()
	}()
	res, err := c.RunStream(t.Context(), "cat > big; wc -c < big", pr, RunOptions{})
	if err != nil || strings.TrimSpace(string(res.Stdout)) != strconv.Itoa(len(data)) {
		t.Fatalf("RunStream: %q, %v", res.Stdout, err)
	}
	got, _ := os.ReadFile(filepath.Join(srv.Root, "big"))
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Error("streamed content differs")
	}
	// A command that exits without reading its input must not hang on a never-ending stream.
	blocked, _ := io.Pipe()
	t.Cleanup(func() { blocked.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.RunStream(ctx, "true", blocked, RunOptions{}); err != nil {
		t.Errorf("RunStream with unread stdin: %v", err)
	}
}

func modeOf(t *testing.T, p string) fs.FileMode {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestSFTP(t *testing.T) {
	c, srv := dialTest(t)
	ctx := t.Context()
	root := srv.Root

	if err := c.MkdirAll(ctx, "/etc/app", 0o750); err != nil {
		t.Fatal(err)
	}
	if m := modeOf(t, filepath.Join(root, "etc/app")); m != 0o750 {
		t.Errorf("dir mode %v", m)
	}
	if err := c.WriteFile(ctx, "/etc/app/conf", []byte("v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if m := modeOf(t, filepath.Join(root, "etc/app/conf")); m != 0o600 {
		t.Errorf("WriteFile mode %v, want 0600", m)
	}
	// Overwrite: new content and the new mode, applied exactly.
	if err := c.WriteFile(ctx, "/etc/app/conf", []byte("v2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ReadFile(ctx, "/etc/app/conf"); err != nil || string(got) != "v2\n" {
		t.Errorf("ReadFile = %q, %v", got, err)
	}
	if m := modeOf(t, filepath.Join(root, "etc/app/conf")); m != 0o755 {
		t.Errorf("overwrite mode %v, want 0755", m)
	}
	if err := c.WriteFile(ctx, "/etc/app/default", nil, 0); err != nil {
		t.Fatal(err)
	}
	if m := modeOf(t, filepath.Join(root, "etc/app/default")); m != DefaultFileMode {
		t.Errorf("mode 0 gave %v", m)
	}

	local := filepath.Join(t.TempDir(), "script.sh")
	os.WriteFile(local, []byte("#!/bin/sh\necho hi\n"), 0o700)
	os.Chmod(local, 0o741)
	if err := c.Put(ctx, local, "/etc/app/script.sh", 0); err != nil {
		t.Fatal(err)
	}
	if m := modeOf(t, filepath.Join(root, "etc/app/script.sh")); m != 0o741 {
		t.Errorf("Put mode %v, want the local 0741", m)
	}
	if err := c.PutReader(ctx, strings.NewReader("r"), "/etc/app/r", 0o640); err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(t.TempDir(), "back")
	if err := c.Get(ctx, "/etc/app/script.sh", back); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(back); string(b) != "#!/bin/sh\necho hi\n" || modeOf(t, back) != 0o741 {
		t.Errorf("Get: %q mode %v", b, modeOf(t, back))
	}
	if fi, err := c.Stat(ctx, "/etc/app/r"); err != nil || fi.Size() != 1 || fi.Mode().Perm() != 0o640 {
		t.Errorf("Stat = %v, %v", fi, err)
	}

	// Errors: missing files wrap fs.ErrNotExist and name the path.
	if _, err := c.ReadFile(ctx, "/nope"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "/nope") {
		t.Errorf("ReadFile missing: %v", err)
	}
	if _, err := c.Stat(ctx, "/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat missing: %v", err)
	}
	if err := c.WriteFile(ctx, "/no/dir/x", nil, 0); err == nil {
		t.Error("WriteFile into a missing dir succeeded")
	}
	if err := c.Remove(ctx, "/etc/app/r"); err != nil {
		t.Error(err)
	}

	// No temporary files are left behind.
	ents, _ := os.ReadDir(filepath.Join(root, "etc/app"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "conf default script.sh" {
		t.Errorf("dir holds %q", got)
	}
}

// TestWriteFileAtomic checks that a reader never sees a partial file, with and without the
// posix-rename extension.
func TestWriteFileAtomic(t *testing.T) {
	for _, posix := range []bool{true, false} {
		t.Run(fmt.Sprintf("posix-rename=%v", posix), func(t *testing.T) {
			c, srv := dialTest(t)
			c.noPosixRename = !posix
			a, b := bytes.Repeat([]byte("a"), 256<<10), bytes.Repeat([]byte("b"), 256<<10)
			if err := c.WriteFile(t.Context(), "/f", a, 0o644); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			var torn, missing int
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					got, err := os.ReadFile(filepath.Join(srv.Root, "f"))
					switch {
					case err != nil:
						missing++
					case !bytes.Equal(got, a) && !bytes.Equal(got, b):
						torn++
					}
				}
			})
			for i := range 20 {
				if err := c.WriteFile(t.Context(), "/f", [][]byte{a, b}[i%2], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			close(stop)
			wg.Wait()
			if torn > 0 {
				t.Errorf("a reader saw %d partial files", torn)
			}
			if posix && missing > 0 {
				t.Errorf("with posix-rename the file was missing %d times", missing)
			}
			t.Logf("reads with file missing (expected only without posix-rename): %d", missing)
		})
	}
}

func TestHostKeyMismatch(t *testing.T) {
	srv := sshtest.NewServer(t, t.TempDir())
	other, err := GenerateHostKey()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Dial(t.Context(), Config{Host: srv.Host, Port: srv.Port, Signer: srv.ClientSigner,
		HostKey: other.Public, Retries: 3, Backoff: time.Millisecond})
	if !errors.Is(err, ErrHostKey) {
		t.Fatalf("err = %v, want ErrHostKey", err)
	}
	msg := err.Error()
	for _, want := range []string{srv.Addr, Fingerprint(srv.HostKey), Fingerprint(other.Public), "mismatch"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	var hk *HostKeyError
	if !errors.As(err, &hk) || hk.Got != Fingerprint(srv.HostKey) || hk.Want[0] != Fingerprint(other.Public) {
		t.Errorf("HostKeyError = %+v", hk)
	}
	if n := srv.Accepted(); n != 1 {
		t.Errorf("host key error was retried: %d connections", n)
	}
	t.Log(msg)

	// A pinned key of another type: the server cannot prove it, and that is a host key error.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, _ := xssh.NewPublicKey(&rsaKey.PublicKey)
	_, err = Dial(t.Context(), Config{Host: srv.Host, Port: srv.Port, Signer: srv.ClientSigner, HostKey: rsaPub})
	if !errors.Is(err, ErrHostKey) {
		t.Errorf("pinned RSA key against an ed25519-only server: %v", err)
	}
}

func TestKnownHosts(t *testing.T) {
	srv := sshtest.NewServer(t, t.TempDir())
	other, _ := GenerateHostKey()
	dir := t.TempDir()
	write := func(name string, lines ...string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		return p
	}
	entry := "[127.0.0.1]:" + strconv.Itoa(srv.Port)
	cfg := Config{Host: srv.Host, Port: srv.Port, Signer: srv.ClientSigner}

	cfg.KnownHosts = write("good", "[10.0.0.1]:22 "+other.AuthorizedKey(), entry+" "+AuthorizedKey(srv.HostKey, ""))
	c, err := Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("good known_hosts: %v", err)
	}
	c.Close()

	cfg.KnownHosts = write("wrong", entry+" "+other.AuthorizedKey())
	_, err = Dial(t.Context(), cfg)
	if !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), Fingerprint(other.Public)) ||
		!strings.Contains(err.Error(), Fingerprint(srv.HostKey)) {
		t.Errorf("wrong key: %v", err)
	}

	before := srv.Accepted()
	cfg.KnownHosts = write("absent", "[10.0.0.1]:22 "+other.AuthorizedKey())
	_, err = Dial(t.Context(), cfg)
	if !errors.Is(err, ErrHostKey) || !strings.Contains(err.Error(), "no trust on first use") {
		t.Errorf("unknown host: %v", err)
	}
	if srv.Accepted() != before {
		t.Error("connected to a host that known_hosts does not list")
	}

	if _, err := Dial(t.Context(), Config{Host: srv.Host, Port: srv.Port, Signer: srv.ClientSigner}); err == nil ||
		!strings.Contains(err.Error(), "no host key pinned") {
		t.Errorf("no pin: %v", err)
	}
}

func TestAuthFailure(t *testing.T) {
	srv := sshtest.NewServer(t, t.TempDir())
	stranger, _ := GenerateHostKey()
	signer, _ := xssh.NewSignerFromKey(stranger.Private)
	_, err := Dial(t.Context(), Config{Host: srv.Host, Port: srv.Port, User: "tc", Signer: signer,
		HostKey: srv.HostKey, Retries: 3, Backoff: time.Millisecond})
	if !errors.Is(err, ErrAuth) || errors.Is(err, ErrHostKey) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if !strings.Contains(err.Error(), "tc@"+srv.Addr) {
		t.Errorf("error does not name the destination: %v", err)
	}
	if n := srv.Accepted(); n != 1 {
		t.Errorf("auth failure was retried: %d connections", n)
	}

	// A key file works as well as a Signer; a bad one is a clear error.
	dir := t.TempDir()
	k, _ := EnsureFarmKey(dir)
	srv2 := sshtest.NewServer(t, t.TempDir(), sshtest.WithAuthorizedKey(k.PublicKey()))
	c, err := Dial(t.Context(), Config{Host: srv2.Host, Port: srv2.Port, KeyPath: k.Path, HostKey: srv2.HostKey})
	if err != nil {
		t.Fatalf("KeyPath: %v", err)
	}
	c.Close()
	if _, err := Dial(t.Context(), Config{Host: srv2.Host, Port: srv2.Port, KeyPath: k.Path + ".pub", HostKey: srv2.HostKey}); err == nil {
		t.Error("a public key file was accepted as a private key")
	}
}

func TestDialTimeout(t *testing.T) {
	// A server that accepts TCP but never speaks SSH.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	hk, _ := GenerateHostKey()
	signer, _ := xssh.NewSignerFromKey(hk.Private)
	start := time.Now()
	_, err = Dial(t.Context(), Config{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
		Signer: signer, HostKey: hk.Public, Timeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 3*time.Second {
		t.Errorf("timed out after %v, want about 300ms", d)
	}

	// The caller's deadline bounds the retries too.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = Dial(ctx, Config{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
		Signer: signer, HostKey: hk.Public, Timeout: 10 * time.Second, Retries: 100})
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ctx deadline: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ctx deadline ignored: %v", d)
	}
}

func TestDialRetriesUntilServerComesUp(t *testing.T) {
	// Reserve a port, free it, and start the server there only after the first attempts failed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	hostKey, _ := GenerateHostKey()
	hostSigner, _ := xssh.NewSignerFromKey(hostKey.Private)
	client, _ := GenerateHostKey()
	clientSigner, _ := xssh.NewSignerFromKey(client.Private)

	var logs []string
	var mu sync.Mutex
	type dialResult struct {
		c   *Client
		err error
	}
	done := make(chan dialResult, 1)
	start := time.Now()
	go func() {
		c, err := Dial(t.Context(), Config{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
			Signer: clientSigner, HostKey: hostKey.Public, Retries: 10, Backoff: 50 * time.Millisecond,
			MaxBackoff: 200 * time.Millisecond, Logf: func(f string, a ...any) {
				mu.Lock()
				logs = append(logs, fmt.Sprintf(f, a...))
				mu.Unlock()
			}})
		done <- dialResult{c, err}
	}()
	time.Sleep(400 * time.Millisecond)
	sshtest.NewServer(t, t.TempDir(), sshtest.WithAddr(addr), sshtest.WithHostKey(hostSigner),
		sshtest.WithAuthorizedKey(client.Public))
	r := <-done
	if r.err != nil {
		t.Fatalf("Dial: %v (logs %q)", r.err, logs)
	}
	r.c.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(logs) < 2 || !strings.Contains(logs[0], "connection refused") {
		t.Errorf("expected refused attempts before success, logs: %q", logs)
	}
	t.Logf("connected after %v and %d failed attempts", time.Since(start).Round(time.Millisecond), len(logs))

	// Without retries, a refused connection fails at once, naming the destination.
	_, err = Dial(t.Context(), Config{Host: "127.0.0.1", Port: 1, Signer: clientSigner, HostKey: hostKey.Public})
	if err == nil || !strings.Contains(err.Error(), "dial root@127.0.0.1:1") || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("refused: %v", err)
	}
}

func TestDropbearSessionBugVersions(t *testing.T) {
	for v, want := range map[string]bool{
		"SSH-2.0-dropbear_2022.83": true,
		"SSH-2.0-dropbear_2022.82": true,
		"SSH-2.0-dropbear_2024.85": true,
		"SSH-2.0-dropbear_2024.86": false,
		"SSH-2.0-dropbear_2025.88": false,
		"SSH-2.0-dropbear_2020.81": false,
		"SSH-2.0-dropbear":         false,
		"SSH-2.0-OpenSSH_9.2p1":    false,
		"SSH-2.0-Go":               false,
	} {
		if got := dropbearSessionBug(v); got != want {
			t.Errorf("dropbearSessionBug(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestMaxSessions(t *testing.T) {
	srv := sshtest.NewServer(t, t.TempDir())
	c, err := Dial(t.Context(), Config{Host: srv.Host, Port: srv.Port, Signer: srv.ClientSigner,
		HostKey: srv.HostKey, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Four commands that each take 200ms: with two at a time they need about 400ms.
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := c.Run(t.Context(), "sleep 0.2", RunOptions{}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d < 390*time.Millisecond {
		t.Errorf("4 x 200ms with MaxSessions 2 took %v", d)
	}
	// A waiting Run honours ctx.
	c1, _ := Dial(t.Context(), Config{Host: srv.Host, Port: srv.Port, Signer: srv.ClientSigner,
		HostKey: srv.HostKey, MaxSessions: 1})
	defer c1.Close()
	go c1.Run(t.Context(), "sleep 1", RunOptions{})
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := c1.Run(ctx, "true", RunOptions{}); !errors.Is(err, ErrTimeout) {
		t.Errorf("waiting for a session: %v", err)
	}
}
