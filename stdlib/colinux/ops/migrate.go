package ops

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// Remote is another tinyfarm host, an inventory entry: reached over SSH,
// where tinyfarm runs too (DESIGN.md, "Outgrowing one host": no cluster
// protocol, the far tinyfarm is driven over the SSH channel).
type Remote struct {
	Name    string // for messages; default Address
	Address string // host name or IP address. Required
	Port    int    // default 22
	User    string // default "root"
	Key     string // private key file (OpenSSH/PEM, unencrypted). Required
	HostKey string // the host's pinned public key, authorized_keys format. Required
	// StateDir is the far tinyfarm's state directory (its TINYFARM_HOME).
	// Default: the far tinyfarm's own default.
	StateDir string
	// Binary is the path of the tinyfarm binary there. Default "tinyfarm".
	Binary string
	// Timeout bounds the connection attempt. Default 10s.
	Timeout time.Duration
}

// Label names the remote host in messages: its name, else its address.
func (r Remote) Label() string {
	if r.Name != "" {
		return r.Name
	}
	return r.Address
}

// Dial connects to the remote host.
func (r Remote) Dial(ctx context.Context) (*ssh.Client, error) {
	if r.Address == "" || r.Key == "" || r.HostKey == "" {
		return nil, fmt.Errorf("host %s: want address, key and host_key: %w", r.Label(), farm.ErrInvalid)
	}
	pubs, err := ssh.ParsePublicKeys(r.HostKey)
	if err != nil {
		return nil, fmt.Errorf("host %s: host_key: %w", r.Label(), err)
	}
	if r.User == "" {
		r.User = "root"
	}
	if r.Timeout <= 0 {
		r.Timeout = 10 * time.Second
	}
	c, err := ssh.Dial(ctx, ssh.Config{Host: r.Address, Port: r.Port, User: r.User, KeyPath: r.Key, HostKeys: pubs, Timeout: r.Timeout, Retries: 1})
	if err != nil {
		return nil, fmt.Errorf("host %s: %w", r.Label(), err)
	}
	return c, nil
}

// tinyfarm runs the far tinyfarm with args over c.
func (r Remote) tinyfarm(ctx context.Context, c *ssh.Client, stdin io.Reader, args ...string) ([]byte, error) {
	bin := r.Binary
	if bin == "" {
		bin = "tinyfarm"
	}
	env := map[string]string{}
	if r.StateDir != "" {
		env["TINYFARM_HOME"] = r.StateDir
	}
	cmd := ssh.ShellJoin(append([]string{bin}, args...)...)
	res, err := c.RunStream(ctx, cmd, stdin, ssh.RunOptions{Env: env, IgnoreExit: true})
	if err != nil {
		return nil, fmt.Errorf("host %s: %s: %w", r.Label(), cmd, err)
	}
	if res.Code != 0 {
		msg := strings.TrimSpace(string(res.Stderr))
		if len(msg) > 600 {
			msg = "…" + msg[len(msg)-600:]
		}
		return res.Stdout, fmt.Errorf("host %s: %s: exit %d: %s", r.Label(), cmd, res.Code, msg)
	}
	return res.Stdout, nil
}

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
}

// MigrateResult says what Migrate did.
type MigrateResult struct {
	Host        string        // the remote's name
	Disk        string        // the disk's path there
	Size        int64         // the disk image's size
	Chunks      int           // chunks in the image
	ChunksSent  int           // chunks sent over both passes (all-zero ones as a marker; one changed after the first pass counts twice)
	BytesSent   int64         // data bytes sent
	SHA256      string        // of the disk image, equal on both sides
	Duration    time.Duration // the whole migration
	Downtime    time.Duration // from stopping the guest here to running there
	State       string        // the guest's state there ("running")
	IP          string        // its address there
	WasRunning  bool          // the guest ran here before
	KeyRevoked  bool          // this farm's key was removed from the guest there
	PreCopySent int64         // bytes sent while the guest still ran here
	// Live migration only.
	Live         bool          // moved live (QEMU migration)
	DeltaSent    int64         // disk bytes sent during the switchover pause
	RAMBytes     int64         // memory QEMU sent (with re-sent dirty pages)
	StateBytes   int64         // the whole migration stream's size
	QEMUDowntime time.Duration // the source QEMU's own downtime figure
}

// FarProbe is what the far side reports before a migration.
type FarProbe struct {
	Disk    string `json:"disk"`    // where the disk goes
	Exists  bool   `json:"exists"`  // a guest of that name is defined there
	Running bool   `json:"running"` // and runs
	// FarmKey is the far farm's public key (authorized_keys line): the
	// guest must accept it to be managed there over SSH.
	FarmKey string `json:"farm_key,omitempty"`
	// Free is the space available where the disk goes (-1: unknown), and
	// Have what an earlier, interrupted copy there takes already.
	Free int64 `json:"free"`
	Have int64 `json:"have"`
	// MissingShares are the shares' host directories that do not exist
	// there (the guest would not start).
	MissingShares []string `json:"missing_shares,omitempty"`
	// AddressProblem says why a bridged guest moving live cannot keep its
	// address and MAC there ("" when it can).
	AddressProblem string `json:"address_problem,omitempty"`
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
	res.WasRunning = g.Running(ctx)
	// Everything that can be checked before a byte is copied.
	if o.Live && res.WasRunning && len(d.Shares) > 0 {
		return fail(driver.Unsupported(d.Driver, "live migration of a guest with shares",
			"QEMU refuses to migrate a VM with a mounted virtio-9p share; unshare and restart the guest, or migrate offline"))
	}
	// A bridged VM moving live keeps, in its memory, its MAC and address
	// (and udhcpc its hour-long lease): it must keep them there too.
	liveBridge := o.Live && res.WasRunning && d.Net == "bridge"
	args := []string{"migrate", "probe", d.Name}
	for _, s := range d.Shares {
		args = append(args, "--share", s.HostPath)
	}
	if liveBridge {
		args = append(args, "--ip", d.IP, "--mac", d.MAC)
	}
	out, err := to.tinyfarm(ctx, c, nil, args...)
	if err != nil {
		return fail(err)
	}
	var probe FarProbe
	if err := json.Unmarshal(out, &probe); err != nil || probe.Disk == "" {
		return fail(fmt.Errorf("far tinyfarm's probe answered %q: %v", abbrevBytes(out), err))
	}
	pending := filepath.Join(g.Farm().GuestDir(d.Name), "migrating.json")
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
	if liveBridge && probe.AddressProblem != "" {
		return fail(driver.Unsupported(d.Driver, "live migration of this bridged guest",
			fmt.Sprintf("the running VM keeps its address %s and MAC %s, which it cannot have there: %s; "+
				"give the far farm the same subnet (colinux.network there), or migrate offline (the guest boots there and takes an address there)",
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
	if o.Live && res.WasRunning {
		return migrateLive(ctx, g, c, to, o, probe, res, t0)
	}

	// Pass 1 with the guest running: most of the disk, no downtime.
	if res.WasRunning {
		st, err := syncDisk(ctx, c, to, d.Disk, probe.Disk, o.Chunk)
		if err != nil {
			return fail(err)
		}
		res.PreCopySent, res.ChunksSent = st.bytesSent, st.chunksSent
	}
	stopped := time.Now()
	if _, err := g.Stop(ctx, o.Grace); err != nil {
		return fail(err)
	}
	restart := func() {
		if res.WasRunning {
			g.Start(context.WithoutCancel(ctx))
		}
	}
	// Pass 2 with the guest stopped: what changed, then verify.
	st, err := syncDisk(ctx, c, to, d.Disk, probe.Disk, o.Chunk)
	if err != nil {
		restart()
		return fail(err)
	}
	res.Size, res.Chunks, res.BytesSent, res.SHA256 = st.size, st.chunks, st.bytesSent+res.PreCopySent, st.sum
	res.ChunksSent += st.chunksSent

	def := farDefinition(d, probe.Disk, false)
	args = []string{"migrate", "import", "--timeout", o.Timeout.String()}
	if !res.WasRunning {
		args = append(args, "--no-start")
	}
	// Recorded before the import: a run killed after it and before the
	// guest is forgotten here lets the rerun finish the move (above).
	if err := fsutil.WriteJSONAtomic(pending, map[string]string{"to": to.Label()}, 0o600); err != nil {
		restart()
		return fail(err)
	}
	out, err = to.tinyfarm(ctx, c, bytes.NewReader(def), args...)
	if err != nil {
		os.Remove(pending)
		restart()
		return fail(err)
	}
	var far struct {
		State string `json:"state"`
		IP    string `json:"ip"`
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
	res.State, res.IP = far.State, far.IP
	res.Downtime = time.Since(stopped)
	// Only now: it runs there; forget it here.
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

// revokeHere has the far tinyfarm remove this farm's key from the moved
// guest (unless o.KeepKey, or the guest is not managed over SSH, or both
// farms share one key). It runs once the guest is there and gone here: a
// failure is reported, the move stands.
func revokeHere(ctx context.Context, g *farm.Guest, c *ssh.Client, to Remote, o MigrateOptions, probe FarProbe, res *MigrateResult) error {
	if o.KeepKey || g.Def.HostKey == "" || probe.FarmKey == "" {
		return nil
	}
	own, err := ssh.EnsureFarmKey(g.Farm().StateDir())
	if err != nil {
		return fmt.Errorf("moved, but reading this farm's key to remove it from the guest: %w", err)
	}
	if keyBlob(own.AuthorizedKey()) == keyBlob(probe.FarmKey) {
		return nil // one farm key on both sides
	}
	if _, err := to.tinyfarm(ctx, c, strings.NewReader(own.AuthorizedKey()+"\n"), "migrate", "revoke", g.Def.Name); err != nil {
		return fmt.Errorf("moved, but removing this farm's key from the guest there failed (it still accepts this host; remove the key from its authorized_keys): %w", err)
	}
	res.KeyRevoked = true
	return nil
}

// keyBlob is the base64 key of an authorized_keys line (its second
// field, or the first for a bare key): what identifies the key whatever
// options or comment the line has.
func keyBlob(line string) string {
	f := strings.Fields(line)
	for i, w := range f {
		if strings.HasPrefix(w, "ssh-") || strings.HasPrefix(w, "ecdsa-") {
			if i+1 < len(f) {
				return f[i+1]
			}
		}
	}
	if len(f) > 0 {
		return f[0]
	}
	return ""
}

// RevokeKey is the far side of a migration's last step: it removes key
// (an authorized_keys line: the source farm's) from the guest name's SSH
// user's authorized_keys, in the running guest (through Exec) or in its
// stopped disk. This farm's own key is never removed.
func RevokeKey(ctx context.Context, f *farm.Farm, name, key string) error {
	fail := func(err error) error { return fmt.Errorf("revoke key in %s: %w", name, err) }
	blob := keyBlob(key)
	if blob == "" || strings.ContainsAny(blob, "'\"\\$` \n") {
		return fail(fmt.Errorf("key %q: want an authorized_keys line: %w", key, farm.ErrInvalid))
	}
	if own, err := ssh.EnsureFarmKey(f.StateDir()); err != nil {
		return fail(err)
	} else if keyBlob(own.AuthorizedKey()) == blob {
		return fail(fmt.Errorf("that is this farm's own key: %w", farm.ErrInvalid))
	}
	g, err := f.Guest(ctx, name)
	if err != nil {
		return fail(err)
	}
	home := "/root"
	if u := g.User(); u != "root" {
		home = "/home/" + u
	}
	file := home + "/.ssh/authorized_keys"
	if !g.Running(ctx) {
		if err := revokeOnDisk(ctx, g.Def.Disk, file, key); err != nil {
			return fail(err)
		}
		return nil
	}
	// Rewritten in place (cat >), so the file keeps its owner and mode.
	q := ssh.ShellQuote(file)
	script := "f=" + q + "; [ -f \"$f\" ] || exit 0; grep -vF -- '" + blob + "' \"$f\" > \"$f.tf-new\"; cat \"$f.tf-new\" > \"$f\" && rm -f \"$f.tf-new\" && sync && ! grep -qF -- '" + blob + "' \"$f\""
	r, err := g.Exec(ctx, []string{"/bin/sh", "-c", script}, driver.ExecOptions{Timeout: 30 * time.Second})
	if err == nil && r.Code != 0 {
		err = fmt.Errorf("in the guest: exit %d: %s", r.Code, bytes.TrimSpace(r.Stderr))
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %w", file, err))
	}
	return nil
}

func hostLabel() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

func abbrevBytes(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

type syncStats struct {
	size       int64
	chunks     int
	chunksSent int
	bytesSent  int64
	sum        string
}

// syncDisk makes the far file dst equal to src: it asks the far side for
// the sha256 of each chunk it holds, sends only the chunks that differ
// (all-zero chunks as holes), and compares the whole file's sha256 as
// the far side computes it after writing.
func syncDisk(ctx context.Context, c *ssh.Client, to Remote, src, dst string, chunk int64) (syncStats, error) {
	var st syncStats
	out, err := to.tinyfarm(ctx, c, nil, "migrate", "sums", "--chunk", strconv.FormatInt(chunk, 10), dst)
	if err != nil {
		return st, err
	}
	_, far, err := parseSums(out)
	if err != nil {
		return st, fmt.Errorf("far chunk sums: %w", err)
	}
	f, err := os.Open(src)
	if err != nil {
		return st, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return st, err
	}
	st.size = fi.Size()
	pr, pw := io.Pipe()
	type recvOut struct {
		out []byte
		err error
	}
	done := make(chan recvOut, 1)
	go func() {
		out, err := to.tinyfarm(ctx, c, pr, "migrate", "recv", "--size", strconv.FormatInt(st.size, 10), dst)
		pr.CloseWithError(errors.New("receiver ended"))
		done <- recvOut{out, err}
	}()
	whole := sha256.New()
	bw := bufio.NewWriterSize(pw, 1<<20)
	buf := make([]byte, chunk)
	werr := func() error {
		for i := 0; int64(i)*chunk < st.size; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			n, err := io.ReadFull(f, buf[:min(chunk, st.size-int64(i)*chunk)])
			if err != nil {
				return fmt.Errorf("read %s: %w", src, err)
			}
			b := buf[:n]
			whole.Write(b)
			st.chunks++
			sum := sha256.Sum256(b)
			if i < len(far) && far[i] == hex.EncodeToString(sum[:]) {
				continue
			}
			kind := byte('D')
			if zeroChunk(b) {
				kind = 'Z'
			}
			if err := writeFrame(bw, kind, int64(i)*chunk, b); err != nil {
				return err
			}
			st.chunksSent++
			if kind == 'D' {
				st.bytesSent += int64(n)
			}
		}
		if err := writeFrame(bw, 'E', 0, nil); err != nil {
			return err
		}
		return bw.Flush()
	}()
	pw.CloseWithError(werr)
	r := <-done
	if werr != nil {
		return st, fmt.Errorf("send %s: %w", src, werr)
	}
	if r.err != nil {
		return st, r.err
	}
	st.sum = hex.EncodeToString(whole.Sum(nil))
	got := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(r.out)), "sha256 "))
	if got != st.sum {
		return st, fmt.Errorf("verify: the far copy's sha256 is %s, here %s", got, st.sum)
	}
	return st, nil
}

// Frames of the copy stream: kind ('D' data, 'Z' zeros, 'E' end), the
// offset (8 bytes) and the length (4 bytes, big endian), then the data
// of a 'D' frame.
func writeFrame(w io.Writer, kind byte, off int64, data []byte) error {
	var h [13]byte
	h[0] = kind
	binary.BigEndian.PutUint64(h[1:], uint64(off))
	binary.BigEndian.PutUint32(h[9:], uint32(len(data)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	if kind == 'D' {
		_, err := w.Write(data)
		return err
	}
	return nil
}

// ChunkSums writes, for the far side of a migration, the size of path and
// the sha256 of each chunk of it ("size N" then one hex sum per line). A
// missing file has size 0 and no chunks.
func ChunkSums(path string, chunk int64, w io.Writer) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		_, err = fmt.Fprintln(w, "size 0")
		return err
	}
	if err != nil {
		return fmt.Errorf("sums %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("sums %s: %w", path, err)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "size %d\n", fi.Size())
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(f, buf)
		if n > 0 {
			s := sha256.Sum256(buf[:n])
			fmt.Fprintln(bw, hex.EncodeToString(s[:]))
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return fmt.Errorf("sums %s: %w", path, err)
		}
	}
	return bw.Flush()
}

func parseSums(b []byte) (int64, []string, error) {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	size, ok := strings.CutPrefix(lines[0], "size ")
	if !ok {
		return 0, nil, fmt.Errorf("want \"size N\", got %q", abbrevBytes(b))
	}
	n, err := strconv.ParseInt(size, 10, 64)
	if err != nil {
		return 0, nil, err
	}
	return n, lines[1:], nil
}

// ReceiveChunks is the far side of a migration's copy: it applies the
// frames read from r to path (created with its directory if missing),
// sets its size, syncs it and returns the sha256 of the whole file.
func ReceiveChunks(path string, size int64, r io.Reader) (string, error) {
	fail := func(err error) (string, error) { return "", fmt.Errorf("receive %s: %w", path, err) }
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return fail(err)
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var h [13]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return fail(fmt.Errorf("stream ended early: %w", err))
		}
		off, n := int64(binary.BigEndian.Uint64(h[1:])), int64(binary.BigEndian.Uint32(h[9:]))
		if h[0] == 'E' {
			break
		}
		if off < 0 || off+n > size {
			return fail(fmt.Errorf("frame at %d+%d outside the %d bytes", off, n, size))
		}
		switch h[0] {
		case 'D':
			if int64(cap(buf)) < n {
				buf = make([]byte, n)
			}
			if _, err := io.ReadFull(br, buf[:n]); err != nil {
				return fail(err)
			}
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return fail(err)
			}
		case 'Z':
			if err := zeroRange(f, off, n); err != nil {
				return fail(err)
			}
		default:
			return fail(fmt.Errorf("bad frame kind %q", h[0]))
		}
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fail(err)
	}
	s := sha256.New()
	if _, err := io.Copy(s, f); err != nil {
		return fail(err)
	}
	return hex.EncodeToString(s.Sum(nil)), nil
}

// Import is the far side of a migration: it defines the guest (refusing a
// name that exists), starts it unless noStart and waits for its ready
// marker. A guest that does not come up is undefined again (its disk
// stays, so a retry sends only what is missing).
func Import(ctx context.Context, f *farm.Farm, d farm.Definition, start bool, timeout time.Duration) (driver.Status, error) {
	if _, err := f.Get(d.Name); err == nil {
		return driver.Status{}, fmt.Errorf("import %s: %w", d.Name, farm.ErrExists)
	}
	res, err := f.Define(d, farm.ChangeOptions{})
	if err != nil {
		return driver.Status{}, fmt.Errorf("import %s: %w", d.Name, err)
	}
	g := f.GuestOf(res.Def)
	if !start {
		return g.Status(ctx)
	}
	undo := func(err error) (driver.Status, error) {
		g.Destroy(context.WithoutCancel(ctx), false)
		return driver.Status{}, fmt.Errorf("import %s: %w", d.Name, err)
	}
	if _, err := g.Start(ctx); err != nil {
		return undo(err)
	}
	if err := g.WaitReady(ctx, timeout); err != nil {
		return undo(err)
	}
	st, err := g.Status(ctx)
	if err != nil {
		return undo(err)
	}
	return st, nil
}

// farDefinition is the guest's definition for the far farm (JSON): the
// far farm gives it its own address (unless keepIP: a bridged VM moving
// live keeps its own) and forwards, the disk is the copy at disk, and a
// label says where it came from.
func farDefinition(d *farm.Definition, disk string, keepIP bool) []byte {
	nd := *d
	nd.Disk, nd.Forwards, nd.DiskPlaced = disk, nil, true
	if !keepIP {
		nd.IP = ""
	}
	nd.Labels = map[string]string{}
	for k, v := range d.Labels {
		nd.Labels[k] = v
	}
	nd.Labels["migrated_from"] = hostLabel()
	def, _ := json.Marshal(nd)
	return def
}

// ProbeMigration is the far side's answer before a migration of name
// whose shares have the host directories shares; for a bridged guest
// moving live, ip and mac are the address and MAC it keeps.
func ProbeMigration(ctx context.Context, f *farm.Farm, name string, shares []string, ip, mac string) (FarProbe, error) {
	if !farm.ValidName(name) {
		return FarProbe{}, fmt.Errorf("probe %q: %w", name, farm.ErrInvalid)
	}
	p := FarProbe{Disk: filepath.Join(f.StateDir(), "disks", name+".img")}
	p.Free, p.Have = freeBytes(p.Disk), allocatedBytes(p.Disk)
	for _, s := range shares {
		if fi, err := os.Stat(s); err != nil || !fi.IsDir() {
			p.MissingShares = append(p.MissingShares, s)
		}
	}
	if ip != "" {
		p.AddressProblem = f.BridgeIdentityProblem(name, ip, mac)
	}
	if g, err := f.Guest(ctx, name); err == nil {
		p.Exists, p.Running = true, g.Running(ctx)
	}
	fk, err := ssh.EnsureFarmKey(f.StateDir())
	if err != nil {
		return FarProbe{}, fmt.Errorf("probe %s: %w", name, err)
	}
	p.FarmKey = fk.AuthorizedKey()
	return p, nil
}

// authorizeKey adds key (an authorized_keys line; "" or this farm's own
// key: nothing to do) to the authorized_keys of the guest's SSH user, so
// the farm that key belongs to can manage the guest: over SSH while the
// guest runs (a live move carries the change in its memory and disk),
// else in its disk image. The line is added once; the others stay.
func authorizeKey(ctx context.Context, g *farm.Guest, key string, running bool) error {
	if key == "" || g.Def.HostKey == "" {
		return nil // no SSH to the guest from any farm
	}
	pub, err := ssh.ParsePublicKey(key)
	if err != nil {
		return fmt.Errorf("far farm key %q: %w", key, err)
	}
	if own, err := ssh.EnsureFarmKey(g.Farm().StateDir()); err == nil && bytes.Equal(own.PublicKey().Marshal(), pub.Marshal()) {
		return nil // one farm key on both sides
	}
	home := "/root"
	if u := g.User(); u != "root" {
		home = "/home/" + u
	}
	file := home + "/.ssh/authorized_keys"
	if running {
		c, err := g.SSH(ctx)
		if err != nil {
			return fmt.Errorf("authorize the far farm's key in the guest: %w", err)
		}
		q, k := ssh.ShellQuote(file), ssh.ShellQuote(key)
		r, err := c.Run(ctx, "mkdir -p "+ssh.ShellQuote(home+"/.ssh")+" && touch "+q+" && (grep -qxF "+k+" "+q+" || echo "+k+" >> "+q+") && sync",
			ssh.RunOptions{IgnoreExit: true})
		if err == nil && r.Code != 0 {
			err = fmt.Errorf("exit %d: %s", r.Code, bytes.TrimSpace(r.Stderr))
		}
		if err != nil {
			return fmt.Errorf("authorize the far farm's key in %s: %w", file, err)
		}
		return nil
	}
	return authorizeOnDisk(ctx, g.Def.Disk, file, key)
}

func zeroChunk(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
