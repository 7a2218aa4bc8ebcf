// Package errkind makes the sentinel errors of tinyfarm's Go APIs carry
// their class, so one mapping (lx.KindOf) gives every Lua module the same
// err.kind for the same class and no module keeps its own table.
//
// A sentinel made here says only its own message, and errors.Is matches it
// and the standard error of its class: fs.ErrNotExist (kind not_found),
// fs.ErrInvalid (invalid) or errors.ErrUnsupported (unsupported). Go API
// packages may import it: it knows nothing of Lua.
package errkind

import (
	"errors"
	"io/fs"
)

type sentinel struct {
	msg   string
	class error
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Unwrap() error { return s.class }

// NotFound is a sentinel of class fs.ErrNotExist.
func NotFound(msg string) error { return &sentinel{msg, fs.ErrNotExist} }

// Invalid is a sentinel of class fs.ErrInvalid: bad input the caller can fix.
func Invalid(msg string) error { return &sentinel{msg, fs.ErrInvalid} }

// Unsupported is a sentinel of class errors.ErrUnsupported.
func Unsupported(msg string) error { return &sentinel{msg, errors.ErrUnsupported} }

// Kind returns a new sentinel error of a kind of its own, for failures no
// class names ("no_quorum", "taken"): lx.KindOf reports kind for it and
// for every error that wraps it.
func Kind(kind, msg string) error { return &ownKind{msg, kind} }

type ownKind struct{ msg, kind string }

func (k *ownKind) Error() string { return k.msg }
func (k *ownKind) Kind() string  { return k.kind }
