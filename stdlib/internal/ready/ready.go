// Package ready holds the one fact the guest image and the guest drivers
// share: the console line a guest built by tinyfarm prints once it has
// booted. It lives below both, so the image builder (which writes the line
// into bootlocal.sh) does not depend on the drivers (which wait for it).
package ready

// Marker is the line Tiny Core guests built by tinyfarm print on their
// console once boot (bootsync, bootlocal started) is done.
const Marker = "tinyfarm: guest ready"

// Line is the bootlocal.sh line that prints Marker on the console.
const Line = "echo '" + Marker + "' >/dev/console"
