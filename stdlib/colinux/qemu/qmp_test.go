package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQMP serves one QMP client the way QEMU does: a greeting, then one
// reply per command, with events interleaved.
func fakeQMP(t *testing.T, handle func(cmd string, args json.RawMessage) []string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`)
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			var req struct {
				Execute   string          `json:"execute"`
				Arguments json.RawMessage `json:"arguments"`
				ID        string          `json:"id"`
			}
			json.Unmarshal(line, &req)
			for _, out := range handle(req.Execute, req.Arguments) {
				fmt.Fprintln(c, strings.ReplaceAll(out, "ID", req.ID))
			}
		}
	}()
	return sock
}

func TestQMPClient(t *testing.T) {
	sock := fakeQMP(t, func(cmd string, args json.RawMessage) []string {
		switch cmd {
		case "qmp_capabilities":
			return []string{`{"return": {}, "id": "ID"}`}
		case "query-status":
			return []string{
				`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "RESUME"}`,
				`{"return": {"status": "running", "running": true}, "id": "ID"}`,
			}
		case "stop":
			return []string{
				`{"return": {}, "id": "stale"}`, // an answer to an abandoned command
				`{"return": {}, "id": "ID"}`,
				`{"timestamp": {"seconds": 3, "microseconds": 4}, "event": "STOP"}`,
			}
		case "migrate":
			return []string{fmt.Sprintf(`{"error": {"class": "GenericError", "desc": "bad uri %s"}, "id": "ID"}`, strings.ReplaceAll(string(args), `"`, `'`))}
		}
		return []string{`{"error": {"class": "CommandNotFound", "desc": "The command ` + cmd + ` has not been found"}, "id": "ID"}`}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	q, err := DialQMP(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	var st struct{ Status string }
	if err := q.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != "running" {
		t.Fatalf("query-status: %+v, %v", st, err)
	}
	if err := q.Execute(ctx, "stop", nil, nil); err != nil {
		t.Fatal(err)
	}
	// RESUME arrived during query-status and is kept for Event.
	ev, err := q.Event(ctx, "RESUME")
	if err != nil || ev.Name != "RESUME" || ev.Timestamp.Seconds != 1 {
		t.Fatalf("event: %+v, %v", ev, err)
	}
	ev, err = q.Event(ctx, "STOP")
	if err != nil || ev.Timestamp.Microseconds != 4 {
		t.Fatalf("STOP event: %+v, %v", ev, err)
	}
	err = q.Execute(ctx, "migrate", map[string]string{"uri": "exec:false"}, nil)
	var qe *QMPError
	if !errors.As(err, &qe) || qe.Class != "GenericError" || !strings.Contains(qe.Desc, "exec:false") {
		t.Fatalf("migrate error: %v", err)
	}
	// Waiting for an event that never comes ends with the context.
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if _, err := q.Event(short, "SHUTDOWN"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Event without SHUTDOWN: %v", err)
	}
}

func TestQMPNotQMP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			fmt.Fprintln(c, `{"hello": 1}`)
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	if _, err := DialQMP(context.Background(), sock); err == nil || !strings.Contains(err.Error(), "not a QMP greeting") {
		t.Errorf("err = %v", err)
	}
	if _, err := DialQMP(context.Background(), filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("dial of a missing socket succeeded")
	}
}
