// Package crashtest kills tinyfarm with SIGKILL at random moments of an
// operation and lets a test check what it left behind.
//
// An operation is a real `tinyfarm` command (the binary is built once per
// test binary). Run measures how long the operation takes when nothing
// interrupts it, then repeats it: prepare the state, start the command in
// a process group of its own, SIGKILL the group at a moment drawn
// uniformly from [0, measured duration), and hand the result to the
// operation's check, which asserts the invariant (old or new, never half)
// and that a rerun converges.
//
// The number of trials per operation is $TINYFARM_CRASH_TRIALS, else
// DefaultTrials (small, for `make test`; `make crash` runs 50 each). The
// random source is seeded from $TINYFARM_CRASH_SEED when set, else from
// the clock; the seed is logged so a failing trial can be replayed.
package crashtest
