package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// Ad-hoc commands act on guests without a playbook: exec, ssh, logs,
// start, stop, restart. GUEST is a name or a pattern as --limit reads it
// (web1, 'web*', web1,web2, 'web*,!web3').

func newFarm() *farm.Farm {
	return farm.New(StateDir(), farm.Options{Drivers: farm.DefaultDrivers()})
}

// pickGuests resolves a GUEST argument (and --limit) to defined guests,
// sorted by name. An exact name that is not defined is a usage error with
// a suggestion; a pattern that matches nothing is one too.
func pickGuests(ctx context.Context, fm *farm.Farm, arg, limit string) ([]*farm.Guest, error) {
	pat, err := engine.ParseLimit(arg)
	if err != nil {
		return nil, err
	}
	lim, err := engine.ParseLimit(limit)
	if err != nil {
		return nil, err
	}
	defs, err := fm.List()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range defs {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	var out []*farm.Guest
	for _, n := range names {
		if pat.Match(n) && lim.Match(n) {
			g, err := fm.Guest(ctx, n)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		hint := ""
		best := 3
		for _, n := range names {
			if d := lx.Distance(arg, n); d < best {
				best, hint = d, fmt.Sprintf(" (did you mean %q?)", n)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("no guest matches %q: the farm has no guests (tinyfarm guests)", arg)
		}
		return nil, fmt.Errorf("no guest matches %q%s; guests: %s", arg, hint, strings.Join(names, ", "))
	}
	return out, nil
}

func isPattern(arg string) bool { return strings.ContainsAny(arg, "*?[,:!&") }

func usageErr(stderr io.Writer, err error) error {
	fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
	return exitError{engine.ExitUsage}
}

func newExecCmd(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var limit string
	cmd := &cobra.Command{
		Use:   "exec GUEST -- COMMAND [ARG...]",
		Short: "Run a command in one guest (exit code passed through) or in several (output prefixed)",
		Long: `exec runs COMMAND in the guest: in its namespaces (ns guests) or over SSH
with the pinned host key. One word after -- runs through /bin/sh -c, so pipes
work when quoted; several words run as an argument list.

With one guest, stdin is forwarded (when it is not a terminal) and the exit
code is the command's. GUEST may be a pattern as --limit reads it ('web*',
web1,web2, 'web*,!web3'): then each output line is prefixed by the guest
name, the guests run at once and the exit code is the first non-zero one.`,
		Example: `  tinyfarm exec web1 -- uptime
  tinyfarm exec web1 -- 'ps | grep nginx'
  tinyfarm exec 'web*' -- cat /etc/hostname
  tar c site | tinyfarm exec web1 -- tar x -C /srv`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usageErr(stderr, errors.New("exec: want GUEST -- COMMAND (the command after --)"))
			}
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			fm := newFarm()
			defer fm.Close()
			guests, err := pickGuests(ctx, fm, args[0], limit)
			if err != nil {
				return usageErr(stderr, err)
			}
			argv := args[1:]
			if len(argv) == 1 {
				argv = []string{"/bin/sh", "-c", argv[0]}
			}
			if len(guests) == 1 && !isPattern(args[0]) {
				opts := driver.ExecOptions{Stdout: stdout, Stderr: stderr}
				if f, ok := stdin.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
					opts.Stdin = stdin
				}
				res, err := guests[0].Exec(ctx, argv, opts)
				if err != nil {
					fmt.Fprintf(stderr, "tinyfarm: exec %s: %v\n", guests[0].Def.Name, err)
					return exitError{engine.ExitFailed}
				}
				if res.Code != 0 {
					return exitError{res.Code}
				}
				return nil
			}
			return execMany(ctx, guests, argv, stdout, stderr)
		},
	}
	cmd.Flags().StringVarP(&limit, "limit", "l", "", "only guests also matching this pattern")
	return cmd
}

// execMany runs argv in every guest at once, each output line prefixed
// with the guest's name.
func execMany(ctx context.Context, guests []*farm.Guest, argv []string, stdout, stderr io.Writer) error {
	width := 0
	for _, g := range guests {
		width = max(width, len(g.Def.Name))
	}
	var mu sync.Mutex
	codes := make([]int, len(guests))
	var wg sync.WaitGroup
	for i, g := range guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prefix := fmt.Sprintf("%-*s | ", width, g.Def.Name)
			out := &prefixWriter{mu: &mu, w: stdout, prefix: prefix}
			errw := &prefixWriter{mu: &mu, w: stderr, prefix: prefix}
			res, err := g.Exec(ctx, argv, driver.ExecOptions{Stdout: out, Stderr: errw})
			out.Flush()
			errw.Flush()
			switch {
			case err != nil:
				mu.Lock()
				fmt.Fprintf(stderr, "%s%v\n", prefix, err)
				mu.Unlock()
				codes[i] = engine.ExitFailed
			case res.Code != 0:
				mu.Lock()
				fmt.Fprintf(stderr, "%sexit status %d\n", prefix, res.Code)
				mu.Unlock()
				codes[i] = res.Code
			}
		}()
	}
	wg.Wait()
	for _, c := range codes {
		if c != 0 {
			return exitError{c}
		}
	}
	return nil
}

// prefixWriter writes whole lines, each with a prefix, under a shared lock
// so lines of different guests never interleave.
type prefixWriter struct {
	mu     *sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf[:i])
		p.mu.Unlock()
		p.buf = p.buf[i+1:]
	}
}

// Flush writes a last line without a newline.
func (p *prefixWriter) Flush() {
	if len(p.buf) > 0 {
		p.mu.Lock()
		fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.buf)
		p.mu.Unlock()
		p.buf = nil
	}
}

func newSSHCmd(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "ssh GUEST",
		Short: "An interactive shell in a guest over SSH, with its pinned host key",
		Long: `ssh opens the guest user's login shell over the farm's SSH connection: the
farm key authenticates, the guest's host key is pinned (never trusted on first
use). With stdin not a terminal, the shell reads its commands from stdin.`,
		Example: `  tinyfarm ssh web1
  echo 'cat /etc/hostname' | tinyfarm ssh web1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fm := newFarm()
			defer fm.Close()
			g, err := fm.Guest(ctx, args[0])
			if errors.Is(err, farm.ErrNotFound) {
				_, err = pickGuests(ctx, fm, args[0], "") // the message with a suggestion
				return usageErr(stderr, err)
			}
			if err != nil {
				return usageErr(stderr, err)
			}
			c, err := g.Conn(ctx)
			if err != nil {
				fmt.Fprintf(stderr, "tinyfarm: ssh %s: %v\n", args[0], err)
				return exitError{engine.ExitFailed}
			}
			code, err := c.Shell(ctx, ssh.ShellOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr, Term: os.Getenv("TERM")})
			if err != nil {
				fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
				return exitError{engine.ExitFailed}
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
}

func newLogsCmd(ctx context.Context, stdout, stderr io.Writer) *cobra.Command {
	var follow bool
	var lines int
	cmd := &cobra.Command{
		Use:   "logs GUEST",
		Short: "A guest's console output; -f follows it",
		Example: `  tinyfarm logs web1
  tinyfarm logs web1 -n 20 -f`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			fm := newFarm()
			defer fm.Close()
			guests, err := pickGuests(ctx, fm, args[0], "")
			if err == nil && (len(guests) != 1 || isPattern(args[0])) {
				err = fmt.Errorf("logs: name one guest, %q matches %d", args[0], len(guests))
			}
			if err != nil {
				return usageErr(stderr, err)
			}
			g := guests[0]
			text, err := g.Console(lines)
			if err != nil {
				return err
			}
			io.WriteString(stdout, text)
			if !follow {
				return nil
			}
			// The console log only grows while the guest runs; a restart
			// starts it afresh, so a shorter file is read from its start.
			seen, err := g.Console(0)
			if err != nil {
				return err
			}
			n := len(seen)
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-tick.C:
				}
				all, err := g.Console(0)
				if err != nil {
					return err
				}
				if len(all) < n {
					n = 0
				}
				io.WriteString(stdout, all[n:])
				n = len(all)
			}
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing what the guest writes (Ctrl-C ends)")
	cmd.Flags().IntVarP(&lines, "lines", "n", 0, "only the last N lines (0: all)")
	return cmd
}

// newPowerCmds are start, stop and restart.
func newPowerCmds(ctx context.Context, stdout, stderr io.Writer) []*cobra.Command {
	mk := func(verb, short string, act func(ctx context.Context, g *farm.Guest, grace time.Duration) (string, error)) *cobra.Command {
		var wait bool
		var timeout, grace time.Duration
		var limit string
		cmd := &cobra.Command{
			Use:     verb + " GUEST",
			Short:   short,
			Example: fmt.Sprintf("  tinyfarm %s web1\n  tinyfarm %s 'web*,!web3'", verb, verb),
			Args:    cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
				defer stop()
				fm := newFarm()
				defer fm.Close()
				guests, err := pickGuests(ctx, fm, args[0], limit)
				if err != nil {
					return usageErr(stderr, err)
				}
				failed := false
				for _, g := range guests {
					what, err := act(ctx, g, grace)
					if err == nil && wait && verb != "stop" {
						err = g.WaitReady(ctx, timeout)
					}
					if err != nil {
						fmt.Fprintf(stderr, "%s: %v\n", g.Def.Name, err)
						failed = true
						continue
					}
					fmt.Fprintf(stdout, "%s: %s\n", g.Def.Name, what)
				}
				if failed {
					return exitError{engine.ExitFailed}
				}
				return nil
			},
		}
		if verb != "stop" {
			cmd.Flags().BoolVar(&wait, "wait", true, "wait until the guest is ready (console marker, then SSH)")
			cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
		}
		if verb != "start" {
			cmd.Flags().DurationVar(&grace, "grace", 10*time.Second, "how long a clean shutdown may take before the guest is killed")
		}
		cmd.Flags().StringVarP(&limit, "limit", "l", "", "only guests also matching this pattern")
		return cmd
	}
	return []*cobra.Command{
		mk("start", "Start guests (already running: nothing to do)", func(ctx context.Context, g *farm.Guest, _ time.Duration) (string, error) {
			did, err := g.Start(ctx)
			return pick(did, "started", "already running"), err
		}),
		mk("stop", "Stop guests: a clean shutdown, killed after --grace", func(ctx context.Context, g *farm.Guest, grace time.Duration) (string, error) {
			did, err := g.Stop(ctx, grace)
			return pick(did, "stopped", "already stopped"), err
		}),
		mk("restart", "Stop, then start guests", func(ctx context.Context, g *farm.Guest, grace time.Duration) (string, error) {
			if _, err := g.Stop(ctx, grace); err != nil {
				return "", err
			}
			_, err := g.Start(ctx)
			return "restarted", err
		}),
	}
}

func pick(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}
