package ops

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// IncomingResult is the far side's answer to a live migration.
type IncomingResult struct {
	State string `json:"state"`
	IP    string `json:"ip"`
	PID   int    `json:"pid"`
	// Received is the size of the migration stream.
	Received int64 `json:"received"`
	// Resume is the time from the stream's end to the guest running
	// there (the far part of the downtime).
	Resume time.Duration `json:"resume_ns"`
	// Answered: the guest's SSH server answered (a banner) through its
	// forward there; false when the guest has no SSH forward.
	Answered bool `json:"answered"`
	// Confirm is the time from the guest running there to this answer
	// (its announcement, the SSH check): the source takes it off the
	// downtime it measures up to the answer.
	Confirm time.Duration `json:"confirm_ns"`
}

// migrateLive is Migrate for a running qemu guest with Live set: the
// disk is copied while the guest runs; the far tinyfarm starts QEMU with
// -incoming on a unix socket and feeds it its SSH session's stdin; the
// source QEMU migrates to a unix socket here whose stream tinyfarm copies
// into that session (over its own pinned-key SSH connection: no ssh
// binary, no unverified host key). Memory moves while the guest runs;
// when QEMU stops the VM for the switchover, the disk chunks that changed
// are sent and verified, then the device state goes, the far guest
// resumes and its SSH answers; only then does the source QEMU quit and
// the guest leave this host. Any failure resumes the guest here and
// removes it there, with the disk copy this migration made. (What can be
// checked before copying was, by Migrate: the name there, the shares,
// the space.)
func migrateLive(ctx context.Context, g *farm.Guest, c *ssh.Client, to Remote, o MigrateOptions, probe FarProbe, res MigrateResult, t0 time.Time) (MigrateResult, error) {
	d := g.Def
	res.Live = true
	fail := func(err error) (MigrateResult, error) {
		return res, fmt.Errorf("guest %s: live migrate to %s: %w", d.Name, to.Label(), err)
	}
	h, err := g.Handle(ctx)
	if err != nil {
		return fail(err)
	}
	src, ok1 := h.(driver.LiveSource)
	pause, ok2 := h.(driver.Suspender)
	if !ok1 || !ok2 {
		return fail(driver.Unsupported(d.Driver, "live migration", g.Farm().Why(ctx, d.Driver, "live migration", "this driver's guests cannot send their state; migrate offline (live = false)")))
	}
	// The stream gets a connection of its own: dropbear 2022.82-2024.85
	// allows one session at a time per connection (ssh.Config.MaxSessions),
	// and the disk delta runs while the stream's session is open.
	cs, err := to.Dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer cs.Close()

	// A failure from here on leaves nothing there: neither the guest nor
	// the disk copy this migration made.
	discardFar := func() {
		to.tinyfarm(context.WithoutCancel(ctx), c, nil, "migrate", "discard", "--disk", d.Name)
	}
	// Pass 1 with the guest running.
	st, err := syncChunks(ctx, c, to, d.Disk, probe.Disk, o.Chunk, nil, nil)
	if err != nil {
		discardFar()
		return fail(err)
	}
	res.PreCopySent, res.ChunksSent = st.bytesSent, st.chunksSent

	gateway := "" // not bridged: the far farm gives it what it needs
	if d.Net == "bridge" {
		// The gateway the VM has: its farm's, or the one it kept itself.
		if gateway = d.Gateway; gateway == "" {
			gateway = g.Farm().Gateway()
		}
	}
	def := farDefinition(d, probe.Disk, gateway)

	sock := filepath.Join(g.Spec().Dir, "migrate-out.sock")
	os.Remove(sock)
	lp, release, err := fsutil.SocketPath(sock)
	if err != nil {
		discardFar()
		return fail(err)
	}
	ln, err := net.Listen("unix", lp)
	release()
	if err != nil {
		discardFar()
		return fail(err)
	}
	defer os.Remove(sock)
	var lnClosed bool
	closeLn := func() {
		if !lnClosed {
			lnClosed = true
			ln.Close()
		}
	}
	defer closeLn()

	// The far side: definition line, then the migration stream.
	pr, pw := io.Pipe()
	type farOut struct {
		out []byte
		err error
		at  time.Time // its answer came
	}
	farDone := make(chan farOut, 1)
	farRuns := make(chan time.Time, 1) // the far side said the guest runs there
	go func() {
		stdin := io.MultiReader(bytes.NewReader(append(def, '\n')), pr)
		watch := func(line string) {
			if line == IncomingRunning {
				select {
				case farRuns <- time.Now():
				default:
				}
			}
		}
		out, err := to.tinyfarmWatch(ctx, cs, stdin, watch, "migrate", "incoming", "--timeout", o.Timeout.String())
		pr.CloseWithError(errors.New("the far tinyfarm ended"))
		farDone <- farOut{out, err, time.Now()}
	}()
	// The relay: the source QEMU's stream into the far session.
	type relayOut struct {
		end time.Time
		n   int64
		err error
	}
	relayDone := make(chan relayOut, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			pw.CloseWithError(err)
			relayDone <- relayOut{err: err}
			return
		}
		n, err := io.Copy(pw, conn)
		end := time.Now()
		conn.Close()
		pw.CloseWithError(err) // nil: EOF, the stream is complete
		relayDone <- relayOut{end, n, err}
	}()
	discard := func() {
		bg := context.WithoutCancel(ctx)
		pw.CloseWithError(errors.New("migration abandoned"))
		closeLn()
		<-relayDone
		<-farDone
		to.tinyfarm(bg, c, nil, "migrate", "discard", "--disk", d.Name)
	}

	var delta syncStats
	live, err := src.MigrateLive(ctx, "unix:"+fsutil.SocketArg(g.Spec().Dir, "migrate-out.sock"), func(ctx context.Context) error {
		// The VM is stopped: the disk is stable. Pass 2: the chunks
		// changed since pass 1 (its quick sums here; no far rehash, no
		// whole-disk hash in the pause), each verified there.
		var err error
		delta, err = syncChunks(ctx, c, to, d.Disk, probe.Disk, o.Chunk, &st.sums, nil)
		return err
	})
	if err != nil {
		discard()
		return fail(err)
	}
	res.Size, res.Chunks, res.BytesSent = delta.size, delta.chunks, delta.bytesSent+res.PreCopySent
	res.ChunksSent += delta.chunksSent
	res.DeltaSent, res.RAMBytes, res.QEMUDowntime = delta.bytesSent, live.RAMBytes, live.BackendDowntime
	relay := <-relayDone
	// A guest on the bridge keeps its address there: as soon as it runs
	// there, Running may switch its routes while the far side checks its
	// SSH; should the check fail, it resumes here and Back says so.
	early := false
	var far farOut
	select {
	case at := <-farRuns:
		if d.Net == "bridge" && o.Running != nil {
			er := res
			er.State, er.IP, er.Downtime = "running", strings.SplitN(d.IP, "/", 2)[0], at.Sub(live.Paused)
			o.Running(er)
			early = true
		}
		far = <-farDone
	case far = <-farDone:
	}
	resume := func() {
		pause.Resume(context.WithoutCancel(ctx))
		if early && o.Back != nil {
			o.Back()
		}
	}
	if relay.err != nil {
		resume()
		discardFar()
		return fail(fmt.Errorf("relaying the state: %w", relay.err))
	}
	if far.err != nil {
		resume()
		discardFar()
		return fail(far.err)
	}
	var ir IncomingResult
	if err := json.Unmarshal(far.out, &ir); err != nil || ir.State != "running" {
		resume()
		discardFar()
		return fail(fmt.Errorf("far incoming answered %q: %v", abbrevBytes(far.out), err))
	}
	res.StateBytes = relay.n
	// Downtime: from the VM stopping here to it running there: the
	// switchover here (disk delta, device state), the stream's way there
	// and the far side's load-and-resume. Measured here up to the far
	// answer, less the far side's own count of what it did once the
	// guest ran (its SSH check): the two hosts' clocks are never
	// compared. (A far tinyfarm that does not count: the stream's end
	// here plus its load-and-resume, which leaves out the way there.)
	res.Downtime = relay.end.Sub(live.Paused) + ir.Resume
	if ir.Confirm > 0 {
		res.Downtime = far.at.Sub(live.Paused) - ir.Confirm
	}
	res.Confirm = ir.Confirm
	res.State, res.IP = ir.State, ir.IP
	if o.Running != nil && !early {
		o.Running(res)
	}
	// It runs there: quit the source QEMU (paused; grace 0: no clean
	// shutdown, which would resume it) and forget the guest here.
	if err := h.Stop(ctx, 0); err != nil {
		return fail(fmt.Errorf("runs there, but quitting the source QEMU: %w", err))
	}
	// The image's sha256 for the result, once the guest is forgotten
	// here (as an offline move's): the disk here is what was sent (the
	// VM never ran again here).
	sum, release := diskSHA256Later(d.Disk)
	defer release()
	if err := g.Destroy(ctx, o.RemoveDisk); err != nil {
		return fail(fmt.Errorf("runs there, but removing it here: %w", err))
	}
	if err := revokeHere(ctx, g, c, to, o, probe, &res); err != nil {
		return fail(err)
	}
	if res.SHA256, err = sum(); err != nil {
		return fail(fmt.Errorf("moved, but hashing the disk it had here: %w", err))
	}
	res.Duration = time.Since(t0)
	return res, nil
}

// IncomingOptions tune Incoming.
type IncomingOptions struct {
	// Timeout bounds the load of the state and the guest's answer once
	// the stream ended. Default 60s.
	Timeout time.Duration
	// Guard, when set, is called once the guest is defined and before its
	// QEMU starts; it returns done, called when Incoming returns. The
	// tinyfarm command starts a guard process with it that discards the
	// guest if this process dies before done (StartIncomingGuard).
	Guard func() (done func(), err error)
	// Running, when set, is called as soon as the guest runs (its state
	// loaded, resumed, announced), before its SSH check. The tinyfarm
	// command prints IncomingRunning on stderr then, which the source
	// watches for.
	Running func()
}

// IncomingRunning is the line the far `migrate incoming` prints on
// stderr once the guest runs there, before it checks the guest's SSH.
const IncomingRunning = "tinyfarm: incoming: the guest runs here"

// Incoming is the far side of a live migration: it defines the guest
// (refusing a name that exists), starts its QEMU waiting for a migration
// stream on a unix socket, copies stream into it, waits for the state to
// load and the guest to run, announces it on the network (QMP
// announce-self) and waits for its SSH server to answer through its
// forward. Any failure stops that QEMU, undefines the guest and removes
// the disk copy the move made (DiscardIncoming), as the source would: a
// source killed in the middle cannot (the stream then just ends), and a
// failed live move leaves nothing there either way.
func Incoming(ctx context.Context, f *farm.Farm, d farm.Definition, stream io.Reader, o IncomingOptions) (IncomingResult, error) {
	var ir IncomingResult
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	if _, err := f.Get(d.Name); err == nil {
		return ir, fmt.Errorf("incoming %s: %w", d.Name, farm.ErrExists)
	}
	dr, err := f.Define(d, farm.ChangeOptions{})
	if err != nil {
		return ir, fmt.Errorf("incoming %s: %w", d.Name, err)
	}
	g := f.GuestOf(dr.Def)
	var h driver.Guest
	undo := func(err error) (IncomingResult, error) {
		bg := context.WithoutCancel(ctx)
		if h != nil {
			h.Stop(bg, 0)
		}
		if derr := DiscardIncoming(bg, f, d.Name, true); derr != nil {
			g.Destroy(bg, false)
		}
		return ir, fmt.Errorf("incoming %s: %w", d.Name, err)
	}
	if o.Guard != nil {
		done, err := o.Guard()
		if err != nil {
			return undo(err)
		}
		defer done()
	}
	r, ok := runnerOf(f, d.Driver).(driver.LiveTarget)
	if !ok {
		return undo(driver.Unsupported(d.Driver, "incoming live migration", "this tinyfarm has no "+d.Driver+" driver that receives one"))
	}
	if err := g.CheckMemory(ctx); err != nil {
		return undo(err)
	}
	spec := g.Spec()
	sock := filepath.Join(spec.Dir, "incoming.sock")
	if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
		return undo(err)
	}
	os.Remove(sock)
	h, err = r.StartIncoming(ctx, spec, "unix:"+fsutil.SocketArg(spec.Dir, "incoming.sock"))
	if err != nil {
		return undo(err)
	}
	defer os.Remove(sock)
	var dl net.Dialer
	dp, release, err := fsutil.SocketPath(sock)
	if err != nil {
		return undo(err)
	}
	conn, err := dl.DialContext(ctx, "unix", dp)
	release()
	if err != nil {
		return undo(err)
	}
	ir.Received, err = io.Copy(conn, stream)
	conn.Close()
	end := time.Now()
	if err != nil {
		return undo(fmt.Errorf("stream: %w", err))
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := h.WaitReady(wctx); err != nil {
		return undo(err)
	}
	// The backend runs it as soon as it is loaded (QEMU: autostart); a
	// stream of a VM that was paused leaves it paused: run it.
	pause, ok := h.(driver.Suspender)
	if !ok {
		return undo(driver.Unsupported(d.Driver, "incoming live migration", "its incoming guest cannot be resumed"))
	}
	for {
		st, err := h.Status(wctx)
		if err != nil {
			return undo(err)
		}
		if st.State == driver.Running && st.Reason == "" {
			break
		}
		if st.State != driver.Suspended {
			return undo(fmt.Errorf("guest %s after the state loaded: %s", st.State, st.Reason))
		}
		if err := pause.Resume(wctx); err != nil {
			return undo(err)
		}
	}
	running := time.Now()
	ir.Resume = running.Sub(end)
	// Gratuitous ARPs from the guest's NIC: the switches learn where it is.
	if a, ok := h.(driver.Announcer); ok {
		a.Announce(wctx)
	}
	if o.Running != nil {
		o.Running()
	}
	// Reachable here before the source lets go: an SSH handshake with the
	// guest's pinned host key (at its bridge address, or its forward),
	// else, for a guest with no pinned key, its SSH banner.
	if host, port, err := g.SSHAddr(); err == nil {
		if g.Def.HostKey != "" {
			c, err := g.SSH(wctx)
			if err != nil {
				return undo(fmt.Errorf("the guest runs but does not answer SSH at %s with its pinned host key: %w", net.JoinHostPort(host, fmt.Sprint(port)), err))
			}
			c.Close()
		} else if err := sshBanner(wctx, net.JoinHostPort(host, fmt.Sprint(port))); err != nil {
			return undo(fmt.Errorf("the guest runs but its SSH does not answer: %w", err))
		}
		ir.Answered = true
	}
	st, err := h.Status(ctx)
	if err != nil {
		return undo(err)
	}
	ir.State, ir.PID = string(st.State), st.PID
	ir.IP, _, _ = strings.Cut(g.Def.IP, "/")
	os.Remove(migratingMark(d.Disk)) // a guest's disk now
	ir.Confirm = time.Since(running)
	return ir, nil
}

// DiscardIncoming removes, on the far side, a guest a failed live
// migration left (its QEMU is killed, its definition removed) and, with
// removeDisk, the migration's disk copy (<state>/disks/NAME.img, with
// its mark: see claimDisk) unless a guest defined here uses it.
func DiscardIncoming(ctx context.Context, f *farm.Farm, name string, removeDisk bool) error {
	if !farm.ValidName(name) {
		return fmt.Errorf("discard %q: %w", name, farm.ErrInvalid)
	}
	g, err := f.Guest(ctx, name)
	switch {
	case errors.Is(err, farm.ErrNotFound):
	case err != nil:
		return fmt.Errorf("discard %s: %w", name, err)
	case g.Def.Labels["migrated_from"] == "":
		return fmt.Errorf("discard %s: not a migrated guest: %w", name, farm.ErrInvalid)
	default:
		if h, err := g.Handle(ctx); err == nil {
			h.Stop(ctx, 0)
		}
		if err := g.Destroy(ctx, false); err != nil {
			return fmt.Errorf("discard %s: %w", name, err)
		}
	}
	if !removeDisk {
		return nil
	}
	disk := filepath.Join(f.StateDir(), "disks", name+".img")
	defs, err := f.List()
	if err != nil {
		return fmt.Errorf("discard %s: %w", name, err)
	}
	for _, d := range defs {
		if d.Disk == disk {
			return nil // a guest's disk: not this migration's to remove
		}
	}
	mark := migratingMark(disk)
	if _, err := os.Stat(mark); err != nil {
		return nil // not a migration's copy (claimDisk): never removed here
	}
	if err := os.Remove(disk); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("discard %s: %w", name, err)
	}
	os.Remove(mark)
	return nil
}

// sshBanner waits until addr answers with an SSH banner.
func sshBanner(ctx context.Context, addr string) error {
	var last error
	for {
		var dl net.Dialer
		conn, err := dl.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			line, rerr := bufio.NewReader(conn).ReadString('\n')
			conn.Close()
			if strings.HasPrefix(line, "SSH-") {
				return nil
			}
			err = fmt.Errorf("%s: no SSH banner (%q): %v", addr, abbrevBytes([]byte(line)), rerr)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
