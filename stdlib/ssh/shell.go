package ssh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	xssh "golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// ShellOptions describe an interactive login shell.
type ShellOptions struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Term is the terminal type for the PTY ("xterm"); a PTY is requested
	// only when Stdin is a terminal, which is then put into raw mode.
	Term string
}

// Shell runs the remote user's login shell, interactively (a PTY, the
// local terminal in raw mode) when stdin is a terminal, else reading
// commands from stdin. It returns the shell's exit status.
func (c *Client) Shell(ctx context.Context, o ShellOptions) (int, error) {
	sess, err := c.conn.NewSession()
	if err != nil {
		return -1, fmt.Errorf("shell %s: new session: %w", c.dest, err)
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = o.Stdin, o.Stdout, o.Stderr
	if f, ok := o.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		w, h, err := term.GetSize(int(f.Fd()))
		if err != nil {
			w, h = 80, 24
		}
		if o.Term == "" {
			o.Term = "xterm"
		}
		if err := sess.RequestPty(o.Term, h, w, xssh.TerminalModes{xssh.ECHO: 1}); err != nil {
			return -1, fmt.Errorf("shell %s: pty: %w", c.dest, err)
		}
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return -1, fmt.Errorf("shell %s: raw terminal: %w", c.dest, err)
		}
		defer term.Restore(int(f.Fd()), old)
	}
	if err := sess.Shell(); err != nil {
		return -1, fmt.Errorf("shell %s: %w", c.dest, err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Close()
		return -1, ctx.Err()
	}
	var ee *xssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), nil
	}
	if err != nil {
		return -1, fmt.Errorf("shell %s: %w", c.dest, err)
	}
	return 0, nil
}
