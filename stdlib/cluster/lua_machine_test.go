package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// machinePair runs a machine server on an empty farm over pipes and
// returns a client session with it.
func machinePair(t *testing.T, run func(ctx context.Context, r MachineRun, emit func(json.RawMessage)) (json.RawMessage, error)) *Machine {
	return machineOn(t, farm.New(t.TempDir(), farm.Options{}), run)
}

// machineOn is machinePair on farm fm.
func machineOn(t *testing.T, fm *farm.Farm, run func(ctx context.Context, r MachineRun, emit func(json.RawMessage)) (json.RawMessage, error)) *Machine {
	t.Helper()
	s := &MachineServer{Farm: fm, Host: "h9", Run: run}
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), sr, sw); sw.Close() }()
	m, err := NewMachine(ctxT(t), "h9", cr, cw, func() error {
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			return errors.New("server still running 5s after its input closed")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// TestMachineProtocol: the hello, a listing, errors with their far kind
// and the host's name, a run's events before its result, and calls in
// flight together answered by id.
func TestMachineProtocol(t *testing.T) {
	release := make(chan struct{})
	m := machinePair(t, func(ctx context.Context, r MachineRun, emit func(json.RawMessage)) (json.RawMessage, error) {
		if r.Name == "slow.lua" {
			<-release
		}
		if r.Name == "bad.lua" {
			return nil, lx.WithKind(errors.New("bad.lua:3: boom"), "timeout")
		}
		emit(json.RawMessage(`{"type":"task_start","task":"t1"}`))
		emit(json.RawMessage(`{"type":"change","task":"t1","change":{"module":"host","action":"write","subject":"/etc/motd","status":"changed"}}`))
		emit(json.RawMessage(`{"type":"log","msg":"vars.x=` + r.Vars["x"].(string) + `"}`))
		return json.RawMessage(`{"tasks":1,"changed":1}`), nil
	})
	ctx := ctxT(t)
	if h := m.Hello(); h.Protocol != MachineProtocol || h.Host != "h9" || h.Tinyfarm != Version {
		t.Errorf("hello %+v", h)
	}
	var list []MachineGuest
	if err := m.Call(ctx, MethodList, struct{}{}, &list, nil); err != nil || list == nil || len(list) != 0 {
		t.Fatalf("list on an empty farm: %v %v", list, err)
	}

	err := m.Call(ctx, MethodStatus, MachineGuestOp{Name: "nope"}, nil, nil)
	if lx.KindOf(err) != lx.KindNotFound || !strings.HasPrefix(err.Error(), "host h9: ") || !strings.Contains(err.Error(), "nope") {
		t.Errorf("status of a missing guest: %v (kind %s)", err, lx.KindOf(err))
	}
	err = m.Call(ctx, "frobnicate", nil, nil, nil)
	if lx.KindOf(err) != lx.KindUnsupported || !strings.Contains(err.Error(), `unknown method "frobnicate"`) {
		t.Errorf("unknown method: %v (kind %s)", err, lx.KindOf(err))
	}
	err = m.Call(ctx, MethodExec, MachineExec{Name: "x"}, nil, nil)
	if lx.KindOf(err) != lx.KindNotFound {
		t.Errorf("exec on a missing guest: %v (kind %s)", err, lx.KindOf(err))
	}
	err = m.Call(ctx, MethodDefine, MachineDefine{Options: GuestOptions{Name: "Bad Name", Disk: "/nonexistent.img", Driver: "ns"}}, nil, nil)
	if lx.KindOf(err) != lx.KindInvalid {
		t.Errorf("define with a bad name: %v (kind %s)", err, lx.KindOf(err))
	}

	// A slow run in flight does not hold up the calls after it.
	var wg sync.WaitGroup
	wg.Add(1)
	var slowErr error
	go func() {
		defer wg.Done()
		slowErr = m.Call(ctx, MethodRun, MachineRun{Name: "slow.lua", Vars: map[string]any{"x": "slow"}}, nil, nil)
	}()
	// The events and the recap are the engine's JSON, passed on as sent.
	type event struct {
		Type, Task, Msg string
		Change          *struct{ Subject string }
	}
	var events []event
	var res MachineRunResult
	if err := m.Call(ctx, MethodRun, MachineRun{Name: "site.lua", Vars: map[string]any{"x": "1"}}, &res, func(raw json.RawMessage) {
		var ev event
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Errorf("event %s: %v", raw, err)
		}
		events = append(events, ev)
	}); err != nil {
		t.Fatal(err)
	}
	close(release)
	wg.Wait()
	if slowErr != nil {
		t.Errorf("slow run: %v", slowErr)
	}
	if len(events) != 3 || events[1].Change == nil || events[1].Change.Subject != "/etc/motd" || events[2].Msg != "vars.x=1" {
		t.Errorf("run events: %+v", events)
	}
	var rec struct{ Tasks, Changed int }
	if json.Unmarshal(res.Recap, &rec); rec.Changed != 1 || rec.Tasks != 1 {
		t.Errorf("run recap: %s", res.Recap)
	}
	err = m.Call(ctx, MethodRun, MachineRun{Name: "bad.lua"}, nil, nil)
	if lx.KindOf(err) != "timeout" || err.Error() != "host h9: bad.lua:3: boom" {
		t.Errorf("failed run: %v (kind %s)", err, lx.KindOf(err))
	}
}

// TestMachineRefusesOtherProtocol: a server of another protocol version is
// refused at the hello, naming both versions; a server that says nothing
// sensible is refused too.
func TestMachineRefusesOtherProtocol(t *testing.T) {
	for _, c := range []struct{ first, want string }{
		{`{"hello":{"protocol":99,"tinyfarm":"v9.0.0"}}`, "machine protocol 99 (tinyfarm v9.0.0 there), this controller speaks 1"},
		{`Welcome to bash`, "the first line is not a hello"},
	} {
		r, w := io.Pipe()
		go func() { io.WriteString(w, c.first+"\n") }()
		_, err := NewMachine(ctxT(t), "h7", r, nopCloser{io.Discard}, func() error { return nil })
		if !errors.Is(err, ErrMachineProtocol) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "host h7") {
			t.Errorf("hello %s: %v", c.first, err)
		}
	}
}

// TestMachineServerLines: the server side as a program sees it: the
// hello first, a bad line answered with an invalid error, answers by id.
func TestMachineServerLines(t *testing.T) {
	s := &MachineServer{Farm: farm.New(t.TempDir(), farm.Options{})}
	in := strings.NewReader("not json\n\n" + `{"id":7,"method":"list"}` + "\n" + `{"id":8,"method":"run","params":{"name":"x.lua"}}` + "\n")
	var out strings.Builder
	if err := s.Serve(context.Background(), in, &out); err != nil {
		t.Fatal(err)
	}
	var reps []MachineReply
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var r MachineReply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		reps = append(reps, r)
	}
	if len(reps) != 4 || reps[0].Hello == nil || reps[0].Hello.Protocol != MachineProtocol {
		t.Fatalf("lines:\n%s", out.String())
	}
	byID := map[int64]MachineReply{}
	for _, r := range reps[1:] {
		byID[r.ID] = r
	}
	if e := byID[0].Error; e == nil || e.LuaKind != lx.KindInvalid {
		t.Errorf("bad line: %+v", byID[0])
	}
	if r := byID[7]; r.Error != nil || string(r.Result) != "[]" {
		t.Errorf("list: %+v %s", r.Error, r.Result)
	}
	if e := byID[8].Error; e == nil || e.LuaKind != lx.KindUnsupported {
		t.Errorf("run without a runner: %+v", byID[8])
	}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// TestHostRemoteRefuses: a host that published no SSH host key, or no
// SSH address, or is down, gives no Remote: never trust on first use.
func TestHostRemoteRefuses(t *testing.T) {
	up := Host{Facts: Facts{Name: "h4", SSHAddr: "10.0.0.4:22", SSHHostKey: "ssh-ed25519 AAAA", Binary: "/usr/bin/tinyfarm", StateDir: "/var/lib/tinyfarm"}, State: HostUp}
	r, err := remoteFor(up, RemoteOptions{Key: "/k", User: "ops"})
	if err != nil || r.Address != "10.0.0.4" || r.Port != 22 || r.HostKey != "ssh-ed25519 AAAA" || r.Binary != "/usr/bin/tinyfarm" || r.StateDir != "/var/lib/tinyfarm" || r.Key != "/k" || r.User != "ops" || r.Name != "h4" {
		t.Errorf("remote for an up host: %+v %v", r, err)
	}
	noKey := up
	noKey.SSHHostKey = ""
	noAddr := up
	noAddr.SSHAddr = ""
	down := up
	down.State = HostDown
	for _, c := range []struct {
		h    Host
		want string
		kind string
	}{
		{noKey, "host h4 published no SSH host key, so a controller cannot pin it (tinyfarm never trusts on first use): give its daemon one with `tinyfarm cluster join ... --ssh-host-key FILE.pub`", lx.KindInvalid},
		{noAddr, "host h4 published no SSH address", lx.KindInvalid},
		{down, "host h4 is down", "unreachable"},
	} {
		_, err := remoteFor(c.h, RemoteOptions{Key: "/k"})
		if err == nil || !strings.Contains(err.Error(), c.want) || lx.KindOf(err) != c.kind {
			t.Errorf("%+v: %v (kind %s)", c.h, err, lx.KindOf(err))
		}
	}
}

// TestMachineLineLimit: a request or answer over the line limit (lowered
// to 1 MiB here) fails its call with an error naming the limit and the
// way around it, on either side, and the session goes on.
func TestMachineLineLimit(t *testing.T) {
	lineLimit.Store(1 << 20)
	t.Cleanup(func() { lineLimit.Store(0) })
	big := strings.Repeat("x", 2<<20)
	ctx := ctxT(t)
	m := machinePair(t, func(ctx context.Context, r MachineRun, emit func(json.RawMessage)) (json.RawMessage, error) {
		return json.Marshal(map[string]string{"huge": big})
	})
	wantErr := func(what string, err error, parts ...string) {
		t.Helper()
		if lx.KindOf(err) != lx.KindInvalid {
			t.Errorf("%s: kind %s: %v", what, lx.KindOf(err), err)
		}
		for _, p := range append(parts, "a line of the machine protocol holds at most 1 MiB") {
			if err == nil || !strings.Contains(err.Error(), p) {
				t.Errorf("%s: %v, want it to say %q", what, err, p)
			}
		}
	}
	// The controller refuses to send it.
	err := m.Call(ctx, MethodWrite, MachineFile{Name: "web1", Path: "/big", Content: []byte(big)}, nil, nil)
	wantErr("a big write", err, "host h9: machine write: the request is 2.7 MiB", "write the file in parts")
	// The far side refuses to answer it.
	err = m.Call(ctx, MethodRun, MachineRun{Name: "x.lua"}, nil, nil)
	wantErr("a big recap", err, "host h9: machine run: the answer is 2.0 MiB")
	var list []MachineGuest
	if err := m.Call(ctx, MethodList, struct{}{}, &list, nil); err != nil {
		t.Fatalf("the session after: %v", err)
	}

	// A line over the limit from the other side is dropped, its call
	// answered with the error: a server given one...
	s := &MachineServer{Farm: farm.New(t.TempDir(), farm.Options{})}
	in := strings.NewReader(`{"id":5,"method":"write","params":{"name":"w","content":"` + big + `"}}` + "\n" + `{"id":6,"method":"list"}` + "\n")
	var out strings.Builder
	if err := s.Serve(ctx, in, &out); err != nil {
		t.Fatal(err)
	}
	byID := map[int64]MachineReply{}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
		var r MachineReply
		json.Unmarshal([]byte(l), &r)
		byID[r.ID] = r
	}
	if e := byID[5].Error; e == nil || !strings.Contains(e.Message, "machine write: the request is more than that; a line of the machine protocol holds at most 1 MiB: write the file in parts") {
		t.Errorf("an over-long request: %+v", byID[5])
	}
	if r := byID[6]; r.Error != nil || string(r.Result) != "[]" {
		t.Errorf("the request after it: %+v", r)
	}
	// ... and a controller given one.
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	go func() {
		br := bufio.NewReader(sr)
		fmt.Fprintf(sw, `{"hello":{"protocol":%d}}`+"\n", MachineProtocol)
		for id := 1; ; id++ {
			if _, err := br.ReadBytes('\n'); err != nil {
				sw.Close()
				return
			}
			if id == 1 {
				fmt.Fprintf(sw, `{"id":1,"result":{"content":"%s"}}`+"\n", big)
			} else {
				fmt.Fprintf(sw, `{"id":%d,"result":{"missing":true}}`+"\n", id)
			}
		}
	}()
	fm, err := NewMachine(ctx, "h8", cr, cw, func() error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer fm.Close()
	var got MachineFileContent
	err = fm.Call(ctx, MethodRead, MachineFile{Name: "w", Path: "/big"}, &got, nil)
	wantErr("an over-long answer", err, "host h8: machine read: the answer is more than that", "read it in parts")
	if err := fm.Call(ctx, MethodRead, MachineFile{Name: "w", Path: "/small"}, &got, nil); err != nil || !got.Missing {
		t.Errorf("the call after it: %+v %v", got, err)
	}
}

// TestMachineSSHAccessRefusals: the host decides whether a controller's
// key goes into a guest: not for a guest it does not have, one without a
// pinned host key, a key that is no public key, or a guest not running.
func TestMachineSSHAccessRefusals(t *testing.T) {
	dir := t.TempDir()
	fm := farm.New(dir, farm.Options{})
	disk := filepath.Join(dir, "d.img")
	os.WriteFile(disk, make([]byte, 1<<20), 0o644)
	hk, _ := ssh.GenerateHostKey()
	for _, d := range []farm.Definition{
		{Name: "nokey", Driver: "ns", Disk: disk, MemBytes: 64 << 20, DiskRO: true},
		{Name: "stopped", Driver: "ns", Disk: disk, MemBytes: 64 << 20, DiskRO: true, HostKey: hk.AuthorizedKey()},
	} {
		if _, err := fm.Define(d, farm.ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m := machineOn(t, fm, nil)
	ctx := ctxT(t)
	ctl, _ := ssh.GenerateHostKey()
	for _, c := range []struct {
		name, key, kind, msg string
	}{
		{"nope", ctl.AuthorizedKey(), lx.KindNotFound, "nope"},
		{"nokey", ctl.AuthorizedKey(), lx.KindInvalid, "guest nokey: ssh for a controller: it has no pinned SSH host key"},
		{"stopped", "command=\"sh\" not-a-key", lx.KindInvalid, "guest stopped: ssh for a controller: the controller's key"},
		{"stopped", ctl.AuthorizedKey(), lx.KindOf(farm.ErrNotRunning), "guest stopped: ssh for a controller: it is not running: start it first"},
	} {
		err := m.Call(ctx, MethodSSHAccess, MachineSSHAccess{Name: c.name, Key: c.key}, nil, nil)
		if err == nil || lx.KindOf(err) != c.kind || !strings.Contains(err.Error(), c.msg) || !strings.HasPrefix(err.Error(), "host h9: ") {
			t.Errorf("ssh_access %s: %v (kind %s), want kind %s, %q", c.name, err, lx.KindOf(err), c.kind, c.msg)
		}
	}
}
