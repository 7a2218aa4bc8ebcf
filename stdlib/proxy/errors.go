package proxy

import "errors"

// Sentinel errors. Every error returned by this package that is caused by
// the caller's input wraps one of them, so a binding can map error kinds.
var (
	// ErrInvalid reports a malformed route: bad host name, port out of
	// range, bad listen address, or a configuration nginx rejects.
	ErrInvalid = errors.New("invalid")
	// ErrNotFound reports a guest name the Resolver does not know.
	ErrNotFound = errors.New("not found")
	// ErrConflict reports a host or listen address that is already routed
	// elsewhere, when the caller did not ask to replace it.
	ErrConflict = errors.New("conflict")
)
