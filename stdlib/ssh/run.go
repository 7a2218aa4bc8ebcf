package ssh

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	xssh "golang.org/x/crypto/ssh"
)

// RunOptions tunes one command. The zero value runs the command as the login user, with empty
// standard input, no time limit beyond ctx, and a non-zero exit reported as an error.
type RunOptions struct {
	// Sudo runs the command as `sudo -n sh -c '<cmd>'` (never prompts). Default false.
	Sudo bool
	// Stdin is copied to the command's standard input, then closed. Default nil: empty input.
	Stdin io.Reader
	// Env sets variables for the command. They are exported by the remote shell inside the
	// command (inside sudo, too), so they do not depend on the server accepting SSH "env"
	// requests. Names must match [A-Za-z_][A-Za-z0-9_]*. Default nil: none.
	Env map[string]string
	// Timeout bounds the command; when it passes the command is killed and the error wraps
	// ErrTimeout. Default 0: only ctx bounds it.
	Timeout time.Duration
	// IgnoreExit makes a non-zero exit status (or a death by signal) a normal Result instead of
	// an error. Default false: such a command returns its Result and an *ExitError wrapping
	// ErrExit.
	IgnoreExit bool
	// Stdout receives standard output as it arrives instead of Result.Stdout. Default nil:
	// captured in Result.Stdout.
	Stdout io.Writer
	// Stderr receives standard error as it arrives instead of Result.Stderr. Default nil:
	// captured in Result.Stderr.
	Stderr io.Writer
}

// Result is what a command did.
type Result struct {
	// Code is the exit status; -1 when the command was killed by a signal or gave no status.
	Code int
	// Signal is the name of the signal that killed the command ("KILL"), or "".
	Signal string
	// Stdout is the captured standard output (nil when RunOptions.Stdout was set).
	Stdout []byte
	// Stderr is the captured standard error (nil when RunOptions.Stderr was set).
	Stderr []byte
}

// killWait is how long a cancelled command's session may take to close before Run gives up
// waiting for it.
const killWait = 5 * time.Second

// Run runs cmd in a new session on the shared connection, through the login user's shell, and
// waits for it. A command that exits non-zero returns its Result together with an *ExitError
// (which wraps ErrExit) unless opts.IgnoreExit is set. When ctx is done or opts.Timeout
// passes, Run sends the command SIGKILL, closes the session and returns what was captured so
// far with an error wrapping ctx's error (and ErrTimeout for a deadline).
func (c *Client) Run(ctx context.Context, cmd string, opts RunOptions) (Result, error) {
	res, err := c.run(ctx, cmd, opts)
	if err != nil {
		return res, fmt.Errorf("run %q on %s: %w", abbrev(cmd, 60), c.dest, err)
	}
	return res, nil
}

// RunStream runs cmd with stdin streamed to it: the bulk-copy form of [Client.Run], e.g.
//
//	c.RunStream(ctx, "tar -x -C /", tarStream, ssh.RunOptions{Sudo: true})
//
// The stream is copied as it is read; nothing is buffered whole. opts.Stdin is ignored.
func (c *Client) RunStream(ctx context.Context, cmd string, stdin io.Reader, opts RunOptions) (Result, error) {
	opts.Stdin = stdin
	return c.Run(ctx, cmd, opts)
}

func (c *Client) run(ctx context.Context, cmd string, opts RunOptions) (Result, error) {
	line, err := commandLine(cmd, opts)
	if err != nil {
		return Result{Code: -1}, err
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return Result{Code: -1}, ctxError(ctx, err)
	}
	release, err := c.acquire(ctx)
	if err != nil {
		return Result{Code: -1}, err
	}
	defer release()
	// The session is driven on the channel directly rather than through x/crypto's Session,
	// which spends five goroutines on a command and hands its end from one to the next
	// (exit status, copies, Wait): on a warm connection those hand-offs were a sizeable part
	// of a short command's time. Here one goroutine copies stderr and one waits.
	ch, reqs, err := c.conn.OpenChannel("session", nil)
	if err != nil {
		return Result{Code: -1}, fmt.Errorf("new session: %w", err)
	}
	defer ch.Close()
	ok, err := ch.SendRequest("exec", true, xssh.Marshal(&struct{ Command string }{line}))
	if err == nil && !ok {
		err = errors.New("the server refused to run it")
	}
	if err != nil {
		return Result{Code: -1}, fmt.Errorf("start: %w", err)
	}
	// Stdin is copied by a goroutine of its own that nobody waits for: Run must not hang on
	// a reader that blocks after the command has exited. Sending EOF fails once the server
	// has closed the channel (a quick command may be done already): that is no error.
	if opts.Stdin != nil {
		go func() {
			_, _ = io.Copy(ch, opts.Stdin)
			_ = ch.CloseWrite()
		}()
	} else {
		_ = ch.CloseWrite()
	}

	var stdout, stderr bytes.Buffer
	var outW, errW io.Writer = &stdout, &stderr
	if opts.Stdout != nil {
		outW = opts.Stdout
	}
	if opts.Stderr != nil {
		errW = opts.Stderr
	}
	done := make(chan exit, 1)
	go func() { done <- waitExit(ch, reqs, outW, errW) }()
	var ex exit
	select {
	case ex = <-done:
	case <-ctx.Done():
		_, _ = ch.SendRequest("signal", false, xssh.Marshal(&struct{ Signal string }{string(xssh.SIGKILL)}))
		_ = ch.Close()
		select {
		case <-done:
		case <-time.After(killWait):
			// The copies may still write: do not touch the buffers.
			return Result{Code: -1}, ctxError(ctx, errors.New("session did not close"))
		}
		return result(-1, "", &stdout, &stderr, opts), ctxError(ctx, errors.New("command killed"))
	}

	switch {
	case ex.copyErr != nil && ex.status == 0:
		return result(-1, "", &stdout, &stderr, opts), fmt.Errorf("wait: %w", ex.copyErr)
	case ex.status == 0:
		return result(0, "", &stdout, &stderr, opts), nil
	}
	res := result(ex.status, ex.signal, &stdout, &stderr, opts)
	if res.Signal != "" || ex.status < 0 {
		res.Code = -1
	}
	if opts.IgnoreExit {
		return res, nil
	}
	return res, &ExitError{Code: res.Code, Signal: res.Signal, Stderr: tail(res.Stderr, 512)}
}

// exit is how a session ended: the exit status (-1: none sent), the signal that killed the
// command ("" if none), and the first error copying its output.
type exit struct {
	status  int
	signal  string
	copyErr error
}

// waitExit copies the command's output until the server closes the channel and collects the
// exit status or signal from its requests, answering any others (keepalives) with a refusal.
func waitExit(ch xssh.Channel, reqs <-chan *xssh.Request, stdout, stderr io.Writer) exit {
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(stderr, ch.Stderr())
		errc <- err
	}()
	_, outErr := io.Copy(stdout, ch)
	ex := exit{status: -1}
	for req := range reqs { // closed when the channel is
		switch req.Type {
		case "exit-status":
			if len(req.Payload) >= 4 {
				ex.status = int(binary.BigEndian.Uint32(req.Payload))
			}
		case "exit-signal":
			var sig struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}
			if xssh.Unmarshal(req.Payload, &sig) == nil {
				ex.signal = sig.Signal
			}
		default:
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
	errErr := <-errc
	ex.copyErr = outErr
	if ex.copyErr == nil {
		ex.copyErr = errErr
	}
	return ex
}

func result(code int, signal string, stdout, stderr *bytes.Buffer, opts RunOptions) Result {
	r := Result{Code: code, Signal: signal}
	if opts.Stdout == nil {
		r.Stdout = stdout.Bytes()
	}
	if opts.Stderr == nil {
		r.Stderr = stderr.Bytes()
	}
	return r
}

// validEnvName reports whether k matches [A-Za-z_][A-Za-z0-9_]*.
func validEnvName(k string) bool {
	for i, r := range k {
		switch {
		case r == '_', 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z':
		case i > 0 && '0' <= r && r <= '9':
		default:
			return false
		}
	}
	return k != ""
}

// commandLine renders the remote command line for cmd and opts: the Env exports, then the
// Sudo wrapper.
func commandLine(cmd string, opts RunOptions) (string, error) {
	if len(opts.Env) > 0 {
		names := make([]string, 0, len(opts.Env))
		for k := range opts.Env {
			if !validEnvName(k) {
				return "", fmt.Errorf("bad environment variable name %q", k)
			}
			names = append(names, k)
		}
		slices.Sort(names)
		var b strings.Builder
		b.WriteString("export")
		for _, k := range names {
			b.WriteString(" " + k + "=" + ShellQuote(opts.Env[k]))
		}
		cmd = b.String() + "; " + cmd
	}
	if opts.Sudo {
		cmd = "sudo -n sh -c " + ShellQuote(cmd)
	}
	return cmd, nil
}

// ShellQuote quotes s as one word for a POSIX shell: s is wrapped in single quotes, and each
// single quote inside it ends the quoting, is escaped with a backslash, and reopens it. The
// empty string becomes a pair of single quotes.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellJoin quotes each argument with [ShellQuote] and joins them with spaces, giving a command
// line that runs exactly args.
func ShellJoin(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = ShellQuote(a)
	}
	return strings.Join(q, " ")
}
