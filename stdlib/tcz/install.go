package tcz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/tinyfarm/tinyfarm/stdlib/persist"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// Names Install and Remove use inside a target.
const (
	// InstalledDir is Tiny Core's database of installed extensions.
	InstalledDir = "usr/local/tce.installed"
	// FilesDir holds NAME.list: every name Install created for NAME (files,
	// links, and directories it had to create), one per line, in the order
	// written. Remove deletes exactly these, minus names another list holds.
	FilesDir = InstalledDir + "/.files"
	// JournalPrefix starts the name of the journal an install keeps at
	// the target's root while it writes an extension (JournalPrefix +
	// NAME + ".list"): the names it is about to write, so the rerun of a
	// killed install still lists them as the extension's own.
	JournalPrefix = ".tf-tcz-"
	// FirstbootQueue lists, one per line, the install scripts
	// (/usr/local/tce.installed/NAME) an offline install queued. The
	// "tcz-firstboot" block Install puts in opt/bootsync.sh runs depmod -a
	// (when usr/local/lib/modules/$(uname -r) exists) and ldconfig, then
	// each script, then deletes the queue. It runs once, at first boot.
	FirstbootQueue = InstalledDir + "/.firstboot.lst"
	// FirstbootBlockID is the persist block id of that runner.
	FirstbootBlockID = "tcz-firstboot"
)

// FirstbootScript is the body of the opt/bootsync.sh block that runs
// FirstbootQueue.
var FirstbootScript = []string{
	"if [ -f /" + FirstbootQueue + " ]; then",
	"  [ -d /usr/local/lib/modules/$(uname -r) ] && depmod -a 2>/dev/null",
	"  ldconfig 2>/dev/null",
	"  while read -r s; do [ -x \"$s\" ] && \"$s\"; done < /" + FirstbootQueue,
	"  rm -f /" + FirstbootQueue,
	"fi",
}

// InstallOptions tunes [Client.Install].
type InstallOptions struct {
	// Onboot adds the requested name (not its dependencies) to the tce
	// dir's onboot.lst. Default false.
	Onboot bool
	// Overwrite replaces files that already exist in the target
	// (unsquashfs -f). Default false: they are kept, as tce-load's
	// `cp -ai` does.
	Overwrite bool
	// TCEDir is the tce directory inside the target, for onboot.lst.
	// Default: target.TCEDir.
	TCEDir string
	// Check computes what would change and changes nothing (the cache
	// included: extensions not yet cached are reported without their
	// files). Default false.
	Check bool
}

// InstallResult reports an Install.
type InstallResult struct {
	// Changed: the target changed (would change).
	Changed bool
	// Order is the dependency order, the requested name last.
	Order []string
	// Installed lists extensions newly installed (would be), in order.
	Installed []string
	// Files lists names written (would be), all extensions together.
	Files []string
	// Kept lists existing names left alone (Overwrite false).
	Kept []string
	// Queued lists install scripts queued for first boot (offline) or
	// run (online).
	Queued []string
	// Diff holds unified diffs of text files changed (onboot.lst,
	// opt/bootsync.sh, the first-boot queue).
	Diff string
	// Warnings are resolution warnings (dependency cycles).
	Warnings []string
}

// Install installs name and its dependencies into t by extraction, the way
// tce-load's copy mode (`cp -ai`) would, without loop mounts or root:
//
//   - the tree is fetched (see Fetch); each cached .tcz is md5-checked
//     once per Install, on the open file that is then extracted (bit rot
//     is an ErrChecksum error), unless this Client checked the same
//     unchanged file in the last minute;
//   - each archive's whole listing is validated first (see ReadArchive)
//     and all its data decompressed and checked, so a hostile, truncated
//     or corrupt archive is refused before anything is written. The data
//     is decompressed once: up to Config.InstallMemory of it (for all
//     of the Client's Installs together) is kept in memory for writing;
//     beyond that it is decompressed again as it is written, each file
//     through a temporary name. The archives are
//     checked concurrently, ahead of the writing, which goes one
//     extension at a time in dependency order (the first to write a name
//     wins, as with tce-load); an entry whose path in the target goes
//     through a symlink or a non-directory is refused (ErrUnsafePath);
//   - owners, modes (setuid included, read from the inode), symlinks,
//     hardlinks and fifos are kept as far as the target can (target.Caps);
//     device nodes only with Limits.AllowDevices on a target that allows
//     them;
//   - an extension already marked in usr/local/tce.installed is skipped, so
//     a second Install reports Changed false;
//   - afterwards usr/local/tce.installed/NAME exists (the package's own
//     script, or an empty marker) with FilesDir/NAME.list;
//   - when an SSH server arrives (usr/local/sbin/sshd or dropbear), the
//     host keys the target already holds are copied to every server's place
//     and format where missing (see ssh.HostKeySet.Files), before the
//     server can first start: it then serves the keys tinyfarm pins;
//   - on an online target (Caps.Online and an Execer) depmod, ldconfig and
//     install scripts run now; otherwise they are queued (FirstbootQueue)
//     and opt/bootsync.sh gets the FirstbootScript block.
func (c *Client) Install(ctx context.Context, t target.Target, name string, opts InstallOptions) (InstallResult, error) {
	n, err := c.Name(name)
	if err != nil {
		return InstallResult{}, fmt.Errorf("install: %w", err)
	}
	fr, err := c.fetch(ctx, FetchOptions{Check: opts.Check}, true, n)
	if err != nil {
		return InstallResult{}, fmt.Errorf("install %s: %w", n, err)
	}
	res := InstallResult{Order: fr.Order, Warnings: fr.Warnings}
	caps := target.CapsOf(t)
	online := false
	if _, ok := t.(target.Execer); ok && caps.Online {
		online = true
	}
	// Which extensions to install: those not marked yet. Their archives
	// are checked (and, within Config.InstallMemory, decompressed) by a
	// pool of workers, in order and ahead of the writer below, which
	// applies them one at a time in dependency order, so the result is
	// the sequential one (the first writer of a name wins).
	need := map[string]bool{}
	var work []string
	for _, p := range fr.Order {
		ok, err := target.Exists(ctx, t, InstalledDir+"/"+p)
		if err != nil {
			return res, fmt.Errorf("install %s: %w", p, err)
		}
		if ok {
			continue
		}
		need[p] = true
		if !opts.Check || !slices.Contains(fr.Downloaded, p) {
			work = append(work, p)
		}
	}
	if !opts.Check {
		if err := c.finishKilled(ctx, t, online); err != nil {
			return res, fmt.Errorf("install %s: %w", n, err)
		}
	}
	lim := c.cfg.Limits
	lim.AllowDevices = lim.AllowDevices && caps.Devices
	var mem *budget // nil: nothing held
	if !opts.Check {
		mem = c.mem
	}
	prep := c.prepareAll(ctx, work, lim, mem)
	defer prep.stop()
	written := map[string]bool{}
	var scripts, hostKeys []string
	modules := false
	for _, p := range fr.Order {
		marker := InstalledDir + "/" + p
		// Marked before, or by an extension installed just now.
		if !need[p] || written[marker] {
			continue
		}
		res.Installed = append(res.Installed, p)
		if opts.Check && slices.Contains(fr.Downloaded, p) {
			continue // not cached: cannot list its files in check mode
		}
		a, err := prep.wait(ctx, p)
		if err != nil {
			return res, err
		}
		// What must be in place before the marker, since a run killed
		// after it skips this extension next time: an SSH server's host
		// keys (so it never serves keys of its own making); offline, the
		// first-boot queue and its bootsync block (its script and the
		// ldconfig every offline install needs).
		beforeMarker := func(pr pkgResult) error {
			if installsSSHServer(pr.files) {
				keys, err := placeHostKeys(ctx, t, false)
				if err != nil {
					return fmt.Errorf("host keys: %w", err)
				}
				hostKeys = append(hostKeys, keys...)
			}
			if online {
				return nil
			}
			var s []string
			if pr.script {
				s = []string{"/" + marker}
			}
			return c.queueFirstboot(ctx, t, s, false, &InstallResult{})
		}
		pr, err := c.installOne(ctx, t, p, a, caps, opts, online, beforeMarker)
		prep.done(p)
		if err != nil {
			return res, err
		}
		if !opts.Check {
			for _, f := range pr.files {
				written[f] = true
			}
		}
		res.Files = append(res.Files, pr.files...)
		res.Kept = append(res.Kept, pr.kept...)
		if pr.script {
			scripts = append(scripts, "/"+marker)
		}
		modules = modules || pr.modules
	}
	res.Queued = scripts
	res.Changed = len(res.Installed) > 0
	// An SSH server gets the guest's host keys before it first starts, so
	// it serves the keys tinyfarm pins.
	if opts.Check && installsSSHServer(res.Files) {
		keys, err := placeHostKeys(ctx, t, opts.Check)
		if err != nil {
			return res, fmt.Errorf("install %s: host keys: %w", n, err)
		}
		hostKeys = keys
	}
	res.Files = append(res.Files, hostKeys...)
	if len(res.Installed) > 0 {
		if online {
			if !opts.Check {
				if err := runScripts(ctx, t.(target.Execer), scripts, modules); err != nil {
					return res, fmt.Errorf("install %s: %w", n, err)
				}
				// Done: the journals go (a run killed before this point
				// left them, and the next one runs the scripts).
				for _, p := range res.Installed {
					if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: JournalPrefix + p + ".list", Type: target.TypeRemove}}); err != nil {
						return res, fmt.Errorf("install %s: %w", n, err)
					}
				}
			}
		} else {
			if err := c.queueFirstboot(ctx, t, scripts, opts.Check, &res); err != nil {
				return res, fmt.Errorf("install %s: %w", n, err)
			}
		}
	}
	if opts.Onboot {
		r, err := persist.Onboot(ctx, t, []string{n}, persist.ListOptions{TCEDir: opts.TCEDir, Check: opts.Check})
		if err != nil {
			return res, fmt.Errorf("install %s: %w", n, err)
		}
		res.Changed = res.Changed || r.Changed
		res.Diff += r.Diff
	}
	return res, nil
}

func (c *Client) queueFirstboot(ctx context.Context, t target.Target, scripts []string, check bool, res *InstallResult) error {
	queued := scripts
	// The queue file is always present after an offline install (ldconfig
	// must run even without scripts).
	old, err := target.ReadFile(ctx, t, FirstbootQueue)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	exists := err == nil
	nw := persist.EditLines(string(old), queued, nil, nil)
	if !exists || nw != string(old) {
		if !check {
			if err := target.WriteFile(ctx, t, FirstbootQueue, []byte(nw), 0o644, 0, 0); err != nil {
				return err
			}
		}
	}
	r, err := persist.Bootsync(ctx, t, FirstbootScript, persist.BlockOptions{ID: FirstbootBlockID, Check: check})
	if err != nil {
		return err
	}
	res.Diff += r.Diff
	return nil
}

// finishKilled completes the installs a killed run left marked but not
// finished (their journal is still there): online, runs ldconfig and
// their install scripts, which the killed run had not reached; then
// removes their journals. (Offline, the scripts were queued before the
// markers.)
func (c *Client) finishKilled(ctx context.Context, t target.Target, online bool) error {
	dr, ok := t.(target.DirReader)
	if !ok {
		return nil
	}
	es, err := dr.ReadDir(ctx, ".")
	if err != nil {
		return err
	}
	var journals, scripts []string
	for _, e := range es {
		b := path.Base(e.Name)
		name, ok := strings.CutPrefix(b, JournalPrefix)
		if !ok || !strings.HasSuffix(name, ".list") {
			continue
		}
		marker := InstalledDir + "/" + strings.TrimSuffix(name, ".list")
		m, err := t.Lstat(ctx, marker)
		if err != nil {
			continue // not marked: the rerun installs it again
		}
		journals = append(journals, b)
		if m.Type == target.TypeRegular && m.Mode&0o111 != 0 {
			scripts = append(scripts, "/"+marker)
		}
	}
	if len(journals) == 0 {
		return nil
	}
	if online {
		if err := runScripts(ctx, t.(target.Execer), scripts, false); err != nil {
			return err
		}
	}
	for _, b := range journals {
		if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: b, Type: target.TypeRemove}}); err != nil {
			return err
		}
	}
	return nil
}

// runScripts runs, in a running guest, depmod (after modules), ldconfig
// and then the install scripts, as tce-load does, each only where the
// tool exists: a userland without ldconfig (busybox only) needs no cache.
func runScripts(ctx context.Context, ex target.Execer, scripts []string, modules bool) error {
	if modules {
		if out, err := ex.Exec(ctx, []string{"sh", "-c", "if command -v depmod >/dev/null 2>&1; then depmod -a; fi"}); err != nil {
			return fmt.Errorf("depmod: %w: %s", err, out)
		}
	}
	if out, err := ex.Exec(ctx, []string{"sh", "-c", "if command -v ldconfig >/dev/null 2>&1; then ldconfig; fi"}); err != nil {
		return fmt.Errorf("ldconfig: %w: %s", err, out)
	}
	for _, s := range scripts {
		if out, err := ex.Exec(ctx, []string{s}); err != nil {
			return fmt.Errorf("%s: %w: %s", s, err, out)
		}
	}
	return nil
}

// rewriteJournaled returns the plan that writes what plan writes plus
// the names of journal that exist (over, the plan with overwrite, has
// their changes): the files a killed install wrote, perhaps partly.
func rewriteJournaled(plan, over PlanResult, journal []string) PlanResult {
	again := map[string]bool{}
	for _, f := range journal {
		again[f] = true
	}
	for _, c := range plan.Changes {
		again[c.Name] = true
	}
	out := PlanResult{}
	for _, c := range over.Changes {
		if again[c.Name] {
			out.Changes = append(out.Changes, c)
		}
	}
	for _, k := range plan.Kept {
		if !again[k] {
			out.Kept = append(out.Kept, k)
		}
	}
	return out
}

// ownedAfterCrash returns the files an extension owns when an earlier
// install of it was killed: prev (the list it wrote first, in its order)
// where the file is written now or exists (written by the killed run, so
// kept now, directories included), then the files written now that prev
// lacks.
func ownedAfterCrash(prev, written []string, exists func(string) bool) []string {
	now := map[string]bool{}
	for _, f := range written {
		now[f] = true
	}
	var out []string
	seen := map[string]bool{}
	for _, f := range prev {
		if (now[f] || exists(f)) && !seen[f] {
			out = append(out, f)
			seen[f] = true
		}
	}
	for _, f := range written {
		if !seen[f] {
			out = append(out, f)
			seen[f] = true
		}
	}
	return out
}

type pkgResult struct {
	files, kept []string
	script      bool
	modules     bool
}

// prepared is the archives of one Install, checked by prepareAll's
// workers.
type prepared struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mem    *budget
	slots  map[string]*slot
}

type slot struct {
	ready  chan struct{} // closed when a and err are set
	a      *Archive
	closer io.Closer
	err    error
}

// prepareAll opens, md5-checks (unless this Client just did), validates
// and loads (see Archive.load) the cached archives of names, on up to
// GOMAXPROCS workers taking them in order. Call stop when done.
func (c *Client) prepareAll(ctx context.Context, names []string, lim Limits, mem *budget) *prepared {
	ctx, cancel := context.WithCancel(ctx)
	pr := &prepared{cancel: cancel, mem: mem, slots: make(map[string]*slot, len(names))}
	for _, n := range names {
		pr.slots[n] = &slot{ready: make(chan struct{})}
	}
	var next atomic.Int64
	for range min(len(names), runtime.GOMAXPROCS(0)) {
		pr.wg.Add(1)
		go func() {
			defer pr.wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(names) {
					return
				}
				s := pr.slots[names[i]]
				s.a, s.closer, s.err = c.prepare(ctx, names[i], lim, mem)
				close(s.ready)
			}
		}()
	}
	return pr
}

// prepare opens one cached archive, checks its md5 (trusting this
// Client's own recent check of the same file), validates its listing
// and checks (loads) its content.
func (c *Client) prepare(ctx context.Context, p string, lim Limits, mem *budget) (*Archive, io.Closer, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("install %s: %w", p, err)
	}
	f, fi, err := c.openVerified(p, true)
	if err != nil {
		return nil, nil, fmt.Errorf("install %s: %w", p, err)
	}
	a, err := ReadArchive(f, fi.Size(), lim)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("install %s: open archive %s.tcz: %w", p, p, err)
	}
	if err := a.load(ctx, mem); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("install %s: %w", p, err)
	}
	return a, f, nil
}

// wait returns p's checked archive.
func (pr *prepared) wait(ctx context.Context, p string) (*Archive, error) {
	s := pr.slots[p]
	select {
	case <-s.ready:
		return s.a, s.err
	case <-ctx.Done():
		return nil, fmt.Errorf("install %s: %w", p, ctx.Err())
	}
}

// done releases p's archive.
func (pr *prepared) done(p string) {
	s := pr.slots[p]
	if s.a != nil {
		s.a.release(pr.mem)
		s.a = nil
	}
	if s.closer != nil {
		s.closer.Close()
		s.closer = nil
	}
}

// stop cancels the workers, waits for them and releases every archive.
func (pr *prepared) stop() {
	pr.cancel()
	pr.wg.Wait()
	for p := range pr.slots {
		pr.done(p)
	}
}

// installOne extracts one checked archive.
// installOne extracts one extension into t: its journal first, then its
// files and list, then beforeMarker, then its marker. Online the journal
// stays for Install to remove once the install scripts have run.
func (c *Client) installOne(ctx context.Context, t target.Target, p string, a *Archive, caps target.Caps, opts InstallOptions, online bool, beforeMarker func(pkgResult) error) (pkgResult, error) {
	var pr pkgResult
	// The journal of a killed install of p (see below) names what it was
	// writing: those files may be cut short (a transfer that ended with
	// the process), so they are written again.
	journal := JournalPrefix + p + ".list"
	var prev []string
	if !opts.Check {
		if b, err := target.ReadFile(ctx, t, journal); err == nil {
			prev = strings.Fields(string(b))
		}
	}
	changes, err := Plan(ctx, t, a, opts.Overwrite)
	if err != nil {
		return pr, fmt.Errorf("install %s: %w", p, err)
	}
	if len(prev) > 0 && !opts.Overwrite {
		over, err := Plan(ctx, t, a, true)
		if err != nil {
			return pr, fmt.Errorf("install %s: %w", p, err)
		}
		changes = rewriteJournaled(changes, over, prev)
	}
	marker := InstalledDir + "/" + p
	for _, ch := range changes.Changes {
		pr.files = append(pr.files, ch.Name)
		if ch.Name == marker && ch.Type == target.TypeRegular && ch.Mode&0o111 != 0 {
			pr.script = true
		}
		if strings.HasPrefix(ch.Name, "usr/local/lib/modules/") {
			pr.modules = true
		}
	}
	pr.kept = changes.Kept
	inArchive := slices.ContainsFunc(a.Entries, func(e target.Entry) bool { return e.Name == marker })
	if opts.Check {
		return pr, nil
	}
	// A journal at the root (its parents always exist) names what this
	// install is about to write, before anything is written. An install
	// killed midway left it and no marker: what it wrote is "existing"
	// now and kept by the rerun, yet the extension's own, so it stays in
	// the extension's list. The journal goes once the marker is there.
	if len(prev) > 0 {
		pr.files = ownedAfterCrash(prev, pr.files, func(f string) bool {
			ok, _ := target.Exists(ctx, t, f)
			return ok
		})
	}
	var list strings.Builder
	for _, f := range pr.files {
		list.WriteString(f + "\n")
	}
	if err := target.WriteFile(ctx, t, journal, []byte(list.String()), 0o600, 0, 0); err != nil {
		return pr, fmt.Errorf("install %s: %w", p, err)
	}
	var markerChange []target.Change
	files := slices.DeleteFunc(slices.Clone(changes.Changes), func(ch target.Change) bool {
		if ch.Name == marker {
			markerChange = append(markerChange, ch)
			return true
		}
		return false
	})
	if err := target.ApplyAll(ctx, t, files); err != nil {
		return pr, fmt.Errorf("install %s: %w", p, err)
	}
	// Tiny Core's database directories are root:staff 0775, owned so as
	// they are made: a kill between a mkdir and a chown would leave a
	// root-owned one that no rerun fixes (TestCrashInstallDir).
	o := target.MkdirOptions{}
	if caps.Chown {
		o.Gid = 50
	}
	for _, d := range []string{InstalledDir, FilesDir} {
		if _, err := target.MkdirAll(ctx, t, d, 0o775, o); err != nil {
			return pr, fmt.Errorf("install %s: %w", p, err)
		}
	}
	if err := target.WriteFile(ctx, t, FilesDir+"/"+p+".list", []byte(list.String()), 0o644, 0, 0); err != nil {
		return pr, fmt.Errorf("install %s: %w", p, err)
	}
	if beforeMarker != nil {
		if err := beforeMarker(pr); err != nil {
			return pr, fmt.Errorf("install %s: %w", p, err)
		}
	}
	// The marker goes last: it is what makes the extension "installed".
	if len(markerChange) > 0 {
		if err := target.ApplyAll(ctx, t, markerChange); err != nil {
			return pr, fmt.Errorf("install %s: %w", p, err)
		}
	} else if !inArchive || !slices.Contains(pr.files, marker) {
		if ok, _ := target.Exists(ctx, t, marker); !ok {
			if err := target.WriteFile(ctx, t, marker, nil, 0o644, 0, 50); err != nil {
				return pr, fmt.Errorf("install %s: %w", p, err)
			}
		}
	}
	// Offline the extension is complete now. Online its journal stays
	// until its install script has run (Install, finishKilled).
	if !online {
		if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: journal, Type: target.TypeRemove}}); err != nil {
			return pr, fmt.Errorf("install %s: %w", p, err)
		}
	}
	c.cfg.Logf("tcz: installed %s (%d entries)", p, len(pr.files))
	return pr, nil
}

// PlanResult is what extracting an archive into a target would do.
type PlanResult struct {
	// Changes are the entries to write, parents first.
	Changes []target.Change
	// Kept are existing names left alone.
	Kept []string
}

// Plan computes the changes that extract a validated archive into t with
// `cp -ai` semantics (or `unsquashfs -f` with overwrite), reading t but
// writing nothing. Existing directories are kept as they are. An entry
// whose target path is, or lies below, a symlink or a non-directory in t is
// refused with ErrUnsafePath; a non-directory over an existing directory
// with ErrInvalid.
func Plan(ctx context.Context, t target.Target, a *Archive, overwrite bool) (PlanResult, error) {
	var res PlanResult
	type st struct {
		exists bool
		e      target.Entry
	}
	state := map[string]st{} // target state of archive directories
	written := map[string]bool{}
	missingDir := map[string]bool{}
	for _, e := range a.Entries {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		parent := path.Dir(e.Name)
		var cur target.Entry
		var exists bool
		if parent != "." && missingDir[parent] {
			exists = false // below a directory we are creating
		} else {
			ps, ok := state[parent]
			if parent != "." && ok && ps.exists && ps.e.Type != target.TypeDir {
				return res, fmt.Errorf("entry %s: parent is a %s in the target: %w", e.Name, ps.e.Type, ErrUnsafePath)
			}
			got, err := t.Lstat(ctx, e.Name)
			switch {
			case err == nil:
				cur, exists = got, true
			case errors.Is(err, fs.ErrNotExist):
			default:
				return res, fmt.Errorf("entry %s: %w", e.Name, err)
			}
		}
		if e.Type == target.TypeDir {
			state[e.Name] = st{exists, cur}
			if exists {
				switch cur.Type {
				case target.TypeDir:
					continue
				case target.TypeSymlink:
					return res, fmt.Errorf("entry %s: is a symlink to %q in the target; refusing to write through it: %w", e.Name, cur.Linkname, ErrUnsafePath)
				default:
					return res, fmt.Errorf("entry %s: directory over an existing %s: %w", e.Name, cur.Type, ErrUnsafePath)
				}
			}
			missingDir[e.Name] = true
			res.Changes = append(res.Changes, target.Change{Entry: e})
			continue
		}
		if exists {
			if !overwrite {
				res.Kept = append(res.Kept, e.Name)
				continue
			}
			if cur.Type == target.TypeDir {
				return res, fmt.Errorf("entry %s: %s over an existing directory: %w", e.Name, e.Type, ErrInvalid)
			}
		}
		ch := target.Change{Entry: e}
		switch e.Type {
		case target.TypeRegular:
			ch.Body = archiveBody(a, e.Name)
		case target.TypeHardlink:
			if !written[e.Linkname] {
				// The first name was kept: copy rather than link to a file
				// the archive did not write.
				ch.Type, ch.Linkname = target.TypeRegular, ""
				ch.Body = archiveBody(a, e.Linkname)
				for _, x := range a.Entries {
					if x.Name == e.Linkname {
						ch.Size, ch.ModTime = x.Size, x.ModTime
					}
				}
			}
		}
		written[e.Name] = true
		res.Changes = append(res.Changes, ch)
	}
	return res, nil
}

func archiveBody(a *Archive, name string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		r, err := a.Open(name)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(r), nil
	}
}

// RemoveOptions tunes [Client.Remove].
type RemoveOptions struct {
	// TCEDir is the tce directory inside the target, for onboot.lst.
	// Default: target.TCEDir.
	TCEDir string
	// Check computes what would change and changes nothing. Default false.
	Check bool
}

// RemoveResult reports a Remove.
type RemoveResult struct {
	// Changed: the target changed (would change).
	Changed bool
	// Removed lists the names deleted (would be).
	Removed []string
	// Shared lists names of the package kept because another installed
	// extension's list holds them.
	Shared []string
	// Diff is the onboot.lst diff.
	Diff string
}

// Remove deletes extension name from t: exactly the names in its
// FilesDir/NAME.list that no other installed extension's list holds
// (directories only when empty), then its list and marker, and its
// onboot.lst entry (exact name). Dependencies stay. Removing an extension
// that is not installed changes nothing (only onboot.lst is cleaned). The
// target must be a target.DirReader (to see the other lists).
func (c *Client) Remove(ctx context.Context, t target.Target, name string, opts RemoveOptions) (RemoveResult, error) {
	n, err := c.Name(name)
	if err != nil {
		return RemoveResult{}, fmt.Errorf("remove: %w", err)
	}
	var res RemoveResult
	dr, ok := t.(target.DirReader)
	if !ok {
		return res, fmt.Errorf("remove %s: target cannot list directories: %w", n, target.ErrUnsupported)
	}
	marker := InstalledDir + "/" + n
	installed, err := target.Exists(ctx, t, marker)
	if err != nil {
		return res, fmt.Errorf("remove %s: %w", n, err)
	}
	if installed {
		own, err := readList(ctx, t, n)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("remove %s: %w", n, err)
		}
		others := map[string]bool{}
		lists, err := dr.ReadDir(ctx, FilesDir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return res, fmt.Errorf("remove %s: %w", n, err)
		}
		for _, l := range lists {
			base := path.Base(l.Name)
			if base == n+".list" || !strings.HasSuffix(base, ".list") {
				continue
			}
			names, err := readList(ctx, t, strings.TrimSuffix(base, ".list"))
			if err != nil {
				return res, fmt.Errorf("remove %s: %w", n, err)
			}
			for _, x := range names {
				others[x] = true
			}
		}
		var dirs []string
		var changes []target.Change
		for _, f := range own {
			if others[f] {
				res.Shared = append(res.Shared, f)
				continue
			}
			e, err := t.Lstat(ctx, f)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return res, fmt.Errorf("remove %s: %w", n, err)
			}
			if e.Type == target.TypeDir {
				dirs = append(dirs, f)
				continue
			}
			changes = append(changes, target.Change{Entry: target.Entry{Name: f, Type: target.TypeRemove}})
			res.Removed = append(res.Removed, f)
		}
		if !opts.Check {
			if err := target.ApplyAll(ctx, t, changes); err != nil {
				return res, fmt.Errorf("remove %s: %w", n, err)
			}
		}
		// Directories deepest first, only when empty (after the removals).
		slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
		gone := map[string]bool{}
		for _, r := range res.Removed {
			gone[r] = true
		}
		for _, d := range dirs {
			es, err := dr.ReadDir(ctx, d)
			if err != nil {
				return res, fmt.Errorf("remove %s: %w", n, err)
			}
			empty := true
			for _, e := range es {
				if !gone[e.Name] {
					empty = false
					break
				}
			}
			if !empty {
				continue
			}
			if !opts.Check {
				if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: d, Type: target.TypeRemove}}); err != nil {
					return res, fmt.Errorf("remove %s: %w", n, err)
				}
			}
			gone[d] = true
			res.Removed = append(res.Removed, d)
		}
		for _, f := range []string{FilesDir + "/" + n + ".list", marker} {
			if !opts.Check && !gone[f] {
				if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: f, Type: target.TypeRemove}}); err != nil {
					return res, fmt.Errorf("remove %s: %w", n, err)
				}
			}
			if !gone[f] {
				res.Removed = append(res.Removed, f)
			}
		}
		res.Changed = true
	}
	r, err := persist.Onboot(ctx, t, []string{n}, persist.ListOptions{Remove: true, TCEDir: opts.TCEDir, Check: opts.Check})
	if err != nil {
		return res, fmt.Errorf("remove %s: %w", n, err)
	}
	res.Changed = res.Changed || r.Changed
	res.Diff = r.Diff
	return res, nil
}

func readList(ctx context.Context, t target.Target, n string) ([]string, error) {
	b, err := target.ReadFile(ctx, t, FilesDir+"/"+n+".list")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l == "" {
			continue
		}
		c, err := target.Clean(l)
		if err != nil || c == "." {
			return nil, fmt.Errorf("list %s: entry %q: %w", n, l, ErrUnsafePath)
		}
		out = append(out, c)
	}
	return out, nil
}

// Installed lists the extensions marked in usr/local/tce.installed of t,
// sorted. The target must be a target.DirReader; a missing directory means
// none.
func Installed(ctx context.Context, t target.Target) ([]string, error) {
	dr, ok := t.(target.DirReader)
	if !ok {
		return nil, fmt.Errorf("installed: target cannot list directories: %w", target.ErrUnsupported)
	}
	es, err := dr.ReadDir(ctx, InstalledDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("installed: %w", err)
	}
	var out []string
	for _, e := range es {
		b := path.Base(e.Name)
		if strings.HasPrefix(b, ".") || e.Type == target.TypeDir {
			continue
		}
		out = append(out, b)
	}
	return out, nil
}
