// Package repl is tinyfarm's interactive Lua session: real line editing and
// history (ergochat/readline), multi-line chunks, expressions printed
// without `return`, tables pretty-printed, and tab completion of globals and
// of module and table members.
package repl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"

	"github.com/ergochat/readline"
	lua "github.com/yuin/gopher-lua"
	"golang.org/x/term"

	"github.com/tinyfarm/tinyfarm/engine"
)

// Config wires a session to its terminal. Zero fields default to the
// process's stdio; IsTerminal defaults to checking Stdin.
type Config struct {
	Stdin       io.Reader
	Stdout      io.Writer
	Stderr      io.Writer
	HistoryFile string // "" disables history
	IsTerminal  func() bool
}

const (
	prompt     = "tinyfarm> "
	contPrompt = "      ... "
)

// Run runs the session until EOF and returns an exit code: 0, or for a
// non-terminal stdin the exit code of the script's failure.
func Run(ctx context.Context, eng *engine.Engine, cfg Config) int {
	if cfg.Stdin == nil {
		cfg.Stdin = os.Stdin
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.IsTerminal == nil {
		cfg.IsTerminal = func() bool {
			f, ok := cfg.Stdin.(*os.File)
			return ok && term.IsTerminal(int(f.Fd()))
		}
	}
	preloadGlobals(ctx, eng)
	if !cfg.IsTerminal() {
		return runScript(ctx, eng, cfg)
	}
	return interactive(ctx, eng, cfg)
}

// runScript runs all of stdin as one chunk, like `lua -`.
func runScript(ctx context.Context, eng *engine.Engine, cfg Config) int {
	src, err := io.ReadAll(cfg.Stdin)
	if err != nil {
		fmt.Fprintf(cfg.Stderr, "tinyfarm: read stdin: %v\n", err)
		return engine.ExitUsage
	}
	_, err = eng.Eval(ctx, string(src), "stdin", false)
	if err != nil {
		fmt.Fprintln(cfg.Stderr, err.Error())
	}
	return engine.ExitCode(err)
}

func interactive(ctx context.Context, eng *engine.Engine, cfg Config) int {
	if cfg.HistoryFile != "" {
		_ = os.MkdirAll(filepath.Dir(cfg.HistoryFile), 0o700)
	}
	rl, err := readline.NewFromConfig(&readline.Config{
		Prompt:          prompt,
		HistoryFile:     cfg.HistoryFile,
		HistoryLimit:    5000,
		AutoComplete:    &completer{L: eng.State(), docs: eng.Docs()},
		InterruptPrompt: "^C",
		// Saved by hand, so an entry of several lines is one entry.
		DisableAutoSaveHistory: true,
		EOFPrompt:              "",
		Stdin:                  cfg.Stdin,
		Stdout:                 cfg.Stdout,
		Stderr:                 cfg.Stderr,
	})
	if err != nil {
		fmt.Fprintf(cfg.Stderr, "tinyfarm: repl: %v\n", err)
		return engine.ExitUsage
	}
	defer rl.Close()
	fmt.Fprintf(cfg.Stdout, "tinyfarm repl — modules are globals (%s). Tab completes, :help NAME documents, Ctrl-C cancels, Ctrl-D exits.\n",
		strings.Join(moduleNames(eng), ", "))

	var buf strings.Builder
	for {
		if buf.Len() == 0 {
			rl.SetPrompt(prompt)
		} else {
			rl.SetPrompt(contPrompt)
		}
		line, err := rl.ReadLine()
		if errors.Is(err, readline.ErrInterrupt) {
			if buf.Len() == 0 && line == "" {
				fmt.Fprintln(cfg.Stdout, "(Ctrl-D or os.exit() to leave)")
			}
			buf.Reset()
			continue
		}
		if err != nil { // io.EOF: Ctrl-D
			fmt.Fprintln(cfg.Stdout)
			return 0
		}
		if buf.Len() == 0 && strings.TrimSpace(line) == "" {
			continue
		}
		if buf.Len() == 0 && command(ctx, eng, line, cfg.Stdout, cfg.Stderr) {
			_ = rl.SaveToHistory(line)
			continue
		}
		if buf.Len() > 0 {
			buf.WriteByte('\n')
		}
		buf.WriteString(line)
		chunk := buf.String()
		vals, err := evalInterruptible(ctx, eng, chunk)
		if engine.IsIncomplete(err) {
			continue
		}
		buf.Reset()
		for _, h := range historyEntries(chunk) {
			_ = rl.SaveToHistory(h)
		}
		if err != nil {
			fmt.Fprintln(cfg.Stderr, err.Error())
			continue
		}
		for _, v := range vals {
			fmt.Fprintln(cfg.Stdout, Show(v, 4))
		}
	}
}

// historyEntries is how a chunk goes into the history: a chunk of several
// lines becomes one line (joined by spaces) when that keeps its meaning
// (no comment or long string that a join would change), else its lines.
func historyEntries(chunk string) []string {
	lines := strings.Split(chunk, "\n")
	if len(lines) == 1 || strings.Contains(chunk, "--") || strings.Contains(chunk, "[[") || strings.Contains(chunk, "[=") {
		return lines
	}
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return []string{strings.Join(lines, " ")}
}

// evalInterruptible runs a chunk with Ctrl-C bound to cancelling it, so an
// interrupt stops the running call and not the session.
func evalInterruptible(ctx context.Context, eng *engine.Engine, chunk string) ([]lua.LValue, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	defer signal.Stop(sig)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-sig:
			cancel()
		case <-done:
		}
	}()
	return eng.Eval(ctx, chunk, "repl", true)
}

// preloadGlobals makes every preloaded module a global, so `host.read(...)`
// works without a require. A module that fails to load is left out.
func preloadGlobals(ctx context.Context, eng *engine.Engine) {
	for _, name := range moduleNames(eng) {
		_, _ = eng.Eval(ctx, fmt.Sprintf("%s = require(%q)", name, name), "repl-init", false)
	}
}

func moduleNames(eng *engine.Engine) []string {
	L := eng.State()
	var names []string
	pre, ok := L.GetField(L.GetGlobal("package"), "preload").(*lua.LTable)
	if !ok {
		return nil
	}
	pre.ForEach(func(k, _ lua.LValue) { names = append(names, k.String()) })
	sort.Strings(names)
	return names
}
