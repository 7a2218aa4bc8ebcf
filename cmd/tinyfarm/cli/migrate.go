package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ops"
)

// newMigrateCmd is the far side of g:migrate: the migrating tinyfarm runs
// these over SSH (DESIGN.md: no cluster protocol, tinyfarm driven over
// the SSH channel). Hidden: not meant for people.
func newMigrateCmd(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	fm := func() *farm.Farm {
		return farm.New(StateDir(), farm.Options{Drivers: farm.DefaultDrivers()})
	}
	cmd := &cobra.Command{
		Use:    "migrate",
		Short:  "The receiving side of g:migrate (run over SSH by another tinyfarm)",
		Hidden: true,
	}
	var shares []string
	var probeIP, probeMAC string
	probe := &cobra.Command{
		Use:  "probe NAME [--share HOSTDIR]...",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := ops.ProbeMigration(ctx, fm(), args[0], shares, probeIP, probeMAC)
			if err != nil {
				return err
			}
			return json.NewEncoder(stdout).Encode(p)
		},
	}
	probe.Flags().StringArrayVar(&shares, "share", nil, "a share's host directory the guest needs there")
	probe.Flags().StringVar(&probeIP, "ip", "", "the bridge address (with prefix) a guest moving live keeps")
	probe.Flags().StringVar(&probeMAC, "mac", "", "the MAC a guest moving live keeps")
	var chunk int64
	sums := &cobra.Command{
		Use:  "sums PATH",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ops.ChunkSums(args[0], chunk, stdout)
		},
	}
	sums.Flags().Int64Var(&chunk, "chunk", 1<<20, "chunk size in bytes")
	var size int64
	var chunkSums bool
	recv := &cobra.Command{
		Use:  "recv --size N PATH",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return ops.ReceiveChunks(args[0], size, stdin, stdout, chunkSums)
		},
	}
	recv.Flags().Int64Var(&size, "size", 0, "the file's size")
	recv.Flags().BoolVar(&chunkSums, "chunk-sums", false, "answer each written chunk's sha256, not the whole file's")
	var timeout time.Duration
	var noStart bool
	imp := &cobra.Command{
		Use:  "import [--no-start] < guest.json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var d farm.Definition
			if err := json.NewDecoder(stdin).Decode(&d); err != nil {
				return fmt.Errorf("import: definition: %w", err)
			}
			f := fm()
			defer f.Close()
			st, steps, err := ops.Import(ctx, f, d, !noStart, timeout)
			if err != nil {
				return err
			}
			def, _ := f.Get(d.Name)
			ip := ""
			if def != nil {
				ip, _, _ = strings.Cut(def.IP, "/")
			}
			return json.NewEncoder(stdout).Encode(map[string]any{"state": string(st.State), "ip": ip, "pid": strconv.Itoa(st.PID), "steps": steps})
		},
	}
	imp.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long the guest has to come up")
	imp.Flags().BoolVar(&noStart, "no-start", false, "define only")
	var inTimeout time.Duration
	incoming := &cobra.Command{
		Use:  "incoming < guest.json-line + migration stream",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			br := bufio.NewReaderSize(stdin, 1<<20)
			line, err := br.ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("incoming: definition: %w", err)
			}
			var d farm.Definition
			if err := json.Unmarshal(line, &d); err != nil {
				return fmt.Errorf("incoming: definition: %w", err)
			}
			f := fm()
			defer f.Close()
			// A guard process discards the guest if this one dies in the
			// middle (see ops.StartIncomingGuard).
			guard := func() (func(), error) {
				exe, err := os.Executable()
				if err != nil {
					return nil, fmt.Errorf("incoming guard: %w", err)
				}
				return ops.StartIncomingGuard([]string{exe, "migrate", "guard", d.Name}, append(os.Environ(), "TINYFARM_HOME="+StateDir()))
			}
			ir, err := ops.Incoming(ctx, f, d, br, ops.IncomingOptions{Timeout: inTimeout, Guard: guard,
				Running: func() { fmt.Fprintln(cmd.ErrOrStderr(), ops.IncomingRunning) }})
			if err != nil {
				return err
			}
			return json.NewEncoder(stdout).Encode(ir)
		},
	}
	incoming.Flags().DurationVar(&inTimeout, "timeout", 60*time.Second, "how long the state has to load and the guest to answer")
	guard := &cobra.Command{
		Use:  "guard NAME < pipe",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := fm()
			defer f.Close()
			return ops.GuardIncoming(ctx, f, args[0], stdin)
		},
	}
	var discardDisk bool
	discard := &cobra.Command{
		Use:  "discard [--disk] NAME",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f := fm()
			defer f.Close()
			return ops.DiscardIncoming(ctx, f, args[0], discardDisk)
		},
	}
	discard.Flags().BoolVar(&discardDisk, "disk", false, "remove the migration's disk copy too")
	revoke := &cobra.Command{
		Use:  "revoke NAME < key",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := io.ReadAll(io.LimitReader(stdin, 16<<10))
			if err != nil {
				return fmt.Errorf("revoke: key: %w", err)
			}
			f := fm()
			defer f.Close()
			return ops.RevokeKey(ctx, f, args[0], strings.TrimSpace(string(b)))
		},
	}
	cmd.AddCommand(probe, sums, recv, imp, incoming, guard, discard, revoke)
	return cmd
}
