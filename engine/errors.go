package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"

	"github.com/tinyfarm/tinyfarm/engine/lx"
)

// Exit codes of the tinyfarm CLI.
const (
	ExitOK          = 0   // the playbook ran to the end
	ExitFailed      = 1   // a task or call failed (recap shows which)
	ExitUsage       = 2   // bad command line, missing playbook, bad vars file
	ExitSyntax      = 3   // the playbook does not parse
	ExitInterrupted = 130 // Ctrl-C or SIGTERM
)

// ScriptError is a failure raised while running Lua. Err is the Go error
// underneath when a module raised one, so errors.Is works through it.
type ScriptError struct {
	File      string // playbook file of the failing line; "" if unknown
	Line      int    // 0 if unknown
	Msg       string // full message, starting with "file:line:" when known
	Kind      string // lx kind: not_found, unsupported, timeout, canceled, invalid, error
	Syntax    bool   // the chunk did not parse
	Traceback string
	Err       error
}

func (e *ScriptError) Error() string { return e.Msg }
func (e *ScriptError) Unwrap() error { return e.Err }

// UsageError is a mistake on the command line or in the inputs around the
// playbook (missing file, unreadable vars).
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// ExitCode maps an error from RunFile/Eval to a CLI exit code.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ue *UsageError
	var se *ScriptError
	switch {
	case errors.As(err, &ue):
		return ExitUsage
	case errors.As(err, &se) && se.Syntax:
		return ExitSyntax
	case errors.Is(err, context.Canceled):
		return ExitInterrupted
	}
	return ExitFailed
}

var posRe = regexp.MustCompile(`^([^:\s][^:]*):(\d+):`)

func syntaxError(err error) *ScriptError {
	se := &ScriptError{Syntax: true, Kind: lx.KindInvalid, Err: err}
	var ae *lua.ApiError
	msg := err.Error()
	if errors.As(err, &ae) && ae.Cause != nil {
		se.Err = ae.Cause
		var pe *parse.Error
		if errors.As(ae.Cause, &pe) {
			// gopher-lua says "name line:12(column:3) near 'x': msg"; we say
			// "name:12: syntax error near 'x': msg" like every other error.
			msg = fmt.Sprintf("%s:%d: syntax error near '%s'", pe.Pos.Source, pe.Pos.Line, pe.Token)
			if pe.Message != "syntax error" {
				msg += ": " + pe.Message
			}
			se.File, se.Line = pe.Pos.Source, pe.Pos.Line
			if pe.Pos.Line == parse.EOF {
				msg = fmt.Sprintf("%s: syntax error: unexpected end of file after '%s' (a missing 'end' or bracket?)", pe.Pos.Source, pe.Token)
				se.Line = 0
			}
		} else {
			msg = ae.Cause.Error()
			fillPos(se, msg)
		}
	}
	se.Msg = msg
	return se
}

func (e *Engine) scriptError(ctx context.Context, err error) *ScriptError {
	se := &ScriptError{Kind: lx.KindError, Err: err, Msg: err.Error()}
	var ae *lua.ApiError
	if errors.As(err, &ae) {
		se.Traceback = ae.StackTrace
		if le, ok := lx.ErrorFromValue(ae.Object); ok {
			se.Err, se.Msg, se.Kind = le, le.Error(), le.Kind()
		} else if ae.Object != nil {
			se.Msg = e.hintFor(lx.ToStringValue(ae.Object))
			se.Err = errors.New(se.Msg)
		}
	}
	if ctx.Err() != nil && !errors.Is(se.Err, context.Canceled) {
		// The VM noticed the cancellation as a plain Lua error; keep the
		// cause visible to errors.Is and the exit code.
		se.Err = fmt.Errorf("%s: %w", se.Msg, context.Cause(ctx))
		se.Kind = lx.KindCanceled
		se.Msg = "interrupted: " + strings.TrimSpace(se.Msg)
	}
	fillPos(se, se.Msg)
	return se
}

func fillPos(se *ScriptError, msg string) {
	if m := posRe.FindStringSubmatch(msg); m != nil {
		se.File = m[1]
		se.Line, _ = strconv.Atoi(m[2])
	}
}
