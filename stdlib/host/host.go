// Package host acts on the machine tinyfarm runs on: run a command, read and
// write files. It is the smallest stdlib module and the reference for how
// the others report changes and honour check mode.
package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/internal/errtext"
	"github.com/tinyfarm/tinyfarm/internal/fsutil"
)

// RunOptions tune Run. The zero value runs with the caller's environment,
// no stdin and no timeout beyond ctx.
type RunOptions struct {
	Stdin   []byte            // fed to the command's stdin; default none
	Env     map[string]string // added to (and overriding) the inherited environment
	Dir     string            // working directory; default the caller's
	Timeout time.Duration     // 0: none beyond ctx
}

// Result is a finished command.
type Result struct {
	Code   int    `lua:"code"`
	Stdout []byte `lua:"stdout"`
	Stderr []byte `lua:"stderr"`
}

// ErrExit is wrapped by errors for commands that exited non-zero.
var ErrExit = errors.New("command failed")

// Run runs argv and waits. A command that ran returns its Result and a nil
// error whatever its exit code; use Check to turn a non-zero code into an
// error. Failing to start, a timeout or a cancelled ctx return an error.
func Run(ctx context.Context, argv []string, opts RunOptions) (Result, error) {
	if len(argv) == 0 {
		return Result{}, fmt.Errorf("run: empty command: %w", fs.ErrInvalid)
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = opts.Dir
	killGroupOnCancel(cmd)
	cmd.WaitDelay = 2 * time.Second
	if len(opts.Env) > 0 {
		keys := make([]string, 0, len(opts.Env))
		for k := range opts.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		cmd.Env = os.Environ()
		for _, k := range keys {
			cmd.Env = append(cmd.Env, k+"="+opts.Env[k])
		}
	}
	if opts.Stdin != nil {
		cmd.Stdin = bytes.NewReader(opts.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	if ctx.Err() != nil {
		return res, fmt.Errorf("run %s: %w", Describe(argv), ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		res.Code = ee.ExitCode()
		if res.Code < 0 { // killed by a signal
			res.Code = signalCode(ee)
		}
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("run %s: %w", Describe(argv), err)
	}
	return res, nil
}

// Check turns a non-zero exit into an error that quotes the end of stderr.
func Check(argv []string, r Result) error {
	if r.Code == 0 {
		return nil
	}
	tail := errtext.Tail(r.Stderr, 400)
	if tail != "" {
		tail = ": " + tail
	}
	return fmt.Errorf("run %s: exit status %d%s: %w", Describe(argv), r.Code, tail, ErrExit)
}

// Shell is the argv that runs cmd with /bin/sh.
func Shell(cmd string) []string { return []string{"/bin/sh", "-c", cmd} }

// Describe renders argv for messages: the script itself for a shell command.
func Describe(argv []string) string {
	if len(argv) == 3 && argv[0] == "/bin/sh" && argv[1] == "-c" {
		return "`" + argv[2] + "`"
	}
	return "`" + strings.Join(argv, " ") + "`"
}

// FileChange describes what a write did or would do.
type FileChange struct {
	Changed bool
	Created bool
	Diff    string // unified diff of the content ("" when only the mode changed)
	Detail  string // e.g. "mode 0644 -> 0600"
}

// PlanWrite computes what WriteFile would change, changing nothing.
// perm 0 keeps an existing file's mode (0644 for a new file).
func PlanWrite(path string, data []byte, perm fs.FileMode) (FileChange, error) {
	old, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return FileChange{Changed: true, Created: true, Diff: fsutil.Diff(path, nil, data), Detail: "created"}, nil
	}
	if err != nil {
		return FileChange{}, fmt.Errorf("write %s: %w", path, err)
	}
	fc := FileChange{Diff: fsutil.Diff(path, old, data)}
	fc.Changed = fc.Diff != ""
	if perm != 0 {
		st, err := os.Stat(path)
		if err != nil {
			return FileChange{}, fmt.Errorf("write %s: %w", path, err)
		}
		if st.Mode().Perm() != perm.Perm() {
			fc.Changed = true
			fc.Detail = fmt.Sprintf("mode %04o -> %04o", st.Mode().Perm(), perm.Perm())
		}
	}
	return fc, nil
}

// WriteFile makes path hold data with perm, atomically, and says whether
// anything changed. An unchanged file is not rewritten.
func WriteFile(path string, data []byte, perm fs.FileMode) (FileChange, error) {
	fc, err := PlanWrite(path, data, perm)
	if err != nil || !fc.Changed {
		return fc, err
	}
	if perm == 0 {
		perm = 0o644
		if st, err := os.Stat(path); err == nil {
			perm = st.Mode().Perm()
		}
	}
	return fc, fsutil.WriteFileAtomic(path, data, perm)
}

// ReadFile reads path; a missing file is (nil, false, nil).
func ReadFile(path string) ([]byte, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	return b, true, nil
}
