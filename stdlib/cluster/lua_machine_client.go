package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// Machine is a controller's session with one host's `tinyfarm machine`:
// requests go out as lines, answers come back by id, so several calls
// (parallel() workers) share the one session.
type Machine struct {
	host  string
	hello MachineHello
	w     io.WriteCloser
	close func() error
	// via is the SSH connection the session runs on (nil for a session
	// over other pipes), key the private key file it logged in with: a
	// guest of the host is reached through them (g:ssh()).
	via *ssh.Client
	key string

	mu      sync.Mutex
	nextID  int64
	calls   map[int64]*machineCall
	err     error // the session ended: every later call fails with it
	writeMu sync.Mutex
	// keepStop ends KeepAlive's sends (nil: none).
	keepStop chan struct{}
	closed   bool
}

type machineCall struct {
	method string
	events func(json.RawMessage)
	done   chan MachineReply
}

// method is the method of call id in flight, for messages.
func (m *Machine) method(id int64) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.calls[id]; c != nil {
		return c.method
	}
	return ""
}

// NewMachine starts a session over a server's output r and input w: it
// reads the hello and refuses a server of another protocol version. close
// ends the transport (called by Close). host names the far host in errors.
func NewMachine(ctx context.Context, host string, r io.Reader, w io.WriteCloser, close func() error) (*Machine, error) {
	m := &Machine{host: host, w: w, close: close, calls: map[int64]*machineCall{}}
	br := bufio.NewReaderSize(r, 64<<10)
	hello := make(chan error, 1)
	go func() {
		line, err := br.ReadBytes('\n')
		if err != nil {
			hello <- fmt.Errorf("host %s: machine mode: no hello (is tinyfarm there new enough to have `tinyfarm machine`?): %w", host, err)
			return
		}
		var rep MachineReply
		if err := json.Unmarshal(line, &rep); err != nil || rep.Hello == nil {
			hello <- fmt.Errorf("host %s: machine mode: the first line is not a hello: %.200q: %w", host, line, ErrMachineProtocol)
			return
		}
		m.hello = *rep.Hello
		if rep.Hello.Protocol != MachineProtocol {
			hello <- fmt.Errorf("host %s: machine protocol %d (tinyfarm %s there), this controller speaks %d (tinyfarm %s): run the same tinyfarm version on both: %w",
				host, rep.Hello.Protocol, rep.Hello.Tinyfarm, MachineProtocol, Version, ErrMachineProtocol)
			return
		}
		hello <- nil
		m.read(br)
	}()
	select {
	case err := <-hello:
		if err != nil {
			close()
			return nil, err
		}
	case <-ctx.Done():
		close()
		return nil, fmt.Errorf("host %s: machine mode hello: %w", host, ctx.Err())
	}
	return m, nil
}

// Hello is what the server said about itself.
func (m *Machine) Hello() MachineHello { return m.hello }

// read dispatches the server's lines to their calls until the session ends.
func (m *Machine) read(br *bufio.Reader) {
	var err error
	for {
		var line []byte
		var dropped *MachineReply
		line, dropped, err = nextMachineLine(br, "answer", m.method)
		if err != nil {
			break
		}
		var rep MachineReply
		if dropped != nil {
			rep = *dropped // its call fails, the session goes on
		} else if err := json.Unmarshal(line, &rep); err != nil {
			continue // not ours to understand; a later id-less error names it
		}
		m.mu.Lock()
		c := m.calls[rep.ID]
		if c != nil && len(rep.Event) == 0 {
			delete(m.calls, rep.ID)
		}
		m.mu.Unlock()
		if c == nil {
			continue
		}
		if len(rep.Event) != 0 {
			if c.events != nil {
				c.events(rep.Event)
			}
			continue
		}
		c.done <- rep
	}
	m.fail(fmt.Errorf("host %s: machine session ended: %w", m.host, err))
}

func (m *Machine) fail(err error) {
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	calls := m.calls
	m.calls = map[int64]*machineCall{}
	m.mu.Unlock()
	for _, c := range calls {
		c.done <- MachineReply{Error: &MachineError{Message: err.Error()}}
	}
}

// Call sends one request and waits for its answer, decoding the result
// into out (if not nil) and handing events (a run's) to events as they
// arrive. A far error comes back with its far kind (lx.Kinder) and the
// host's name in front.
func (m *Machine) Call(ctx context.Context, method string, params, out any, events func(json.RawMessage)) error {
	b, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("host %s: machine %s: %w", m.host, method, err)
	}
	if err := checkLineSize("request", method, b); err != nil {
		return fmt.Errorf("host %s: %w", m.host, err)
	}
	c := &machineCall{method: method, events: events, done: make(chan MachineReply, 1)}
	m.mu.Lock()
	if m.err != nil {
		err := m.err
		m.mu.Unlock()
		return err
	}
	m.nextID++
	id := m.nextID
	m.calls[id] = c
	m.mu.Unlock()
	line, _ := json.Marshal(MachineRequest{ID: id, Method: method, Params: b})
	m.writeMu.Lock()
	_, err = m.w.Write(append(line, '\n'))
	m.writeMu.Unlock()
	if err != nil {
		m.fail(fmt.Errorf("host %s: machine session: %w", m.host, err))
	}
	select {
	case rep := <-c.done:
		if rep.Error != nil {
			return &hostError{host: m.host, err: rep.Error}
		}
		if out != nil {
			if err := json.Unmarshal(rep.Result, out); err != nil {
				return fmt.Errorf("host %s: machine %s: result: %v: %w", m.host, method, err, ErrMachineProtocol)
			}
		}
		return nil
	case <-ctx.Done():
		// The far call goes on; its answer is dropped when it comes.
		return fmt.Errorf("host %s: machine %s: %w", m.host, method, ctx.Err())
	}
}

// hostError is a far error with the host in front, keeping its kind.
type hostError struct {
	host string
	err  *MachineError
}

func (e *hostError) Error() string { return "host " + e.host + ": " + e.err.Message }
func (e *hostError) Unwrap() error { return e.err }
func (e *hostError) Kind() string  { return e.err.Kind() }

// Close ends the session: the far tinyfarm finishes what runs and exits;
// with KeepAlive, playbook runs still going end there (this controller no
// longer waits for them).
func (m *Machine) Close() error {
	m.mu.Lock()
	if m.keepStop != nil && !m.closed {
		close(m.keepStop)
	}
	m.closed = true
	m.mu.Unlock()
	m.w.Close()
	return m.close()
}

// DialMachine reaches host r over SSH (its pinned host key: never trust
// on first use) and starts `tinyfarm machine` there.
func DialMachine(ctx context.Context, r ops.Remote) (*Machine, error) {
	name := r.Name
	if name == "" {
		name = r.Address
	}
	c, err := r.Dial(ctx)
	if err != nil {
		return nil, err
	}
	bin := r.Binary
	if bin == "" {
		bin = "tinyfarm"
	}
	env := map[string]string{}
	if r.StateDir != "" {
		env["TINYFARM_HOME"] = r.StateDir
	}
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	var stderr limitedBuffer
	sctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		res, err := c.RunStream(sctx, ssh.ShellJoin(bin, "machine"), inR, ssh.RunOptions{Env: env, IgnoreExit: true, Stdout: outW, Stderr: &stderr})
		if err == nil && res.Code != 0 {
			err = fmt.Errorf("%s machine: exit %d: %s", bin, res.Code, stderr.String())
		}
		outW.CloseWithError(err)
		ended <- err
	}()
	closeAll := func() error {
		inW.Close()
		var err error
		select {
		case err = <-ended:
		case <-time.After(10 * time.Second):
			cancel()
			err = <-ended
		}
		cancel()
		c.Close()
		return err
	}
	m, err := NewMachine(ctx, name, outR, inW, closeAll)
	if err != nil && stderr.String() != "" {
		return nil, fmt.Errorf("%w (its stderr: %s)", err, stderr.String())
	}
	if err != nil {
		return nil, err
	}
	m.via, m.key = c, r.Key
	m.KeepAlive(DefaultKeepaliveInterval, DefaultKeepaliveCount)
	return m, nil
}

// limitedBuffer keeps the first 4 KiB of a far stderr, for messages.
type limitedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := 4096 - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
