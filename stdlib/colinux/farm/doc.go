// Package farm defines and drives tinyfarm's guests: definitions kept in
// the state directory (<state>/guests/NAME/guest.json), the farm network
// and each guest's address on it, a lifecycle (define, start, stop,
// status, wait_ready, exec, suspend, resume, destroy), live redefinition,
// autostart at boot, shares, Tiny Core release defaults, host sizing
// (Host, Plan), and the drivers behind it (drivers.go registers ns, qemu
// and colinux; see package driver for what a driver is).
//
// Operations across guests (clone, checkpoint, migrate, unify) are in
// package ops; the Lua binding is package colinux. Nothing here imports
// Lua.
package farm
