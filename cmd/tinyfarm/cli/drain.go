package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// farmMover drains this host's farm for its cluster daemon: the guests of
// the state dir, moved with g:migrate's ops.Migrate (live when the guest
// runs and its driver can, offline otherwise) to a cluster host reached as
// cluster.HostRemote says.
type farmMover struct {
	cfg *cluster.Config
}

var _ cluster.MoveFinder = farmMover{}

func (m farmMover) farm() *farm.Farm {
	return farm.New(StateDir(), farm.Options{Drivers: farm.DefaultDrivers()})
}

func (m farmMover) Guests(ctx context.Context) ([]cluster.LocalGuest, error) {
	f := m.farm()
	defer f.Close()
	defs, err := f.List()
	if err != nil {
		return nil, err
	}
	drivers := farm.DefaultDrivers()
	var out []cluster.LocalGuest
	for _, d := range defs {
		g, err := f.Guest(ctx, d.Name)
		if err != nil {
			return nil, err
		}
		lg := cluster.LocalGuest{Name: d.Name, Mem: d.MemBytes, Driver: d.Driver, Running: g.Running(ctx)}
		// Live when the far side (the same tinyfarm) can receive it.
		_, target := drivers[d.Driver].(driver.LiveTarget)
		lg.Live = lg.Running && target
		out = append(out, lg)
	}
	return out, nil
}

func (m farmMover) Move(ctx context.Context, name string, to cluster.Host, live bool, running func(cluster.MoveResult), back func()) (cluster.MoveResult, error) {
	remote, err := cluster.PeerRemote(m.cfg, to)
	if err != nil {
		return cluster.MoveResult{}, err
	}
	f := m.farm()
	defer f.Close()
	g, err := f.Guest(ctx, name)
	if err != nil {
		return cluster.MoveResult{}, err
	}
	conv := func(r ops.MigrateResult) cluster.MoveResult {
		return cluster.MoveResult{Live: r.Live, Downtime: r.Downtime, Duration: r.Duration, IP: r.IP}
	}
	o := ops.MigrateOptions{Live: live, Running: func(r ops.MigrateResult) { running(conv(r)) }, Back: back}
	res, err := ops.Migrate(ctx, g, remote, o)
	if live && errors.Is(err, driver.ErrUnsupported) {
		// This guest cannot move live (shares, a bridged address it could
		// not keep there...): Migrate refused before touching it.
		o.Live = false
		res, err = ops.Migrate(ctx, g, remote, o)
	}
	return conv(res), err
}

// RunsOn asks host on's tinyfarm, through its gate (the migration's
// probe), whether guest name runs there: a move a daemon that died made.
func (m farmMover) RunsOn(ctx context.Context, name string, on cluster.Host) (string, bool, error) {
	remote, err := cluster.PeerRemote(m.cfg, on)
	if err != nil {
		return "", false, err
	}
	p, err := ops.ProbeFar(ctx, remote, name)
	if err != nil {
		return "", false, err
	}
	return p.IP, p.Running, nil
}

// newDrainCmds are `cluster drain`, `cluster undrain` and the hidden
// `cluster gate` (the forced command of the hosts' cluster keys).
func newDrainCmds(ctx context.Context, stdout, stderr io.Writer, fail func(error) error) []*cobra.Command {
	connect := func() (*cluster.Client, error) {
		cfg, err := cluster.LoadConfig(cluster.Dir(StateDir()))
		if err != nil {
			return nil, err
		}
		return cluster.Connect(ctx, cfg)
	}
	var dry, asJSON bool
	drain := &cobra.Command{
		Use:   "drain HOST",
		Short: "Move every guest of HOST to other hosts (live when it can), switching their routes",
		Long: `drain asks HOST's cluster daemon to move each of its guests to another host:
the target is chosen by the cluster's placement (HOST excluded), the guest
moves with g:migrate's migration (live for a running qemu guest, offline
otherwise: stopped, copied, started there), and once it runs there its
routes and claim switch to the new host in one etcd transaction. HOST is
cordoned meanwhile and after (placement skips it; cluster status shows it)
until "cluster undrain HOST". One line per guest as it moves, then a
summary. Interrupting the command does not stop the drain; running it
again attaches to it, or, once done, drains what is left.`,
		Example: `  tinyfarm cluster drain h3 --dry-run
  tinyfarm cluster drain h3`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return fail(err)
			}
			defer c.Close()
			host := args[0]
			req, attached, err := c.RequestDrain(ctx, host, dry)
			if err != nil {
				return fail(err)
			}
			if attached && !asJSON {
				fmt.Fprintf(stdout, "a drain of %s is %s since %s: following it\n", host, req.State, req.Requested.Local().Format(time.TimeOnly))
			}
			printed := map[string]string{}
			var steps []cluster.DrainStep
			final, err := c.WatchDrain(ctx, host, req.ID, dry, func(r cluster.DrainRequest, s []cluster.DrainStep) {
				steps = s
				if asJSON {
					return
				}
				for _, st := range s {
					if printed[st.Guest] == st.State || (st.State == cluster.StepPlanned && !dry) || st.State == cluster.StepMoving {
						continue
					}
					printed[st.Guest] = st.State
					fmt.Fprintln(stdout, stepLine(st))
				}
			})
			if err != nil {
				return fail(err)
			}
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if steps == nil {
					steps = []cluster.DrainStep{}
				}
				enc.Encode(map[string]any{"request": final, "steps": steps})
			} else {
				fmt.Fprintln(stdout, drainSummary(final, steps))
			}
			if final.Error != "" {
				return fail(errors.New(final.Error))
			}
			if final.Failed > 0 {
				return exitError{engine.ExitFailed}
			}
			return nil
		},
	}
	drain.Flags().BoolVar(&dry, "dry-run", false, "print the plan (each guest's target and mode); move nothing")
	drain.Flags().BoolVar(&asJSON, "json", false, "print the request and its steps as JSON at the end")

	undrain := &cobra.Command{
		Use:   "undrain HOST",
		Short: "Let placement use HOST again after a drain",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return fail(err)
			}
			defer c.Close()
			if err := c.Undrain(ctx, args[0]); err != nil {
				return fail(err)
			}
			fmt.Fprintf(stdout, "%s takes new guests again\n", args[0])
			return nil
		},
	}

	gate := &cobra.Command{
		Use:    "gate",
		Short:  "The forced command of the other hosts' cluster keys: runs only the migration commands",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			line := os.Getenv("SSH_ORIGINAL_COMMAND")
			margs, err := cluster.GateArgs(line, StateDir())
			if err != nil {
				return fail(err)
			}
			in, err := gateInput(cmd.InOrStdin(), margs[1])
			if err != nil {
				return fail(err)
			}
			if code := Main(ctx, margs, in, stdout, stderr); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	return []*cobra.Command{drain, undrain, gate}
}

// gateInput checks the guest definition import and incoming read from
// stdin (its disk inside this state dir) and hands on the same bytes.
func gateInput(stdin io.Reader, sub string) (io.Reader, error) {
	var def []byte
	var rest io.Reader
	switch sub {
	case "import":
		b, err := io.ReadAll(io.LimitReader(stdin, 1<<20))
		if err != nil {
			return nil, err
		}
		def, rest = b, bytes.NewReader(b)
	case "incoming":
		br := bufio.NewReaderSize(stdin, 1<<20)
		line, err := br.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("cluster gate: incoming: definition: %w", err)
		}
		def, rest = line, io.MultiReader(bytes.NewReader(line), br)
	default:
		return stdin, nil
	}
	var d farm.Definition
	if err := json.Unmarshal(def, &d); err != nil {
		return nil, fmt.Errorf("cluster gate: %s: definition: %w", sub, err)
	}
	files := append([]string{d.Base, d.Core, d.Kernel}, append(d.Disks, d.Initrds...)...)
	if err := cluster.CheckGateDefinition(StateDir(), d.Disk, files, len(d.Shares)); err != nil {
		return nil, err
	}
	return rest, nil
}

// stepLine is one guest's line: where it went, how, and its downtime.
func stepLine(s cluster.DrainStep) string {
	switch s.State {
	case cluster.StepPlanned:
		return fmt.Sprintf("%-16s %s -> %s  %s (planned)", s.Guest, s.From, s.To, s.Mode)
	case cluster.StepFailed:
		to := s.To
		if to == "" {
			to = "?"
		}
		return fmt.Sprintf("%-16s %s -> %s  FAILED: %s", s.Guest, s.From, to, s.Error)
	}
	line := fmt.Sprintf("%-16s %s -> %s  %-7s down %s, took %s", s.Guest, s.From, s.To, s.Mode,
		s.Downtime.Round(time.Millisecond), s.Duration.Round(100*time.Millisecond))
	if len(s.Routes) > 0 {
		line += fmt.Sprintf(", %d route(s) switched", len(s.Routes))
	}
	if s.Note != "" {
		line += " (" + s.Note + ")"
	}
	return line
}

func drainSummary(r cluster.DrainRequest, steps []cluster.DrainStep) string {
	if len(steps) == 0 && r.Error == "" {
		return fmt.Sprintf("nothing to do: %s has no guests", r.Host)
	}
	if r.DryRun {
		return fmt.Sprintf("plan for %s: %d guest(s); nothing moved (--dry-run)", r.Host, len(steps))
	}
	var worst time.Duration
	for _, s := range steps {
		worst = max(worst, s.Downtime)
	}
	took := r.Finished.Sub(r.Started).Round(100 * time.Millisecond)
	return fmt.Sprintf("drained %s: %d moved, %d failed in %s (longest downtime %s); it takes no new guests until: tinyfarm cluster undrain %s",
		r.Host, r.Moved, r.Failed, took, worst.Round(time.Millisecond), r.Host)
}
