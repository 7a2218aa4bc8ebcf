package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// farSteps is a far playbook run as the engine makes one: step 1, then a
// wait (for release, or its context), then step 2, each step announced
// by an event before its body runs, and not run once the context is done
// (as the Lua VM stops at its next instruction).
type farSteps struct {
	started, release chan struct{}
	ended            chan error // the run's context's cause, or nil
	step2            atomic.Bool
}

func newFarSteps() *farSteps {
	return &farSteps{started: make(chan struct{}), release: make(chan struct{}), ended: make(chan error, 1)}
}

func (f *farSteps) run(ctx context.Context, r MachineRun, emit func(json.RawMessage)) (json.RawMessage, error) {
	emit(json.RawMessage(`{"event":"task_start","task":"step 1"}`))
	close(f.started)
	select {
	case <-f.release:
	case <-ctx.Done():
	}
	emit(json.RawMessage(`{"event":"task_start","task":"step 2"}`))
	if ctx.Err() != nil {
		f.ended <- context.Cause(ctx)
		return nil, ctx.Err()
	}
	f.step2.Store(true)
	f.ended <- nil
	return json.RawMessage(`{"tasks":2}`), nil
}

// blackhole is the controller's side of a cut network: once cut, what
// it writes never arrives (and nothing says so).
type blackhole struct {
	io.WriteCloser
	cut atomic.Bool
}

func (b *blackhole) Write(p []byte) (int, error) {
	if b.cut.Load() {
		return len(p), nil
	}
	return b.WriteCloser.Write(p)
}

// farPair is a real Machine client and server over pipes, its ends
// reachable to break.
type farPair struct {
	m      *Machine
	cr     *io.PipeReader // the controller reads the server's output here
	cw     *blackhole     // the controller writes requests here
	served chan error
}

func newFarPair(t *testing.T, run func(context.Context, MachineRun, func(json.RawMessage)) (json.RawMessage, error)) *farPair {
	t.Helper()
	s := &MachineServer{Farm: farm.New(t.TempDir(), farm.Options{}), Host: "h9", Run: run}
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	p := &farPair{cr: cr, cw: &blackhole{WriteCloser: cw}, served: make(chan error, 1)}
	go func() { p.served <- s.Serve(context.Background(), sr, sw); sw.Close() }()
	m, err := NewMachine(ctxT(t), "h9", cr, p.cw, func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	p.m = m
	t.Cleanup(func() { m.Close(); cr.Close(); sr.Close() })
	return p
}

// TestMachineRunEndsWithController: a far playbook run ends (its context
// is cancelled, with ErrControllerGone, and it never reaches its next
// step) when its controller goes away: killed (the session's input ends
// and its output breaks) or cut off (its keepalives stop arriving), in a
// session that sent keepalives; and in any session when its output
// breaks. A batch of requests (no keepalives) still runs to its end after
// its input ends.
func TestMachineRunEndsWithController(t *testing.T) {
	const interval = 20 * time.Millisecond
	for _, tc := range []struct {
		name      string
		keepalive bool
		leave     func(p *farPair, far *farSteps)
		wantEnd   bool
	}{
		{"killed", true, func(p *farPair, far *farSteps) {
			p.cw.Close()
			p.cr.CloseWithError(errors.New("controller killed"))
		}, true},
		{"cut off", true, func(p *farPair, far *farSteps) { p.cw.cut.Store(true) }, true},
		{"output broken", false, func(p *farPair, far *farSteps) {
			p.cr.CloseWithError(errors.New("broken pipe"))
			close(far.release) // its next step writes an event
		}, true},
		{"batch input ends", false, func(p *farPair, far *farSteps) {
			p.cw.Close()
			time.Sleep(10 * interval)
			close(far.release)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			far := newFarSteps()
			p := newFarPair(t, far.run)
			if tc.keepalive {
				p.m.KeepAlive(interval, 3)
			}
			called := make(chan error, 1)
			go func() { called <- p.m.Call(context.Background(), MethodRun, MachineRun{Name: "site.lua"}, nil, nil) }()
			select {
			case <-far.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the far run did not start")
			}
			time.Sleep(5 * interval) // keepalives flow: the run is not ended for nothing
			select {
			case err := <-far.ended:
				t.Fatalf("the run ended while its controller was there: %v", err)
			default:
			}
			left := time.Now()
			tc.leave(p, far)
			var cause error
			select {
			case cause = <-far.ended:
			case <-time.After(10 * time.Second):
				close(far.release)
				<-far.ended
				t.Fatalf("the far run still went on 10s after its controller left (step 2 reached: %v)", far.step2.Load())
			}
			t.Logf("the run ended %v after its controller left: %v", time.Since(left).Round(time.Millisecond), cause)
			if !tc.wantEnd {
				if cause != nil || !far.step2.Load() {
					t.Fatalf("the batch's run did not complete: %v", cause)
				}
				if err := <-called; err != nil {
					t.Errorf("the batch's run: %v", err)
				}
			} else {
				if far.step2.Load() {
					t.Error("the run reached its next step after its controller left")
				}
				if !errors.Is(cause, ErrControllerGone) {
					t.Errorf("the run's context ended with %v, want ErrControllerGone", cause)
				}
			}
			if tc.name == "cut off" {
				return // the server still waits for its input, as over a cut network
			}
			if tc.name == "output broken" {
				p.cw.Close()
			}
			select {
			case err := <-p.served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("Serve still going 10s after its input ended")
			}
		})
	}
}

// TestMachineKeepaliveOlderServer: a far tinyfarm older than keepalives
// answers the first one as an unknown method; the controller sends no
// more and its calls go on working.
func TestMachineKeepaliveOlderServer(t *testing.T) {
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	var keepalives atomic.Int32
	go func() { // the machine server of a tinyfarm before keepalives
		defer sw.Close()
		enc := json.NewEncoder(sw)
		enc.Encode(MachineReply{Hello: &MachineHello{Protocol: MachineProtocol, Tinyfarm: "v0.9"}})
		dec := json.NewDecoder(sr)
		for {
			var req MachineRequest
			if dec.Decode(&req) != nil {
				return
			}
			if req.Method == MethodList {
				enc.Encode(MachineReply{ID: req.ID, Result: json.RawMessage("[]")})
				continue
			}
			keepalives.Add(1)
			enc.Encode(MachineReply{ID: req.ID, Error: &MachineError{LuaKind: "unsupported", Message: `machine: unknown method "` + req.Method + `"`}})
		}
	}()
	m, err := NewMachine(ctxT(t), "h9", cr, cw, func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.KeepAlive(5*time.Millisecond, 3)
	time.Sleep(100 * time.Millisecond) // 20 intervals
	if n := keepalives.Load(); n != 1 {
		t.Errorf("the controller sent %d keepalives to a server that refused the first", n)
	}
	var list []MachineGuest
	if err := m.Call(ctxT(t), MethodList, struct{}{}, &list, nil); err != nil {
		t.Errorf("list after a refused keepalive: %v", err)
	}
}
