package colinux

import "github.com/tinyfarm/tinyfarm/engine"

// docs documents the module for `tinyfarm doc`; the options are the
// structs the functions decode, so the docs list exactly the keys accepted.
func docs() []engine.Doc {
	return []engine.Doc{
		{Name: "colinux.guest", Call: "colinux.guest{name, disk, disks, mem, cpus, driver, layout, core, kernel, initrd, bootcodes, forward, host_key, ip, accel, net, userns, net_raw, labels, disk_ro, autostart, autostart_priority, autostart_delay}",
			Summary: "Defines or updates a guest (persisted in the state dir; IP and MAC allocated once and kept)\nand returns it. A disk must exist and be no other guest's (unless all set disk_ro). A running\nguest gets new mem and cpus live; other changes say \"restart needed\"; its disk cannot change.", Opts: guestOpts{},
			Example: `local g = colinux.guest{ name = "web1", disk = image.build{ path = "web1.img", size = "96M" }, mem = "128M" }`},
		{Name: "colinux.get", Call: "colinux.get(name)", Summary: "The guest called name, or nil."},
		{Name: "colinux.list", Call: "colinux.list{limit}", Opts: listOpts{},
			Summary: "{{name, driver, state, ip, mem}...}; with limit = true only the guests inside --limit."},
		{Name: "colinux.plan", Call: "colinux.plan{granularity, reserve, guests}", Opts: planOpts{},
			Summary: "How many guests of granularity fit: {guests, granularity, usable, mem, reserve}."},
		{Name: "colinux.network", Call: "colinux.network{bridge, subnet, remove}", Opts: networkOpts{},
			Summary: "The farm's bridge and subnet, kept in the state dir; without options it only reports;\nremove = true takes the bridge and its guards off the host."},
		{Name: "colinux.restore", Call: "colinux.restore(file, {name, timeout})", Opts: restoreOpts{},
			Summary: "A qemu guest running on from a g:checkpoint file, under its own or a new name."},
		{Name: "colinux.unify", Call: "colinux.unify{guests, exclude, dry_run}", Opts: unifyOpts{},
			Summary: "Identical files of stopped guests share their storage copy-on-write (reflink filesystems)."},
		{Name: "g:start", Call: "g:start()", Summary: "Boots the guest unless it runs; changed when it started it."},
		{Name: "g:stop", Call: "g:stop{grace}", Opts: stopOpts{}, Summary: "A clean shutdown, killed after grace; changed when it was running."},
		{Name: "g:restart", Call: "g:restart{grace}", Opts: stopOpts{}, Summary: "Stop (if running), then start."},
		{Name: "g:wait_ready", Call: "g:wait_ready{timeout}", Opts: readyOpts{},
			Summary: "Waits for the guest's ready marker on its console, then one SSH handshake."},
		{Name: "g:exec", Call: "g:exec(cmd, {check, stdin, readonly, timeout})", Opts: execOpts{},
			Summary: "{code, stdout, stderr} of a command (a string for /bin/sh -c, or an argv list) in the guest.",
			Example: `local r = g:exec("pidof nginx", { check = false, readonly = true })`},
		{Name: "g:write", Call: "g:write(path, content, {mode, owner})", Opts: writeOpts{},
			Summary: "A file in the running guest: atomic, ok when equal, a diff in check mode."},
		{Name: "g:template", Call: "g:template(path, src_or_file, vars, {mode, owner})", Opts: writeOpts{},
			Summary: "g:write of a rendered template (see template.render).",
			Example: `g:template("/etc/motd", "welcome to {{ name }}\n", { name = g.name })`},
		{Name: "g:clone", Call: "g:clone{name, ip, hostname, disk}", Opts: cloneOpts{},
			Summary: "A new guest from this one: new name, IP, MAC, hostname and host key."},
		{Name: "g:share", Call: "g:share{host, guest, ro}", Opts: shareOpts{},
			Summary: "A host directory in the guest from its next start (bind mount, virtio-9p, cofs)."},
		{Name: "g:destroy", Call: "g:destroy{disk}", Opts: destroyOpts{}, Summary: "Stop and forget the guest (and its disk with disk = true)."},
		{Name: "g:migrate", Call: "g:migrate{to, live, grace, timeout, disk, keep_key}", Opts: migrateOpts{},
			Summary: "Moves the guest to another tinyfarm host over SSH (to = {address, port, user, key, host_key,\nstate_dir, binary, name, timeout}); live = true for running qemu guests."},
	}
}
