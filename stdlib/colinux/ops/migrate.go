package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// MigrateOptions tune Migrate.
type MigrateOptions struct {
	// Live keeps a running qemu guest running during the move: QEMU's
	// live migration, streamed over the SSH connection (see migrateLive);
	// the guest pauses only for the switchover. A stopped guest moves
	// offline. Namespace guests cannot (an error of kind unsupported says
	// why).
	Live bool
	// Grace is how long the guest has to stop cleanly. Default 10s.
	Grace time.Duration
	// Timeout bounds the far start (ready marker). Default 60s.
	Timeout time.Duration
	// Chunk is the unit of the resumable copy. Default 1 MiB.
	Chunk int64
	// RemoveDisk removes the local disk image too once the guest runs
	// there (as destroy{disk=true}). Default: the disk stays.
	RemoveDisk bool
	// KeepKey keeps this farm's key in the guest's authorized_keys after
	// the move. Default: once the guest runs there (or is defined there,
	// moved offline), the far tinyfarm removes this farm's key from it,
	// so this host no longer logs into a guest it gave away.
	KeepKey bool
	// Running, when set, is called once the guest runs there, before it
	// is forgotten here: `cluster drain` switches the guest's routes then,
	// so cleaning up here adds nothing to what clients see.
	Running func(MigrateResult)
	// Back, when set, is called when the move fails after Running was
	// called: the guest runs here again. A live move of a guest on the
	// bridge calls Running as soon as the VM runs there, before the far
	// side's SSH check of it, so that clients wait only for the downtime;
	// should that check fail, the VM resumes here and Back says so.
	Back func()
}

// MigrateResult says what Migrate did.
type MigrateResult struct {
	Host        string        // the remote's name
	Disk        string        // the disk's path there
	Size        int64         // the disk image's size
	Chunks      int           // chunks in the image
	ChunksSent  int           // chunks sent over both passes (all-zero ones as a marker; one changed after the first pass counts twice)
	BytesSent   int64         // data bytes sent
	SHA256      string        // of the disk image (each chunk verified there by its sha256)
	Duration    time.Duration // the whole migration
	Downtime    time.Duration // from stopping the guest here to running there
	State       string        // the guest's state there ("running")
	IP          string        // its address there
	WasRunning  bool          // the guest ran here before
	KeyRevoked  bool          // this farm's key was removed from the guest there
	PreCopySent int64         // bytes sent while the guest still ran here
	// Live migration only.
	Live         bool          // moved live (QEMU migration)
	Confirm      time.Duration // the far side's check of the guest running there (its SSH handshake), after the downtime and before Running
	DeltaSent    int64         // disk bytes sent during the switchover pause
	RAMBytes     int64         // memory QEMU sent (with re-sent dirty pages)
	StateBytes   int64         // the whole migration stream's size
	QEMUDowntime time.Duration // the source QEMU's own downtime figure
	// Steps is where an offline move's time went, step by step in order
	// (the far import's own steps named "far ..."): bench/ops.sh's
	// breakdown of the downtime.
	Steps []MigrateStep
}

// MigrateStep is one step of a migration and how long it took.
type MigrateStep struct {
	Name string        `json:"name"`
	Took time.Duration `json:"took_ns"`
}

// stepClock records steps into a result: mark names the step that ends now.
type stepClock struct {
	last  time.Time
	steps *[]MigrateStep
}

// markSync marks a disk sync's parts: the far chunk sums, the send, the
// wait for the far side's answer (and what else the step took).
func (c *stepClock) markSync(name string, st syncStats) {
	now := time.Now()
	took := now.Sub(c.last)
	if st.farSums > 0 {
		*c.steps = append(*c.steps, MigrateStep{name + ": far sums", st.farSums})
	}
	*c.steps = append(*c.steps, MigrateStep{name + ": read, hash, send", st.send},
		MigrateStep{name + ": far write, fsync, verify", st.farAnswer},
		MigrateStep{name + ": rest", took - st.farSums - st.send - st.farAnswer})
	c.last = now
}

func (c *stepClock) mark(name string) {
	now := time.Now()
	*c.steps = append(*c.steps, MigrateStep{name, now.Sub(c.last)})
	c.last = now
}

// migratesLive: the guest's driver sends a running guest's state
// (driver.LiveSource) and receives one (driver.LiveTarget, on the far
// host, which runs the same tinyfarm).
func migratesLive(ctx context.Context, g *farm.Guest) bool {
	if _, ok := g.Farm().Backend(g.Def.Driver).(driver.LiveTarget); !ok {
		return false
	}
	h, err := g.Handle(ctx)
	if err != nil {
		return false
	}
	_, ok := h.(driver.LiveSource)
	return ok
}

// Migrate moves the guest to another tinyfarm host (vzmigrate), offline:
// the disk is copied while the guest still runs (a first pass), the guest
// is stopped, a second pass sends only the chunks that changed, the copy
// is verified by sha256 on both sides, the definition is written there
// and the guest started by the far tinyfarm; once it reports running
// there, it is removed here. The copy is resumable: chunks the far disk
// holds already (same sha256) are not sent again, so an interrupted
// migration re-run sends only what is missing.
//
// Any failure before the far start leaves the guest here as it was (a
// running guest is started again if it had been stopped). A far host that
// cannot be reached fails before anything is touched.
func Migrate(ctx context.Context, g *farm.Guest, to Remote, o MigrateOptions) (res MigrateResult, err error) {
	t0 := time.Now()
	d := g.Def
	res.Host = to.Label()
	clock := stepClock{t0, &res.Steps}
	fail := func(err error) (MigrateResult, error) {
		return res, fmt.Errorf("guest %s: migrate to %s: %w", d.Name, to.Label(), err)
	}
	if o.Live && !migratesLive(ctx, g) {
		return fail(driver.Unsupported(d.Driver, "live migration", g.Farm().Why(ctx, d.Driver, "live migration",
			"this driver's guests cannot send their state; migrate offline (live = false)")))
	}
	if d.Base != "" {
		return fail(driver.Unsupported(d.Driver, "migration of a layered guest", "migrate moves one whole disk; a layered guest's root is its layer plus the shared base"))
	}
	if d.Layout != driver.Scatter || d.Disk == "" || len(d.Disks) > 0 {
		return fail(driver.Unsupported(d.Driver, "migration of a "+string(d.Layout)+" guest or one with extra disks", "migrate moves one scatter disk"))
	}
	if o.Grace <= 0 {
		o.Grace = 10 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 60 * time.Second
	}
	if o.Chunk <= 0 {
		o.Chunk = 1 << 20
	}
	c, err := to.Dial(ctx)
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	clock.mark("ssh connect")
	res.WasRunning = g.Running(ctx)
	// Everything that can be checked before a byte is copied.
	if o.Live && res.WasRunning && len(d.Shares) > 0 {
		return fail(driver.Unsupported(d.Driver, "live migration of a guest with shares",
			"QEMU refuses to migrate a VM with a mounted virtio-9p share; unshare and restart the guest, or migrate offline"))
	}
	// A bridged VM moving live keeps, in its memory, its MAC and address
	// (and udhcpc its hour-long lease): it keeps them there too, an
	// address of the far farm's subnet or, as a kept one, of another
	// (farm.KeptAddressProblem says when it cannot).
	liveBridge := o.Live && res.WasRunning && d.Net == "bridge"
	args := []string{"migrate", "probe", d.Name}
	for _, s := range d.Shares {
		args = append(args, "--share", s.HostPath)
	}
	if liveBridge {
		args = append(args, "--ip", d.IP, "--mac", d.MAC)
	}
	probe, err := askProbe(ctx, c, to, args...)
	if err != nil {
		return fail(err)
	}
	clock.mark("far probe")
	pending := filepath.Join(g.Farm().GuestDir(d.Name), "migrating.json")
	if probe.Exists && probe.Importing && !res.WasRunning && importedTo(pending, to.Label()) {
		// A killed run's far import outlives its SSH session: wait for
		// it to end (below: the move is finished here), or to undo its
		// definition (the guest did not come up: the move goes on).
		if probe, err = awaitImport(ctx, c, to, args, o.Timeout); err != nil {
			return fail(err)
		}
	}
	if probe.Exists && !res.WasRunning && importedTo(pending, to.Label()) {
		// A run killed after the far side imported the guest and before
		// it was forgotten here: the move is done there, finish it here.
		res.State = "stopped"
		if probe.Running {
			res.State = "running"
		}
		if err := g.Destroy(ctx, o.RemoveDisk); err != nil {
			return fail(fmt.Errorf("runs there, but removing it here: %w", err))
		}
		os.Remove(pending)
		if err := revokeHere(ctx, g, c, to, o, probe, &res); err != nil {
			return fail(err)
		}
		res.Duration = time.Since(t0)
		return res, nil
	}
	if probe.Exists {
		return fail(fmt.Errorf("guest %s is defined there already (running: %v): destroy it there first: %w", d.Name, probe.Running, farm.ErrExists))
	}
	if probe.ForeignDisk {
		return fail(foreignDiskError(probe.Disk))
	}
	if liveBridge && probe.AddressProblem != "" {
		return fail(driver.Unsupported(d.Driver, "live migration of this bridged guest",
			fmt.Sprintf("the running VM keeps its address %s and MAC %s, which it cannot have there: %s; "+
				"free them there, or migrate offline (the guest boots there and takes an address there)",
				d.IP, d.MAC, probe.AddressProblem)))
	}
	if len(probe.MissingShares) > 0 {
		return fail(fmt.Errorf("the shares' host directories %s do not exist there: create them there, or unshare: %w",
			strings.Join(probe.MissingShares, ", "), farm.ErrInvalid))
	}
	if need := allocatedBytes(d.Disk) - probe.Have; probe.Free >= 0 && need > probe.Free {
		return fail(fmt.Errorf("the disk needs %s more there, %s is free in %s: %w",
			farm.HumanSize(need), farm.HumanSize(probe.Free), filepath.Dir(probe.Disk), farm.ErrNoSpace))
	}
	res.Disk = probe.Disk
	if err := authorizeKey(ctx, g, probe.FarmKey, res.WasRunning); err != nil {
		return fail(err)
	}
	clock.mark("authorize far key")
	if o.Live && res.WasRunning {
		return migrateLive(ctx, g, c, to, o, probe, res, t0)
	}

	// Pass 1 with the guest running: most of the disk, no downtime.
	var prev *chunkSums // what the far copy holds after it
	if res.WasRunning {
		st, err := syncChunks(ctx, c, to, d.Disk, probe.Disk, o.Chunk, nil, nil)
		if err != nil {
			return fail(err)
		}
		res.PreCopySent, res.ChunksSent, prev = st.bytesSent, st.chunksSent, &st.sums
		clock.markSync("sync pass 1 (running)", st)
	}
	args = []string{"migrate", "import", "--timeout", o.Timeout.String()}
	if !res.WasRunning {
		args = append(args, "--no-start")
	}
	// A running guest's far receiver of pass 2 and far import are started
	// before the stop, waiting for their input, so that their SSH sessions
	// and far tinyfarm starts are not part of the downtime; the import on
	// a connection of its own (dropbear 2022.82-2024.85: one session at a
	// time per connection, ssh.Config.MaxSessions). Unused, they are
	// aborted: their input ends early, nothing changes there.
	var rv, imp *farCall
	defer func() { rv.abort(); imp.abort() }()
	if res.WasRunning {
		if rv, err = openRecv(ctx, c, to, d.Disk, probe.Disk); err != nil {
			return fail(err)
		}
		c2, err := to.Dial(ctx)
		if err != nil {
			return fail(err)
		}
		defer c2.Close()
		imp = startFar(ctx, c2, to, args...)
		clock.mark("open far receiver and import")
	}
	stopped := time.Now()
	if _, err := g.Stop(ctx, o.Grace); err != nil {
		return fail(err)
	}
	clock.mark("stop")
	restart := func() {
		if res.WasRunning {
			g.Start(context.WithoutCancel(ctx))
		}
	}
	// Pass 2 with the guest stopped: what changed since pass 1 (found by
	// its quick sums here, no far rehash), verified there.
	st, err := syncChunks(ctx, c, to, d.Disk, probe.Disk, o.Chunk, prev, rv)
	if err != nil {
		restart()
		return fail(err)
	}
	res.Size, res.Chunks, res.BytesSent = st.size, st.chunks, st.bytesSent+res.PreCopySent
	res.ChunksSent += st.chunksSent
	clock.markSync("sync pass 2 (stopped)", st)

	def := farDefinition(d, probe.Disk, "")
	// Recorded before the import: a run killed after it and before the
	// guest is forgotten here lets the rerun finish the move (above).
	if err := fsutil.WriteJSONAtomic(pending, map[string]string{"to": to.Label()}, 0o600); err != nil {
		restart()
		return fail(err)
	}
	clock.mark("record the import")
	var out []byte
	if imp != nil {
		out, err = imp.send(def)
	} else {
		out, err = to.tinyfarm(ctx, c, bytes.NewReader(def), args...)
	}
	if err != nil {
		os.Remove(pending)
		restart()
		return fail(err)
	}
	var far struct {
		State string        `json:"state"`
		IP    string        `json:"ip"`
		Steps []MigrateStep `json:"steps"`
	}
	if err := json.Unmarshal(out, &far); err != nil {
		os.Remove(pending)
		restart()
		return fail(fmt.Errorf("far import answered %q: %v", abbrevBytes(out), err))
	}
	want := "stopped"
	if res.WasRunning {
		want = "running"
	}
	if far.State != want {
		os.Remove(pending)
		restart()
		return fail(fmt.Errorf("the guest is %s there, want %s", far.State, want))
	}
	clock.mark("far import")
	for _, s := range far.Steps {
		res.Steps = append(res.Steps, MigrateStep{"far " + s.Name, s.Took})
	}
	res.State, res.IP = far.State, far.IP
	res.Downtime = time.Since(stopped)
	if o.Running != nil {
		o.Running(res)
		clock.mark("running callback (route switch)")
	}
	// The image's sha256 for the result is taken once the guest is
	// forgotten here: out of the downtime, and out of the window in which
	// it is defined here and there (a kill in it leaves the rerun to
	// finish the move from the record). The disk here is what was sent
	// (the guest is stopped), each chunk verified; held open now, as the
	// destroy moves or removes it.
	sum, release := diskSHA256Later(d.Disk)
	defer release()
	// Only now: it runs there; forget it here.
	if err := g.Destroy(ctx, o.RemoveDisk); err != nil {
		return fail(fmt.Errorf("runs there, but removing it here: %w", err))
	}
	clock.mark("destroy here")
	os.Remove(pending)
	if err := revokeHere(ctx, g, c, to, o, probe, &res); err != nil {
		return fail(err)
	}
	clock.mark("revoke key")
	if res.SHA256, err = sum(); err != nil {
		return fail(fmt.Errorf("moved, but hashing the disk it had here: %w", err))
	}
	clock.mark("sha256 here")
	res.Duration = time.Since(t0)
	return res, nil
}

// importedTo says whether the migration record at path (written before a
// far import) names host: this guest's import there was started.
func importedTo(path, host string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var r map[string]string
	return json.Unmarshal(b, &r) == nil && r["to"] == host
}
