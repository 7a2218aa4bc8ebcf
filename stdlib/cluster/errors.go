package cluster

import "errors"

var (
	// ErrInvalid is bad input: a name, an address, an option.
	ErrInvalid = errors.New("invalid")
	// ErrNotJoined: this host is in no cluster.
	ErrNotJoined = errors.New("not in a cluster")
	// ErrNoQuorum: a majority of the etcd members did not answer, so
	// nothing could be changed.
	ErrNoQuorum = errors.New("cluster lost quorum")
	// ErrTaken: the name, subnet, IP or uid range belongs to another.
	ErrTaken = errors.New("taken")
	// ErrNoRoom: no host (or no free address) fits.
	ErrNoRoom = errors.New("no room")
	// ErrNotFound: no such host, guest or route.
	ErrNotFound = errors.New("not found")
	// ErrJoinDenied: a join token was wrong, used or expired.
	ErrJoinDenied = errors.New("join denied")
)
