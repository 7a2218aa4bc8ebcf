package proxy

import "github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"

// Sentinel errors. Every error returned by this package that is caused by
// the caller's input wraps one of them, and its class (errkind) gives its Lua kind.
var (
	// ErrInvalid reports a malformed route: bad host name, port out of
	// range, bad listen address, or a configuration nginx rejects.
	ErrInvalid = errkind.Invalid("invalid")
	// ErrNotFound reports a guest name the Resolver does not know.
	ErrNotFound = errkind.NotFound("not found")
	// ErrConflict reports a host or listen address that is already routed
	// elsewhere, when the caller did not ask to replace it.
	ErrConflict = errkind.Invalid("conflict")
)
