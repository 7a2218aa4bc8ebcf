package cluster

import (
	"errors"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"
)

// The sentinels carry their Lua error kind (errkind), so the module
// raises them with lx.Raise like every other module.
var (
	// ErrInvalid is bad input: a name, an address, an option.
	ErrInvalid = errkind.Invalid("invalid")
	// ErrNotJoined: this host is in no cluster.
	ErrNotJoined = errkind.NotFound("not in a cluster")
	// ErrNoQuorum: a majority of the etcd members did not answer, so
	// nothing could be changed.
	ErrNoQuorum = errkind.Kind("no_quorum", "cluster lost quorum")
	// ErrTaken: the name, subnet, IP or uid range belongs to another.
	ErrTaken = errkind.Kind("taken", "taken")
	// ErrNoRoom: no host (or no free address) fits.
	ErrNoRoom = errkind.Kind("no_room", "no room")
	// ErrNotFound: no such host, guest or route.
	ErrNotFound = errkind.NotFound("not found")
	// ErrUnreachable: a host is down (its lease expired) or cannot be
	// reached over SSH.
	ErrUnreachable = errkind.Kind("unreachable", "host unreachable")
	// ErrJoinDenied: a join token was wrong, used or expired.
	ErrJoinDenied = errors.New("join denied")
)
