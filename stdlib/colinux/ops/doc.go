// Package ops holds the operations that make, move or merge guests of a
// farm: Clone (a new guest from an existing one's disks), Checkpoint and
// Restore (a guest saved to a file and back), Migrate (offline or live, to
// another tinyfarm host over SSH, with the far side's Import, Incoming,
// ProbeMigration and the chunked disk sync) and Unify (identical file
// blocks shared between guests' disks). Each is a function of a
// farm.Guest or farm.Farm, asking the guest's driver for the abilities it
// needs (package driver), never for its name.
package ops
