package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// MachineServer answers the machine protocol on one host with its farm
// (the colinux Go API) and, for `run`, its engine.
type MachineServer struct {
	// Farm is this host's farm. Required.
	Farm *farm.Farm
	// Host names this host in the hello. Default: none.
	Host string
	// Run runs a playbook, sending its events to emit as they happen.
	// Default: `run` fails as unsupported.
	// Events and the recap are the engine's, as JSON: this package does
	// not bind Lua.
	Run func(ctx context.Context, r MachineRun, emit func(json.RawMessage)) (json.RawMessage, error)
}

// MaxMachineLine bounds one line of the machine protocol either way (a
// playbook or a file written, base64 in JSON; a file read). A longer
// request is refused by the controller before it is sent; a longer line
// that arrives anyway is dropped and its call fails, naming the limit and
// the way around it; the session goes on.
const MaxMachineLine = 64 << 20

// Serve writes the hello, then answers requests from in until it ends
// (the controller closed the session) or ctx is done; requests run
// concurrently and Serve returns once all have answered.
//
// Playbook runs also end when the controller is gone (MachineKeepalive):
// when an answer cannot be written (nobody reads them), and, in a session
// that sent keepalives, when none came for their count of intervals or the
// input ends. Single guest operations complete: a start half done is worse.
func (s *MachineServer) Serve(ctx context.Context, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runCtx, hangup := context.WithCancelCause(ctx)
	defer hangup(nil)
	life := &lifeline{hangup: hangup}
	defer life.stop()
	var mu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(r MachineReply) {
		mu.Lock()
		err := enc.Encode(r)
		mu.Unlock()
		if err != nil {
			// A broken output (EPIPE): nobody reads the runs' events.
			hangup(fmt.Errorf("%w: its end of the session is closed (%v)", ErrControllerGone, err))
		}
	}
	send(MachineReply{Hello: &MachineHello{Protocol: MachineProtocol, Tinyfarm: Version, Host: s.Host}})
	var wg sync.WaitGroup
	br := bufio.NewReaderSize(in, 64<<10)
	var err error
	for {
		var line []byte
		var dropped *MachineReply
		line, dropped, err = nextMachineLine(br, "request", nil)
		if err != nil {
			break
		}
		life.seen()
		if dropped != nil {
			send(*dropped) // answered by its id: the session goes on
			continue
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var req MachineRequest
		if err := json.Unmarshal(line, &req); err != nil {
			send(MachineReply{Error: &MachineError{LuaKind: lx.KindInvalid, Message: fmt.Sprintf("machine: a request is one JSON object a line: %v", err)}})
			continue
		}
		if req.Method == MethodKeepalive {
			// Armed here, in order: the next line already counts.
			if err := life.arm(req); err != nil {
				send(MachineReply{ID: req.ID, Error: &MachineError{LuaKind: lx.KindOf(err), Message: err.Error()}})
			} else {
				send(MachineReply{ID: req.ID, Result: json.RawMessage("{}")})
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			emit := func(ev json.RawMessage) { send(MachineReply{ID: req.ID, Event: ev}) }
			rctx := ctx
			if req.Method == MethodRun {
				rctx = runCtx
			}
			res, err := s.handle(rctx, req, emit)
			if err != nil {
				send(MachineReply{ID: req.ID, Error: &MachineError{LuaKind: lx.KindOf(err), Message: err.Error()}})
				return
			}
			b, err := json.Marshal(res)
			if err == nil {
				err = checkLineSize("answer", req.Method, b)
			}
			if err != nil {
				send(MachineReply{ID: req.ID, Error: &MachineError{LuaKind: lx.KindOf(err), Message: err.Error()}})
				return
			}
			send(MachineReply{ID: req.ID, Result: b})
		}()
	}
	if errors.Is(err, io.EOF) {
		// The input ended: a batch of requests lets its runs finish; a
		// controller that sent keepalives is gone (killed, or it gave
		// up its calls), so its runs end. Guest operations finish (a
		// start half done is worse than one that completes).
		if life.armed() {
			hangup(fmt.Errorf("%w: its end of the session closed", ErrControllerGone))
		}
		wg.Wait()
		return nil
	}
	cancel()
	wg.Wait()
	return fmt.Errorf("machine: read requests: %w", err)
}

func decode[T any](req MachineRequest) (T, error) {
	var v T
	if len(req.Params) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(req.Params, &v); err != nil {
		return v, fmt.Errorf("machine %s: params: %v: %w", req.Method, err, ErrInvalid)
	}
	return v, nil
}

func (s *MachineServer) guest(ctx context.Context, name string) (*farm.Guest, error) {
	if name == "" {
		return nil, fmt.Errorf("machine: want a guest name: %w", ErrInvalid)
	}
	return s.Farm.Guest(ctx, name)
}

func (s *MachineServer) handle(ctx context.Context, req MachineRequest, emit func(json.RawMessage)) (any, error) {
	switch req.Method {
	case MethodDefine:
		p, err := decode[MachineDefine](req)
		if err != nil {
			return nil, err
		}
		return s.define(ctx, p)
	case MethodStart, MethodStop, MethodStatus, MethodWaitReady:
		p, err := decode[MachineGuestOp](req)
		if err != nil {
			return nil, err
		}
		g, err := s.guest(ctx, p.Name)
		if err != nil && p.Check && errors.Is(err, fs.ErrNotExist) && req.Method != MethodStatus {
			// Check mode: the same run would have defined it (a define
			// in check mode keeps nothing), so a start would change it.
			return MachineChanged{Changed: req.Method == MethodStart}, nil
		}
		if err != nil {
			return nil, err
		}
		return s.guestOp(ctx, req.Method, g, p)
	case MethodExec:
		p, err := decode[MachineExec](req)
		if err != nil {
			return nil, err
		}
		g, err := s.guest(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		argv := p.Argv
		if len(argv) == 0 {
			return nil, fmt.Errorf("machine exec %s: want a command: %w", p.Name, ErrInvalid)
		}
		// A driver that enters the guest runs commands as its root; over
		// SSH they run as the guest's user, so root goes through sudo
		// there, as the guest's own target does.
		if p.Root && !g.ExecsAsRoot(ctx) {
			argv = append([]string{"sudo", "-n"}, argv...)
		}
		o := driver.ExecOptions{Timeout: p.Timeout}
		if p.Stdin != nil {
			o.Stdin = strings.NewReader(string(p.Stdin))
		}
		r, err := g.Exec(ctx, argv, o)
		if err != nil {
			return nil, err
		}
		return MachineExecResult{Code: r.Code, Stdout: r.Stdout, Stderr: r.Stderr}, nil
	case MethodRead:
		p, err := decode[MachineFile](req)
		if err != nil {
			return nil, err
		}
		g, err := s.guest(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		t, err := g.Target(ctx)
		if err != nil {
			return nil, err
		}
		b, err := target.ReadFile(ctx, t, p.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return MachineFileContent{Missing: true}, nil
		}
		if err != nil {
			return nil, err
		}
		return MachineFileContent{Content: b}, nil
	case MethodWrite:
		p, err := decode[MachineFile](req)
		if err != nil {
			return nil, err
		}
		g, err := s.guest(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		mode := fs.FileMode(p.Mode)
		if mode == 0 {
			mode = 0o644
		}
		r, err := g.WriteFile(ctx, p.Path, p.Content, mode, p.UID, p.GID, p.Check)
		if err != nil {
			return nil, err
		}
		return MachineWritten{Changed: r.Changed, Diff: r.Diff, Detail: r.Detail}, nil
	case MethodList:
		defs, err := s.Farm.List()
		if err != nil {
			return nil, err
		}
		out := []MachineGuest{}
		for _, d := range defs {
			g, err := s.Farm.Guest(ctx, d.Name)
			if err != nil {
				return nil, err
			}
			st, _ := g.Status(ctx)
			mg := machineGuest(d)
			mg.State, mg.Reason = string(st.State), st.Reason
			out = append(out, mg)
		}
		return out, nil
	case MethodRun:
		p, err := decode[MachineRun](req)
		if err != nil {
			return nil, err
		}
		if s.Run == nil {
			return nil, fmt.Errorf("machine run %s: this server runs no playbooks: %w", p.Name, errors.ErrUnsupported)
		}
		rec, err := s.Run(ctx, p, emit)
		if err != nil {
			return nil, err
		}
		return MachineRunResult{Recap: rec}, nil
	case MethodSSHAccess:
		p, err := decode[MachineSSHAccess](req)
		if err != nil {
			return nil, err
		}
		g, err := s.guest(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		return s.sshAccess(ctx, g, p)
	case "":
		return nil, fmt.Errorf("machine: request %d names no method: %w", req.ID, ErrInvalid)
	}
	return nil, fmt.Errorf("machine: unknown method %q (this host speaks protocol %d, tinyfarm %s): %w", req.Method, MachineProtocol, Version, errors.ErrUnsupported)
}

func machineGuest(d *farm.Definition) MachineGuest {
	ip, _, _ := strings.Cut(d.IP, "/")
	return MachineGuest{Name: d.Name, Driver: d.Driver, IP: ip, Mem: d.MemBytes, HostKey: d.HostKey}
}

func (s *MachineServer) define(ctx context.Context, p MachineDefine) (MachineDefined, error) {
	d := p.Options.Definition()
	s.Farm.FillDefaults(&d, p.Options.UserNS)
	if s.Farm.NeedsRelease(&d) {
		// The release's boot files come from a tcz mirror, which the far
		// host's own playbooks configure: a remote define names them.
		return MachineDefined{}, fmt.Errorf("guest %s: a remote guest names its disk (or base) and, if frugal, its core and kernel: paths on its host: %w", d.Name, ErrInvalid)
	}
	res, err := s.Farm.DefineLive(ctx, d, farm.ChangeOptions{Check: p.Check})
	if err != nil {
		return MachineDefined{}, err
	}
	out := MachineDefined{Changed: res.Changed, Diff: res.Diff, Guest: machineGuest(res.Def)}
	var notes []string
	if res.Created {
		notes = append(notes, "defined")
	}
	if len(res.Live) > 0 {
		notes = append(notes, "applied live: "+strings.Join(res.Live, ", "))
	}
	if len(res.RestartNeeded) > 0 {
		notes = append(notes, "restart needed: "+strings.Join(res.RestartNeeded, ", "))
	}
	out.Detail = strings.Join(notes, "; ")
	return out, nil
}

func (s *MachineServer) guestOp(ctx context.Context, method string, g *farm.Guest, p MachineGuestOp) (any, error) {
	switch method {
	case MethodStart:
		if p.Check {
			return MachineChanged{Changed: !g.Running(ctx)}, nil
		}
		changed, err := g.Start(ctx)
		return MachineChanged{Changed: changed}, err
	case MethodStop:
		if p.Check {
			return MachineChanged{Changed: g.Running(ctx)}, nil
		}
		grace := p.Grace
		if grace <= 0 {
			grace = 10 * time.Second
		}
		changed, err := g.Stop(ctx, grace)
		return MachineChanged{Changed: changed}, err
	case MethodWaitReady:
		if p.Check && !g.Running(ctx) {
			return MachineChanged{}, nil
		}
		wait := p.Wait
		if wait <= 0 {
			wait = 60 * time.Second
		}
		return MachineChanged{}, g.WaitReady(ctx, wait)
	}
	st, err := g.Status(ctx)
	if err != nil {
		return nil, err
	}
	ip, _, _ := strings.Cut(g.Def.IP, "/")
	return MachineStatus{State: string(st.State), Reason: st.Reason, PID: st.PID, IP: ip, Driver: g.Def.Driver,
		Isolation: st.Isolation, Disk: g.Def.Disk, Autostart: g.Def.Autostart,
		RestartNeeded: append([]string{}, g.RestartNeeded(ctx)...), OOMKills: st.OOMKills}, nil
}

// sshAccess is this host's answer to a controller's g:ssh(): the host,
// not the controller, decides. It refuses a guest with no pinned host key
// (nobody could tell it from an impostor), one that does not run, a key
// that is not a plain public key (the line is written here: no options
// come from the controller); else it says how to reach the guest and, with
// p.Authorize, adds the key to the guest's SSH user's authorized_keys,
// marked GuestSSHComment, once.
func (s *MachineServer) sshAccess(ctx context.Context, g *farm.Guest, p MachineSSHAccess) (MachineSSHAccessResult, error) {
	fail := func(err error) (MachineSSHAccessResult, error) {
		return MachineSSHAccessResult{}, fmt.Errorf("guest %s: ssh for a controller: %w", g.Def.Name, err)
	}
	if g.Def.HostKey == "" {
		return fail(fmt.Errorf("it has no pinned SSH host key, so no controller could tell it from an impostor (build its disk with image.build, or set host_key): %w", ErrInvalid))
	}
	if _, err := ssh.ParsePublicKeys(g.Def.HostKey); err != nil {
		return fail(fmt.Errorf("its host_key: %v: %w", err, ErrInvalid))
	}
	pub, err := ssh.ParsePublicKey(p.Key)
	if err != nil {
		return fail(fmt.Errorf("the controller's key: %v: %w", err, ErrInvalid))
	}
	if !g.Running(ctx) {
		return fail(fmt.Errorf("it is not running: start it first (g:start(), g:wait_ready()): %w", farm.ErrNotRunning))
	}
	host, port, err := g.SSHAddr()
	if err != nil {
		return fail(err)
	}
	res := MachineSSHAccessResult{Addr: net.JoinHostPort(host, strconv.Itoa(port)), User: g.User(), HostKeys: g.Def.HostKey,
		Authorized: true, File: g.AuthorizedKeysFile()}
	if !p.Authorize {
		return res, nil
	}
	if own, err := ssh.EnsureFarmKey(s.Farm.StateDir()); err == nil && bytes.Equal(own.PublicKey().Marshal(), pub.Marshal()) {
		return res, nil // this host's own farm key: the guest has it
	}
	res.Changed, err = g.AuthorizeKey(ctx, p.Key, GuestSSHComment, p.Check)
	if err != nil {
		return fail(err)
	}
	res.Authorized = !(p.Check && res.Changed)
	return res, nil
}
