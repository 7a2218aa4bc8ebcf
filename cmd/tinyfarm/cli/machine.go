package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/playbooks"
	"github.com/tinyfarm/tinyfarm/stdlib/all"
	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
)

// newMachineCmd is `tinyfarm machine`: the machine protocol on stdin and
// stdout (see cluster.MachineProtocol), what a controller runs over SSH to
// drive this host's guests and playbooks. Hidden: it is for programs.
func newMachineCmd(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:    "machine",
		Short:  "Speak the machine protocol (JSON lines) on stdin and stdout, for a cluster controller",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cluster.Version = Version
			fm := farm.New(StateDir(), farm.Options{Drivers: farm.DefaultDrivers()})
			defer fm.Close()
			host := ""
			if cfg, err := cluster.LoadConfig(cluster.Dir(StateDir())); err == nil {
				host = cfg.Host
			}
			// A controller gone leaves stdout a broken pipe: a write there
			// must fail (EPIPE) and end the runs at their next step (see
			// MachineServer.Serve), not kill this process with SIGPIPE in
			// the middle of one. Notify, unlike Ignore, leaves SIGPIPE's
			// default to the commands the runs start.
			broken := make(chan os.Signal, 1)
			signal.Notify(broken, syscall.SIGPIPE)
			defer signal.Stop(broken)
			s := &cluster.MachineServer{Farm: fm, Host: host, Run: machineRun}
			if err := s.Serve(ctx, stdin, stdout); err != nil {
				fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
				return exitError{engine.ExitFailed}
			}
			return nil
		},
	}
}

// machineRun runs a playbook a controller sent, written under its own
// name in a directory of its own (runs of one playbook may overlap), its
// events streamed back. Its require path is this host's.
func machineRun(ctx context.Context, r cluster.MachineRun, emit func(json.RawMessage)) (json.RawMessage, error) {
	rec, err := runSent(ctx, r, func(ev engine.Event) {
		if b, err := json.Marshal(ev); err == nil {
			emit(b)
		}
	})
	if rec == nil {
		return nil, err
	}
	b, merr := json.Marshal(rec)
	if merr != nil {
		return nil, merr
	}
	return b, err
}

// runSent runs the playbook; its recap is nil when the run did not start.
func runSent(ctx context.Context, r cluster.MachineRun, emit func(engine.Event)) (*engine.Recap, error) {
	name := filepath.Base(r.Name)
	if name == "." || name == "/" || strings.HasPrefix(name, ".") {
		name = "playbook.lua"
	}
	if err := os.MkdirAll(filepath.Join(StateDir(), "machine"), 0o700); err != nil {
		return nil, fmt.Errorf("machine run %s: %w", name, err)
	}
	dir, err := os.MkdirTemp(filepath.Join(StateDir(), "machine"), "run-")
	if err != nil {
		return nil, fmt.Errorf("machine run %s: %w", name, err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(r.Source), 0o600); err != nil {
		return nil, fmt.Errorf("machine run %s: %w", name, err)
	}
	eng, err := engine.New(engine.Options{
		Modules: all.Modules(), Check: r.Check, Vars: r.Vars, Lib: playbooks.FS, StateDir: StateDir(),
		Stdout:   io.Discard,
		Reporter: reporterFunc(emit),
	})
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	runErr := eng.RunFile(ctx, path)
	if code := engine.ExitCode(runErr); code == engine.ExitSyntax || code == engine.ExitUsage {
		return nil, runErr
	}
	rec := eng.Finish(runErr)
	if runErr != nil {
		return &rec, runErr
	}
	return &rec, nil
}

// reporterFunc is an engine.Reporter that hands every event to a function.
type reporterFunc func(engine.Event)

func (f reporterFunc) Event(ev engine.Event) { f(ev) }
