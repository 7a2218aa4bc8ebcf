package ssh

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Every error of this package that is caused by one of these wraps it, so
// callers test with errors.Is.
var (
	// ErrAuth means the server refused every authentication method offered.
	ErrAuth = errors.New("authentication failed")
	// ErrHostKey means the server's host key is not the pinned one (or not in known_hosts).
	ErrHostKey = errors.New("host key verification failed")
	// ErrTimeout means a connect, handshake or command ran out of time.
	ErrTimeout = errors.New("timeout")
	// ErrForwarding means a jump host ([Config.Via]) refused to open a TCP channel: its server
	// forbids forwarding.
	ErrForwarding = errors.New("TCP forwarding refused")
	// ErrExit means a remote command ended with a non-zero status or by a signal.
	ErrExit = errors.New("command failed")
)

// HostKeyError reports a host key that does not match the pinned key(s). It wraps [ErrHostKey].
type HostKeyError struct {
	// Host is the address that was dialled, "host:port".
	Host string
	// Got is the SHA256 fingerprint of the key the server presented; "" when tinyfarm refused
	// to connect because known_hosts has no entry for the host.
	Got string
	// Want holds the SHA256 fingerprints of the accepted keys; empty when the host has no entry
	// in the known_hosts file.
	Want []string
	// Source says where the pinned keys came from: "pinned key" or the known_hosts path.
	Source string
}

func (e *HostKeyError) Error() string {
	if len(e.Want) == 0 {
		msg := fmt.Sprintf("host %s has no entry in %s (no trust on first use)", e.Host, e.Source)
		if e.Got != "" {
			msg += "; it presented " + e.Got
		}
		return msg
	}
	return fmt.Sprintf("host key mismatch for %s: got %s, want %s (%s)",
		e.Host, e.Got, strings.Join(e.Want, " or "), e.Source)
}

// Unwrap returns [ErrHostKey].
func (e *HostKeyError) Unwrap() error { return ErrHostKey }

// ExitError reports a remote command that exited non-zero or was killed by a signal. It wraps
// [ErrExit]. The full output is in the [Result] returned alongside.
type ExitError struct {
	// Code is the exit status; -1 when the command ended by a signal or without a status.
	Code int
	// Signal is the signal name without "SIG" ("KILL") when the command was killed, else "".
	Signal string
	// Stderr is the tail of the command's standard error (at most 512 bytes), for the message.
	Stderr string
}

func (e *ExitError) Error() string {
	var msg string
	switch {
	case e.Signal != "":
		msg = "killed by signal " + e.Signal
	case e.Code < 0:
		msg = "exited without a status"
	default:
		msg = fmt.Sprintf("exit status %d", e.Code)
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Unwrap returns [ErrExit].
func (e *ExitError) Unwrap() error { return ErrExit }

// tail returns at most n bytes from the end of b.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
