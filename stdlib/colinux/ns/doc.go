// Package ns runs Tiny Core guests as Linux processes in their own PID,
// mount, UTS, IPC, network and cgroup namespaces, with cgroup memory, CPU
// and process limits, the freezer for suspend, and a veth on the farm
// bridge: the "ns" driver of the colinux module.
//
// Each guest has a small monitor process (the tinyfarm-guest binary, or
// this one re-executed when there is none: see Main and guestexe) that
// outlives tinyfarm: it starts the guest's init, wires its console and
// network, records runtime.json and, when the guest ends, exit.json, then
// removes its cgroups and veth. Once the guest runs, the monitor
// re-executes itself (settle) to drop what its setup used. Any later
// tinyfarm process re-adopts the guest from those files.
package ns
