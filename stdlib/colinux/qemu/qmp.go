package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// QMP is one connection to a QEMU Machine Protocol socket. The protocol is
// JSON objects, one per line: QEMU greets, the client negotiates with
// qmp_capabilities, then each {"execute": ...} is answered by a "return"
// or an "error" object, with asynchronous {"event": ...} objects in
// between.
//
// QEMU serves one client per QMP socket at a time, so callers should hold
// a connection only for the duration of an operation and Close it.
// A QMP is safe for use by one goroutine at a time.
type QMP struct {
	conn   net.Conn
	r      *bufio.Reader
	events []Event
	mu     sync.Mutex
	nextID int
}

// Event is an asynchronous QMP event, e.g. STOP, RESUME, SHUTDOWN.
type Event struct {
	Name      string          `json:"event"`
	Data      json.RawMessage `json:"data,omitempty"`
	Timestamp struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

// QMPError is an error answer to a QMP command.
type QMPError struct {
	Command string
	Class   string
	Desc    string
}

func (e *QMPError) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

// DialQMP connects to the QMP unix socket at path, reads the greeting and
// leaves capabilities negotiation mode. ctx bounds the whole handshake.
func DialQMP(ctx context.Context, path string) (*QMP, error) {
	var d net.Dialer
	p, release, err := fsutil.SocketPath(path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	conn, err := d.DialContext(ctx, "unix", p)
	release()
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	q := &QMP{conn: conn, r: bufio.NewReader(conn)}
	stop := q.deadline(ctx)
	defer stop()
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	line, err := q.r.ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &greeting)
	}
	if err == nil && greeting.QMP == nil {
		err = fmt.Errorf("not a QMP greeting: %.80q", line)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting %s: %w", path, ctxErr(ctx, err))
	}
	if err := q.execute(ctx, "qmp_capabilities", nil, nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

// Close ends the connection.
func (q *QMP) Close() error { return q.conn.Close() }

// Execute runs one QMP command with optional arguments (nil or anything
// that marshals to a JSON object) and decodes the "return" value into
// result when it is not nil. Events read meanwhile are kept for Event.
func (q *QMP) Execute(ctx context.Context, command string, args, result any) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	stop := q.deadline(ctx)
	defer stop()
	return q.execute(ctx, command, args, result)
}

func (q *QMP) execute(ctx context.Context, command string, args, result any) error {
	q.nextID++
	id := "tf" + strconv.Itoa(q.nextID)
	req := map[string]any{"execute": command, "id": id}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", command, ctxErr(ctx, err))
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("qmp %s: %w", command, ctxErr(ctx, err))
		}
		var msg struct {
			Event  string          `json:"event"`
			ID     string          `json:"id"`
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			return fmt.Errorf("qmp %s: bad reply %.80q: %w", command, line, err)
		}
		switch {
		case msg.Event != "":
			var ev Event
			if json.Unmarshal(line, &ev) == nil {
				q.events = append(q.events, ev)
			}
		case msg.ID != id:
			// An answer to an earlier, abandoned command: skip it.
		case msg.Error != nil:
			return &QMPError{Command: command, Class: msg.Error.Class, Desc: msg.Error.Desc}
		default:
			if result != nil && len(msg.Return) > 0 {
				if err := json.Unmarshal(msg.Return, result); err != nil {
					return fmt.Errorf("qmp %s: decode return: %w", command, err)
				}
			}
			return nil
		}
	}
}

// Event returns the next event whose name is one of names (any event when
// names is empty), including events that arrived during earlier Execute
// calls. It blocks until one arrives, the connection fails or ctx ends.
func (q *QMP) Event(ctx context.Context, names ...string) (Event, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	match := func(ev Event) bool {
		if len(names) == 0 {
			return true
		}
		for _, n := range names {
			if ev.Name == n {
				return true
			}
		}
		return false
	}
	for i, ev := range q.events {
		if match(ev) {
			q.events = append(q.events[:i:i], q.events[i+1:]...)
			return ev, nil
		}
	}
	q.events = q.events[:0]
	stop := q.deadline(ctx)
	defer stop()
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return Event{}, fmt.Errorf("qmp event: %w", ctxErr(ctx, err))
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil || ev.Name == "" {
			continue
		}
		if match(ev) {
			return ev, nil
		}
	}
}

// deadline makes blocking socket I/O end when ctx ends.
func (q *QMP) deadline(ctx context.Context) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		q.conn.SetDeadline(d)
	} else {
		q.conn.SetDeadline(time.Time{})
	}
	done := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { done() }
}

// ctxErr prefers the context's error over the I/O timeout it caused.
func ctxErr(ctx context.Context, err error) error {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return err
	}
	if _, ok := ctx.Deadline(); ok {
		// The socket deadline is ctx's deadline; its timer may fire a
		// moment before ctx's own. Report the context, not the socket.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
