package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// FarProbe is what the far side reports before a migration.
type FarProbe struct {
	Disk    string `json:"disk"`         // where the disk goes
	Exists  bool   `json:"exists"`       // a guest of that name is defined there
	Running bool   `json:"running"`      // and runs
	IP      string `json:"ip,omitempty"` // its address there (no prefix length), if it is defined
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
	// ForeignDisk: a file where the disk goes that is not a migration's
	// copy (foreignDisk), which the move would overwrite.
	ForeignDisk bool `json:"foreign_disk,omitempty"`
	// Importing: the guest is defined there and its disk still carries
	// the mark of a migration's copy (claimDisk), which its import
	// removes last: an import of it has not ended (it runs still: a far
	// tinyfarm outlives the SSH session of a killed mover; or it died).
	Importing bool `json:"importing,omitempty"`
	// AddressProblem says why a bridged guest moving live cannot keep its
	// address and MAC there ("" when it can: see farm.KeptAddressProblem;
	// an address of another subnet is kept too).
	AddressProblem string `json:"address_problem,omitempty"`
}

// Import is the far side of a migration: it defines the guest (refusing a
// name that exists), starts it unless noStart and waits for its ready
// marker. A guest that does not come up is undefined again (its disk
// stays, so a retry sends only what is missing). Steps says where its
// time went (MigrateResult.Steps).
func Import(ctx context.Context, f *farm.Farm, d farm.Definition, start bool, timeout time.Duration) (driver.Status, []MigrateStep, error) {
	var steps []MigrateStep
	clock := stepClock{time.Now(), &steps}
	if _, err := f.Get(d.Name); err == nil {
		return driver.Status{}, steps, fmt.Errorf("import %s: %w", d.Name, farm.ErrExists)
	}
	res, err := f.Define(d, farm.ChangeOptions{})
	if err != nil {
		return driver.Status{}, steps, fmt.Errorf("import %s: %w", d.Name, err)
	}
	clock.mark("define")
	g := f.GuestOf(res.Def)
	if !start {
		os.Remove(migratingMark(d.Disk)) // a guest's disk now
		st, err := g.Status(ctx)
		return st, steps, err
	}
	undo := func(err error) (driver.Status, []MigrateStep, error) {
		g.Destroy(context.WithoutCancel(ctx), false)
		return driver.Status{}, steps, fmt.Errorf("import %s: %w", d.Name, err)
	}
	if _, err := g.Start(ctx); err != nil {
		return undo(err)
	}
	clock.mark("start")
	if err := g.WaitReady(ctx, timeout); err != nil {
		return undo(err)
	}
	clock.mark("wait_ready")
	st, err := g.Status(ctx)
	if err != nil {
		return undo(err)
	}
	os.Remove(migratingMark(d.Disk)) // a guest's disk now
	clock.mark("status")
	return st, steps, nil
}

// migratingMark names the file that says the disk beside it is a
// migration's copy, being received (claimDisk makes it, a successful
// import removes it): a copy an interrupted move left, which the next try
// resumes and a failed live one removes, unlike a destroyed guest's disk.
func migratingMark(disk string) string { return disk + ".migrating" }

// foreignDisk says why the disk a migration's copy goes to is not this
// migration's to write: a file there is one only when an interrupted
// migration left it (its mark is there too); anything else (the disk a
// guest of the same name left when it was destroyed here, which destroy
// keeps) would be overwritten by the copy. nil: none is there, or a copy.
func foreignDisk(disk string) error {
	if _, err := os.Stat(disk); err != nil {
		return nil
	}
	if _, err := os.Stat(migratingMark(disk)); err == nil {
		return nil
	}
	return foreignDiskError(disk)
}

// foreignDiskError is the error of a move refused by foreignDisk (on the
// far host, or here from its probe).
func foreignDiskError(disk string) error {
	return fmt.Errorf("%s exists there and is not a migration's copy (a guest of that name destroyed there keeps its disk): "+
		"the move would overwrite it; remove it there, or rename it, then migrate again: %w", disk, farm.ErrExists)
}

// claimDisk makes disk this migration's copy before a byte is written
// there: refused when foreignDisk says so, else its mark is written.
func claimDisk(disk string) error {
	if err := foreignDisk(disk); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(disk), 0o700); err != nil {
		return err
	}
	return os.WriteFile(migratingMark(disk), []byte(hostLabel()+"\n"), 0o600)
}

// farDefinition is the guest's definition for the far farm (JSON): the
// far farm gives it its own address and forwards, unless gateway is set:
// a bridged VM moving live keeps its address (it is in its memory), and
// gateway is the gateway it has (its farm's, or the one it kept itself),
// which the far farm keeps with an address of another subnet
// (farm.Definition.Gateway). The disk is the copy at disk, and a label
// says where it came from.
func farDefinition(d *farm.Definition, disk, gateway string) []byte {
	nd := *d
	nd.Disk, nd.Forwards, nd.DiskPlaced = disk, nil, true
	nd.Gateway = gateway
	if gateway == "" {
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

// ProbeFar asks host to's tinyfarm what a migration's probe asks about
// guest name there (`tinyfarm migrate probe`, which a cluster key may
// run): whether it is defined and runs there, and its address. A cluster
// daemon resuming a drain asks it whether a move made by a daemon that
// died went through.
func ProbeFar(ctx context.Context, to Remote, name string) (FarProbe, error) {
	c, err := to.Dial(ctx)
	if err != nil {
		return FarProbe{}, err
	}
	defer c.Close()
	p, err := askProbe(ctx, c, to, "migrate", "probe", name)
	if err != nil {
		return FarProbe{}, fmt.Errorf("host %s: %w", to.Label(), err)
	}
	return p, nil
}

// askProbe runs the far `tinyfarm migrate probe` (args) over c.
func askProbe(ctx context.Context, c *ssh.Client, to Remote, args ...string) (FarProbe, error) {
	out, err := to.tinyfarm(ctx, c, nil, args...)
	if err != nil {
		return FarProbe{}, err
	}
	var p FarProbe
	if err := json.Unmarshal(out, &p); err != nil || p.Disk == "" {
		return FarProbe{}, fmt.Errorf("far tinyfarm's probe answered %q: %v", abbrevBytes(out), err)
	}
	return p, nil
}

// awaitImport probes the far side (args: the probe's) until no import of
// the guest runs there: it ended (the guest is imported) or undid its
// definition (the guest did not come up there). An import waits timeout
// at most for its guest, after starting it.
func awaitImport(ctx context.Context, c *ssh.Client, to Remote, args []string, timeout time.Duration) (FarProbe, error) {
	deadline := time.Now().Add(timeout + 30*time.Second)
	for {
		select {
		case <-ctx.Done():
			return FarProbe{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		p, err := askProbe(ctx, c, to, args...)
		if err != nil || !p.Exists || !p.Importing {
			return p, err
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("the guest is defined there by an import that has not ended in %v (its disk %s is still marked %s): "+
				"if the tinyfarm there died, destroy the guest there, then migrate again: %w",
				timeout+30*time.Second, p.Disk, filepath.Base(migratingMark(p.Disk)), farm.ErrExists)
		}
	}
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
		p.AddressProblem = f.KeptAddressProblem(name, ip, mac)
	}
	if g, err := f.Guest(ctx, name); err == nil {
		p.Exists, p.Running = true, g.Running(ctx)
		p.IP, _, _ = strings.Cut(g.Def.IP, "/")
		_, err := os.Stat(migratingMark(p.Disk))
		p.Importing = err == nil && g.Def.Disk == p.Disk
	}
	p.ForeignDisk = !p.Exists && foreignDisk(p.Disk) != nil
	fk, err := ssh.EnsureFarmKey(f.StateDir())
	if err != nil {
		return FarProbe{}, fmt.Errorf("probe %s: %w", name, err)
	}
	p.FarmKey = fk.AuthorizedKey()
	return p, nil
}
