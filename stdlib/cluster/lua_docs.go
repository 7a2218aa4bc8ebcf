package cluster

import "github.com/tinyfarm/tinyfarm/engine"

func docs() []engine.Doc {
	return []engine.Doc{
		{Name: "cluster.hosts", Call: "cluster.hosts()",
			Summary: "Every host of this host's cluster, by name: {name, state (\"up\"/\"down\"), mem, committed, free,\ncpus, drivers, version, ssh_host_key, proxy}. A host is down once its lease ran out."},
		{Name: "cluster.place", Call: "cluster.place{mem, driver, strategy}", Opts: placeOpts{},
			Summary: "The host a new guest should go to: an up host with the driver and mem free, the one with\nthe most free (spread, the default) or the fullest that fits (pack).\nRaises (kind no_room) with every host's numbers when none fits.",
			Example: `local h = cluster.place{ mem = "128M", driver = "ns", strategy = "pack" }`},
		{Name: "cluster.claim", Call: "cluster.claim{name, host, mem, driver}", Opts: claimOpts{},
			Summary: "Claims a guest name cluster-wide on host, with an IP in the host's farm subnet and a\nuser-namespace uid range, in one etcd transaction: {name, host, ip, gateway, subnet, uid_base}. ok when\nthe same claim exists; raises (kind taken) when the name is another host's.",
			Example: `local g = cluster.claim{ name = "web7", host = h.name, mem = "128M" }`},
		{Name: "cluster.route", Call: "cluster.route{vhost, host, addr, guest}", Opts: routeOpts{},
			Summary: "Every host's proxy serves vhost: the host the guest runs on forwards to addr, the others to\nthat host's proxy (Host header kept). ok when the same route exists.",
			Example: `cluster.route{ vhost = "web7.example.com", host = g.host, addr = g.ip:match("^[^/]+") .. ":80", guest = "web7" }`},
		{Name: "cluster.release", Call: "cluster.release(name)",
			Summary: "Drops a guest's claim: its name, IP, uid range and memory are free again, its routes gone.\nok when there is no such claim."},
		{Name: "cluster.guests", Call: "cluster.guests()",
			Summary: "Every claimed guest: {name, host, ip, state}; state is \"unreachable\" while its host is down."},
		{Name: "cluster.guest", Call: "cluster.guest{name, disk, disks, base, mem, cpus, driver, layout, core, kernel, initrd, bootcodes, host_key, ip, accel, net, userns, net_raw, labels, disk_ro, autostart, autostart_priority, host}", Opts: remoteGuestOpts{},
			Summary: "Defines (or updates) a guest on another host of the cluster, through that host's tinyfarm\n(SSH with the host key from its facts, then `tinyfarm machine`), and returns it: start, stop,\nstatus, wait_ready, exec, read, write, ssh as a local guest's, and a target for tcz and persist.\ng:ssh() jumps through the host (its sshd must allow TCP forwarding); the host authorizes this\ncontroller's key in the guest and gives the guest's pinned host keys. Paths are on that host. Changes name host and guest: guest:HOST/NAME.",
			Example: `local g = cluster.guest{ name = "web7", host = cluster.place{ mem = "128M" }, disk = "/srv/web7.img" }
g:start()
tcz.install(g, "nginx")`},
		{Name: "cluster.run", Call: "cluster.run(host, playbook, vars, {check})", Opts: runOpts{},
			Summary: "Runs playbook (a file here) on host through its tinyfarm; the far run's changes join this\nrun's output and recap as they happen, each subject prefixed with the host (h2:guest:web7), its logs too. Returns\n{host, tasks, ok, changed, may_change, failed, skipped}; raises with the far error."},
		{Name: "cluster.login", Call: "cluster.login{key, user}", Opts: loginOpts{},
			Summary: "How this run logs into the cluster's hosts (before the first remote call): key (default: this\nhost's farm key, <state>/keys/farm_ed25519, whose .pub goes into each host's\n/root/.ssh/authorized_keys) and user (root)."},
	}
}
