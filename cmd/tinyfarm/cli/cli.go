// Package cli is the tinyfarm command line: run, check, repl, version and
// shell completion. Main takes its stdio and arguments as parameters, so
// tests run the whole CLI in-process.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/engine/repl"
	"github.com/tinyfarm/tinyfarm/playbooks"
	"github.com/tinyfarm/tinyfarm/stdlib/all"
)

// Version is set at build time with -ldflags "-X .../cli.Version=v1.2.3".
var Version = "dev"

// exitError carries an exit code out of a cobra command.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

type runFlags struct {
	check    bool
	diff     bool
	extra    []string
	varsFile []string
	include  []string
	forks    int
	json     bool

	tags, skipTags []string
	startAt        string
	limit          string
	listTasks      bool
	forceHandlers  bool
	profile        bool
}

// Main runs the CLI and returns the process exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRoot(ctx, stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return engine.ExitOK
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		return engine.ExitUsage
	}
}

func newRoot(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "tinyfarm",
		Short: "A farm of tiny Tiny Core Linux guests on one server, driven by Lua playbooks",
		Long: `tinyfarm turns one small Linux server into a farm of Tiny Core Linux guests
and drives their whole lifecycle from Lua playbooks: build disks, boot guests
with memory quotas, install .tcz packages over SSH, persist what must survive,
and route every guest's web site through one port 80 by host name.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)

	runCmd := &cobra.Command{
		Use:   "run PLAYBOOK",
		Short: "Run a playbook",
		Example: `  tinyfarm run site.lua
  tinyfarm run site.lua -e guests=3 -e domain=example.com
  tinyfarm run site.lua --vars prod.json --forks 4 --diff
  tinyfarm run site.lua --json > events.jsonl`,
		Args: cobra.ExactArgs(1),
	}
	rf := &runFlags{}
	addRunFlags(runCmd, rf, true)
	runCmd.RunE = func(cmd *cobra.Command, args []string) error {
		return runPlaybook(ctx, args[0], rf, stdout, stderr)
	}

	checkCmd := &cobra.Command{
		Use:   "check PLAYBOOK",
		Short: "Show what a playbook would change, changing nothing (run --check)",
		Example: `  tinyfarm check site.lua
  tinyfarm check site.lua -e guests=5`,
		Args: cobra.ExactArgs(1),
	}
	cf := &runFlags{}
	addRunFlags(checkCmd, cf, false)
	checkCmd.RunE = func(cmd *cobra.Command, args []string) error {
		cf.check = true
		return runPlaybook(ctx, args[0], cf, stdout, stderr)
	}

	replCmd := &cobra.Command{
		Use:   "repl",
		Short: "An interactive Lua session with every tinyfarm module loaded",
		Long: `repl reads Lua chunks and prints their values: 1+1 prints 2, tables print
nested. Tab completes globals and module members, Ctrl-C cancels the line or
the running call, Ctrl-D exits. With stdin not a terminal it runs stdin as a
script: echo 'print(1)' | tinyfarm repl`,
		Example: `  tinyfarm repl
  tinyfarm repl -e guest=web1
  echo 'print(require("host").read("/etc/hostname"))' | tinyfarm repl`,
		Args: cobra.NoArgs,
	}
	pf := &runFlags{}
	addRunFlags(replCmd, pf, false)
	replCmd.RunE = func(cmd *cobra.Command, args []string) error {
		return runREPL(ctx, pf, stdin, stdout, stderr)
	}

	versionCmd := &cobra.Command{
		Use:   "version",
		Short: "Print version information",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, args []string) {
			fmt.Fprintf(stdout, "tinyfarm %s (%s, %s/%s, %s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, lua.PackageName+" "+lua.PackageVersion)
		},
	}
	root.AddCommand(runCmd, checkCmd, replCmd, versionCmd)
	root.AddCommand(newGuestsCmd(ctx, stdout, stderr))
	root.AddCommand(newProxyCmd(ctx, stdout, stderr))
	root.AddCommand(newClusterCmd(ctx, stdout, stderr))
	root.AddCommand(newMigrateCmd(ctx, stdin, stdout, stderr))
	root.AddCommand(newExecCmd(ctx, stdin, stdout, stderr), newSSHCmd(ctx, stdin, stdout, stderr), newLogsCmd(ctx, stdout, stderr))
	root.AddCommand(newPowerCmds(ctx, stdout, stderr)...)
	root.AddCommand(newDocCmd(stdout, stderr))
	root.AddCommand(newBootCmds(ctx, stdout, stderr)...)
	root.AddCommand(newMachineCmd(ctx, stdin, stdout, stderr))
	return root
}

func addRunFlags(cmd *cobra.Command, f *runFlags, withCheck bool) {
	fl := cmd.Flags()
	if withCheck {
		fl.BoolVar(&f.check, "check", false, "check mode: report what would change, change nothing")
	}
	fl.BoolVar(&f.diff, "diff", false, "print unified diffs of changed files (always on in check mode)")
	fl.StringArrayVarP(&f.extra, "extra-vars", "e", nil, "set vars.KEY=VALUE (repeatable; a JSON object or @FILE also works)")
	fl.StringArrayVar(&f.varsFile, "vars", nil, "load vars from a .json or .lua FILE (repeatable; -e wins)")
	fl.StringArrayVarP(&f.include, "include", "I", nil, "add DIR to the require path (repeatable)")
	fl.IntVar(&f.forks, "forks", 8, "how many parallel() items run at once")
	fl.BoolVar(&f.json, "json", false, "one JSON event per line on stdout; human output goes to stderr")
	fl.StringVarP(&f.limit, "limit", "l", "", "run only on these guests: names, globs, !exclusions, comma-separated (web1,web*,!web3)")
	if cmd.Name() == "repl" {
		return
	}
	fl.StringSliceVarP(&f.tags, "tags", "t", nil, "run only tasks with one of these tags (comma-separated; tasks tagged always run too)")
	fl.StringSliceVar(&f.skipTags, "skip-tags", nil, "skip tasks with any of these tags")
	fl.StringVar(&f.startAt, "start-at-task", "", "skip the tasks before the first one with this name (or glob)")
	fl.BoolVar(&f.listTasks, "list-tasks", false, "print the tasks that would run, with tags and targets, and run nothing")
	fl.BoolVar(&f.forceHandlers, "force-handlers", false, "run notified handlers even when the run fails")
	fl.BoolVar(&f.profile, "profile", false, "print the slowest tasks at the end of the run")
}

// StateDir is $TINYFARM_HOME, else /var/lib/tinyfarm for root, else the XDG
// state directory.
func StateDir() string {
	if d := os.Getenv("TINYFARM_HOME"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/tinyfarm"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "tinyfarm")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "state", "tinyfarm")
}

func engineOptions(f *runFlags, stdout, stderr io.Writer) (engine.Options, error) {
	vars, err := loadVars(f)
	if err != nil {
		return engine.Options{}, &engine.UsageError{Err: err}
	}
	if f.forks < 1 {
		return engine.Options{}, &engine.UsageError{Err: fmt.Errorf("--forks must be at least 1, got %d", f.forks)}
	}
	limit, err := engine.ParseLimit(f.limit)
	if err != nil {
		return engine.Options{}, &engine.UsageError{Err: err}
	}
	path := append([]string{}, f.include...)
	if p := os.Getenv("TINYFARM_PATH"); p != "" {
		path = append(path, filepath.SplitList(p)...)
	}
	opts := engine.Options{
		Modules:       all.Modules(),
		Check:         f.check,
		Diff:          f.diff,
		Vars:          vars,
		Forks:         f.forks,
		Path:          path,
		Lib:           playbooks.FS,
		StateDir:      StateDir(),
		Stdout:        stdout,
		Select:        engine.Selection{Tags: f.tags, SkipTags: f.skipTags, StartAt: f.startAt, Limit: limit},
		ListTasks:     f.listTasks,
		ForceHandlers: f.forceHandlers,
	}
	if f.json {
		opts.Reporter = engine.NewJSONReporter(stdout)
		opts.Stdout = stderr // keep stdout pure JSON
	}
	return opts, nil
}

func runPlaybook(ctx context.Context, path string, f *runFlags, stdout, stderr io.Writer) error {
	opts, err := engineOptions(f, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		return exitError{engine.ExitUsage}
	}
	if _, err := os.Stat(path); err != nil {
		fmt.Fprintf(stderr, "tinyfarm: playbook %s: no such file\n", path)
		return exitError{engine.ExitUsage}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	var prof *engine.Profiler
	if f.profile {
		if opts.Reporter == nil {
			opts.Reporter = engine.NewHumanReporter(stdout, opts.Check || opts.Diff)
		}
		prof = &engine.Profiler{Next: opts.Reporter}
		opts.Reporter = prof
	}
	eng, err := engine.New(opts)
	if err != nil {
		return err
	}
	defer eng.Close()
	runErr := eng.RunFile(ctx, path)
	if runErr != nil {
		fmt.Fprintln(stderr, runErr.Error())
		if code := engine.ExitCode(runErr); code == engine.ExitSyntax || code == engine.ExitUsage {
			return exitError{code} // nothing ran: no recap
		}
	}
	if f.listTasks {
		if runErr != nil {
			return exitError{engine.ExitCode(runErr)}
		}
		return nil
	}
	rec := eng.Finish(runErr)
	if prof != nil {
		w := stdout
		if f.json {
			w = stderr
		}
		prof.Print(w, 10)
	}
	code := engine.ExitCode(runErr)
	if ctx.Err() != nil {
		code = engine.ExitInterrupted
	} else if code == engine.ExitOK && rec.Failed > 0 {
		code = engine.ExitFailed
	}
	if code != engine.ExitOK {
		return exitError{code}
	}
	return nil
}

func runREPL(ctx context.Context, f *runFlags, stdin io.Reader, stdout, stderr io.Writer) error {
	opts, err := engineOptions(f, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "tinyfarm: %v\n", err)
		return exitError{engine.ExitUsage}
	}
	eng, err := engine.New(opts)
	if err != nil {
		return err
	}
	defer eng.Close()
	code := repl.Run(ctx, eng, repl.Config{
		Stdin: stdin, Stdout: stdout, Stderr: stderr,
		HistoryFile: filepath.Join(StateDir(), "repl_history"),
	})
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// loadVars merges --vars files, then -e values, into one table.
func loadVars(f *runFlags) (map[string]any, error) {
	vars := map[string]any{}
	for _, file := range f.varsFile {
		if err := loadVarsFile(file, vars); err != nil {
			return nil, err
		}
	}
	for _, e := range f.extra {
		switch {
		case strings.HasPrefix(e, "@"):
			if err := loadVarsFile(e[1:], vars); err != nil {
				return nil, err
			}
		case strings.HasPrefix(strings.TrimSpace(e), "{"):
			var m map[string]any
			if err := json.Unmarshal([]byte(e), &m); err != nil {
				return nil, fmt.Errorf("-e %s: %w", e, jsonError([]byte(e), err))
			}
			for k, v := range m {
				vars[k] = v
			}
		default:
			k, v, ok := strings.Cut(e, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("-e %q: want KEY=VALUE, a JSON object or @FILE", e)
			}
			vars[k] = v
		}
	}
	return vars, nil
}

func loadVarsFile(path string, into map[string]any) error {
	src, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("vars file %s: %w", path, err)
	}
	var m map[string]any
	switch filepath.Ext(path) {
	case ".json":
		if err := json.Unmarshal(src, &m); err != nil {
			return fmt.Errorf("vars file %s: %w", path, jsonError(src, err))
		}
	case ".lua":
		// A Lua vars file returns a table; it runs in a bare state with
		// only the base library, so it can compute values but not act.
		L := lua.NewState(lua.Options{SkipOpenLibs: true})
		defer L.Close()
		lua.OpenBase(L)
		lua.OpenString(L)
		lua.OpenTable(L)
		lua.OpenMath(L)
		fn, err := L.Load(strings.NewReader(string(src)), filepath.Base(path))
		if err != nil {
			return fmt.Errorf("vars file %s: %w", path, err)
		}
		L.Push(fn)
		if err := L.PCall(0, 1, nil); err != nil {
			return fmt.Errorf("vars file %s: %w", path, err)
		}
		t, ok := L.Get(-1).(*lua.LTable)
		if !ok {
			return fmt.Errorf("vars file %s: must return a table, returned %s", path, L.Get(-1).Type())
		}
		mm, ok := lx.ToGo(t).(map[string]any)
		if !ok {
			return fmt.Errorf("vars file %s: must return a table with names as keys", path)
		}
		m = mm
	default:
		return fmt.Errorf("vars file %s: unknown extension %q: want .json or .lua (a .lua file returns a table)", path, filepath.Ext(path))
	}
	for k, v := range m {
		into[k] = v
	}
	return nil
}

// jsonError names the line and column of a JSON syntax or type error.
func jsonError(src []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	line, col := 1, 1
	for _, c := range src[:min(max(int(off)-1, 0), len(src))] { // Offset is just past the bad byte
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return fmt.Errorf("line %d, column %d: invalid JSON: %w", line, col, err)
}
