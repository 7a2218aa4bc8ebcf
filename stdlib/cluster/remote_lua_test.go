//go:build linux

package cluster_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/minicore"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// remoteFarm is the fault tests' three hosts, each also with its own sshd
// (dropbear in its namespace, its own host key, published in its facts)
// that lets h1's farm key in: h1 is the controller.
type remoteFarm struct {
	*farm
	sshd    map[string]guesttest.HostSSHD
	wrapper string // the tinyfarm the hosts' sshd sessions run
}

func newRemoteFarm(t *testing.T) *remoteFarm {
	guesttest.NeedRoot(t)
	f := &remoteFarm{farm: newFarm(t, 3), sshd: map[string]guesttest.HostSSHD{}}
	// Over SSH the test binary stands in for tinyfarm as for the CLI:
	// a wrapper sets its role.
	f.wrapper = filepath.Join(t.TempDir(), "tinyfarm")
	os.WriteFile(f.wrapper, []byte("#!/bin/sh\nexport TF_CLUSTER_TEST_ROLE=tinyfarm\nexec "+f.exe+` "$@"`+"\n"), 0o755)
	key, err := ssh.EnsureFarmKey(f.hosts[0].home)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range f.hosts {
		f.sshd[h.name] = guesttest.StartHostSSHD(t, h.ns, h.ip, key.AuthorizedKey())
	}
	f.flags = func(h *netHost) []string {
		return []string{"--ssh-host-key", f.sshd[h.name].KeyFile, "--binary", f.wrapper}
	}
	f.start()
	return f
}

// runJSON runs playbook src on host h with --json and returns its events.
func (f *remoteFarm) runJSON(h *netHost, src string, check bool, vars ...string) ([]engine.Event, string, error) {
	pb := filepath.Join(f.t.TempDir(), "controller.lua")
	os.WriteFile(pb, []byte(src), 0o644)
	args := []string{"run", pb, "--json"}
	if check {
		args = append(args, "--check")
	}
	for _, v := range vars {
		args = append(args, "-e", v)
	}
	out, errs, err := f.tf(h, args...)
	var evs []engine.Event
	for _, line := range strings.Split(out, "\n") {
		var ev engine.Event
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Type != "" {
			evs = append(evs, ev)
		}
	}
	return evs, out + errs, err
}

// changes are the subjects a run reported, with their status: a call
// outside any task is a task of its own, "module.action subject".
func changes(evs []engine.Event) map[string]engine.Status {
	m := map[string]engine.Status{}
	for _, ev := range evs {
		switch {
		case ev.Type == "change" && ev.Change != nil:
			m[ev.Change.Subject] = ev.Change.Status
		case ev.Type == "task_end":
			if _, subject, ok := strings.Cut(ev.Task, " "); ok {
				m[subject] = engine.Status(ev.Status)
			}
		}
	}
	return m
}

func logs(evs []engine.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		if ev.Type == "log" {
			b.WriteString(ev.Msg + "\n")
		}
	}
	return b.String()
}

// TestRemoteGuests: h1 drives real ns guests on h2 and h3 (the default
// configuration: user namespaces, bridge networking) through each host's
// sshd and `tinyfarm machine`: defined and started in parallel(), exec'd,
// a file written and read, a .tcz of the mini release installed, status;
// check mode changes nothing there; cluster.run's far events join the
// recap named by host; g:ssh() jumps through the guest's host, pinning
// the guest's host key (another one is refused); a host whose sshd shows
// another key than its facts is refused.
func TestRemoteGuests(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: three etcd members, sshds and guests")
	}
	t0 := time.Now()
	step := func(s string) { t.Logf("%5.1fs %s", time.Since(t0).Seconds(), s) }
	rel := minicore.Require(t)
	f := newRemoteFarm(t)
	h1 := f.hosts[0]
	step("three hosts joined, each with its sshd")

	vars := []string{"mirror=file://" + rel.Mirror}
	for _, h := range f.hosts[1:] {
		// Guests log in as tc, as image.build's do: its host's farm key.
		d := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: h.home,
			Bootlocal: "mkdir -p /home/tc/.ssh && cp /root/.ssh/authorized_keys /home/tc/.ssh/ && chown -R tc /home/tc/.ssh"})
		vars = append(vars, "disk_"+h.name+"="+d.Path, "key_"+h.name+"="+d.HostKey)
		if h.name == "h2" {
			vars = append(vars, "disk_ghost="+guesttest.CopyDisk(t, d.Path))
		}
	}
	step("two disks built")
	// The guests go with the test, through their hosts' tinyfarm.
	destroyed := map[string]bool{}
	destroy := func(h *netHost) {
		if destroyed[h.name] {
			return
		}
		destroyed[h.name] = true
		far := f.playbook("far-destroy.lua", `
local colinux = require("colinux")
for _, g in ipairs(colinux.list()) do colinux.get(g.name):destroy() end`)
		out, errs, err := f.tf(h1, "run", f.playbook("destroy.lua", `require("cluster").run(vars.host, "`+far+`")`), "-e", "host="+h.name)
		if err != nil {
			t.Errorf("destroying %s's guests: %v\n%s%s", h.name, err, out, errs)
		}
	}
	t.Cleanup(func() {
		for _, h := range f.hosts[1:] {
			destroy(h)
		}
	})

	controller := `
local cluster, tcz = require("cluster"), require("tcz")
tcz.mirror{ url = vars.mirror }
local gs = {}
parallel({ "h2", "h3" }, function(h)
  local g = cluster.guest{ name = "web-" .. h, host = h, disk = vars["disk_" .. h], host_key = vars["key_" .. h], mem = "64M" }
  g:start()
  g:wait_ready{ timeout = 60 }
  gs[h] = g
end)
local g = gs.h2
log("exec: " .. g:exec("cat /proc/sys/kernel/hostname; id -u").stdout)
g:write("/tmp/hello.txt", "written from h1\n")
log("read: " .. g:read("/tmp/hello.txt"))
tcz.install(g, "pcre2")
-- An SSH session with the guest, jumped through h2: h2 lets this
-- controller's key in and gives the guest's pinned host keys.
local s = g:ssh()
log("ssh: " .. s:run("cat /proc/sys/kernel/hostname; id -un; echo $SSH_CLIENT").stdout)
s:write("/tmp/via-ssh.txt", "sftp from h1\n")
log("ssh read: " .. s:read("/tmp/via-ssh.txt") .. "same conn: " .. tostring(g:ssh():run("cat /tmp/hello.txt").stdout))
local st = g:status()
log("status: " .. st.state .. " on " .. st.host .. " " .. tostring(g))
local r = cluster.run("h3", "` + f.playbook("far.lua", `
task("touch a file in the guest", function()
  require("colinux").get(vars.guest):exec("touch /tmp/far-" .. vars.msg)
end)
log("far says " .. vars.msg)`) + `", { guest = "web-h3", msg = "hi" })
log("far recap: changed " .. r.changed .. " of " .. r.tasks)
`
	evs, out, err := f.runJSON(h1, controller, false, vars...)
	if err != nil {
		t.Fatalf("controller run: %v\n%s", err, out)
	}
	step("controller run done")
	got, lg := changes(evs), logs(evs)
	for subject, want := range map[string]engine.Status{
		"guest:h2/web-h2":                                                          engine.StatusChanged, // defined, started
		"guest:h3/web-h3":                                                          engine.StatusChanged,
		"guest:h2/web-h2/tmp/hello.txt":                                            engine.StatusChanged,
		"guest:h2/web-h2/usr/local/tce.installed/pcre2":                            engine.StatusChanged,
		"h3:guest:web-h3: /bin/sh -c touch /tmp/far-hi":                            engine.StatusChanged,
		"guest:h2/web-h2: /bin/sh -c cat /proc/sys/kernel/hostname; id -u":         engine.StatusChanged,
		"guest:h2/web-h2: cat /proc/sys/kernel/hostname; id -un; echo $SSH_CLIENT": engine.StatusChanged,
		"guest:h2/web-h2:/tmp/via-ssh.txt":                                         engine.StatusChanged,
	} {
		if got[subject] != want {
			t.Errorf("change %q: %q, want %q", subject, got[subject], want)
		}
	}
	for _, want := range []string{"exec: web-h2\n0\n", "read: written from h1\n", "status: running on h2 guest web-h2 on h2 (ns, 10.80.1.", // h2's cluster subnet, from its join
		"h3: far says hi", "far recap: changed 1 of 1",
		// The guest sees h2's end of the farm bridge as its SSH client.
		"ssh: web-h2\ntc\n10.80.1.1 ", "ssh read: sftp from h1\nsame conn: written from h1\n"} {
		if !strings.Contains(lg, want) {
			t.Errorf("logs lack %q:\n%s", want, lg)
		}
	}
	if t.Failed() {
		t.Fatalf("events:\n%s", out)
	}
	// The package is in the guest on h2, seen from h2's own tinyfarm.
	check := f.playbook("check.lua", `local g = require("colinux").get("web-h2")
assert(g:read("/usr/local/tce.installed/pcre2"), "no pcre2 marker")
log("far-file " .. g:exec("ls /tmp/").stdout:gsub("\n", " "))
local _, n = g:read("/home/tc/.ssh/authorized_keys"):gsub(" tinyfarm%-cluster%-controller\n", "")
log("controller keys " .. n)`)
	if evs, out, err := f.runJSON(h1, `log(require("cluster").run("h2", "`+check+`").ok)`, false); err != nil {
		t.Fatalf("check on h2: %v\n%s", err, out)
	} else if l := logs(evs); !strings.Contains(l, "hello.txt") || !strings.Contains(l, "controller keys 1\n") {
		t.Errorf("h2's view of its guest: %s", l)
	}
	step("exec, write/read, tcz.install, cluster.run checked")

	// Check mode: a new remote guest and a stop are reported, nothing
	// changes on h2.
	evs, out, err = f.runJSON(h1, `
local cluster = require("cluster")
local g = cluster.guest{ name = "ghost", host = "h2", disk = vars.disk_ghost }
g:start()
local web = cluster.guest{ name = "web-h2", host = "h2", disk = vars.disk_h2, host_key = vars.key_h2, mem = "64M" }
-- g:ssh() in check mode: the key is in from the real run; a command that
-- may change something is not run, a readonly one is.
local s = web:ssh()
s:run("touch /tmp/check-ssh")
log("check ssh: " .. s:run("ls /tmp", { readonly = true }).stdout:gsub("\n", " "))
web:stop()
-- web-h3 never let this controller in: check mode does not add the key.
local ok, err = pcall(function()
  cluster.guest{ name = "web-h3", host = "h3", disk = vars.disk_h3, host_key = vars.key_h3, mem = "64M" }:ssh()
end)
log("h3 check ssh: " .. tostring(err))
`, true, vars...)
	if err != nil {
		t.Fatalf("check run: %v\n%s", err, out)
	}
	got = changes(evs)
	// ghost's start says may_change: it depends on the define before it.
	if got["guest:h2/ghost"] != engine.StatusMayChange || got["guest:h2/web-h2"] != engine.StatusChanged ||
		got["guest:h2/web-h2: touch /tmp/check-ssh"] != engine.StatusMayChange {
		t.Errorf("check mode changes: %v", got)
	}
	if l := logs(evs); !strings.Contains(l, "check ssh: ") || !strings.Contains(l, "via-ssh.txt") || strings.Contains(l, "check-ssh") ||
		!strings.Contains(l, "guest web-h3 on h3: ssh: in check mode: the guest does not let this controller's key in yet") {
		t.Errorf("check mode ssh session: %s", l)
	}
	list, _, _ := f.runJSON(h1, `
local r = require("cluster").run("h2", "`+f.playbook("list.lua", `for _, g in ipairs(require("colinux").list()) do log(g.name .. "=" .. g.state) end`)+`")`, false)
	if l := logs(list); !strings.Contains(l, "web-h2=running") || strings.Contains(l, "ghost") {
		t.Errorf("after check mode, h2 has: %s", l)
	}
	step("check mode changed nothing on h2")

	// A guest whose sshd shows another key than the one its host's farm
	// pinned: h2's own wait_ready refuses it, and so does the controller's
	// g:ssh() through h2, naming guest, host and the fix.
	// First web-h2 again in a new run: its key is not added twice.
	evs, out, err = f.runJSON(h1, `
local web = require("cluster").guest{ name = "web-h2", host = "h2", disk = vars.disk_h2, host_key = vars.key_h2, mem = "64M" }
log("keys " .. web:ssh():run("grep -c tinyfarm-cluster-controller .ssh/authorized_keys", { readonly = true }).stdout)
local g = require("cluster").guest{ name = "imp", host = "h2", disk = vars.disk_ghost, host_key = vars.key_h3, mem = "64M" }
g:start()
local ok, err = pcall(g.wait_ready, g)
log("wait_ready: " .. tostring(err))
g:ssh()
`, false, vars...)
	got = changes(evs)
	if l := logs(evs); err == nil || !strings.Contains(l, "keys 1\n") || got["guest:h2/web-h2"] == engine.StatusChanged ||
		!strings.Contains(l, ": host h2: guest imp: wait_ready: ") || !strings.Contains(l, "host key mismatch") ||
		!strings.Contains(out, "guest imp on h2: ssh: its sshd (10.80.1.") ||
		!strings.Contains(out, "shows another host key than the one h2's farm pinned for it (its host_key), so it is refused") {
		t.Errorf("a guest showing another host key than its pinned one: %v\n%s%s", err, l, out)
	}
	step("a guest showing another host key is refused; a key is authorized once")

	// h3's sshd replaced by one with another key: its facts still carry
	// the first one, so h3 is refused, named, with the fix.
	destroy(f.hosts[2])
	f.sshd["h3"].Stop()
	guesttest.StartHostSSHD(t, f.hosts[2].ns, f.hosts[2].ip, mustFarmKey(t, h1.home))
	_, out, err = f.runJSON(h1, `require("cluster").run("h3", "`+check+`")`, false)
	if err == nil || !strings.Contains(out, "host h3: its sshd on "+f.hosts[2].ip+" shows another host key than the one it published in the cluster facts") ||
		!strings.Contains(out, "tinyfarm cluster start") {
		t.Errorf("h3 with another host key: %v\n%s", err, out)
	}
	step("a host showing another key is refused")
}

func mustFarmKey(t *testing.T, home string) string {
	k, err := ssh.EnsureFarmKey(home)
	if err != nil {
		t.Fatal(err)
	}
	return k.AuthorizedKey()
}

// playbook writes a playbook file for the test and returns its path.
func (f *farm) playbook(name, src string) string {
	p := filepath.Join(f.t.TempDir(), name)
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		f.t.Fatal(err)
	}
	return p
}
