// Package colinuxd is the colinux driver's runner for coLinux 0.7: it
// writes the configuration rendered by package conf and runs
// colinux-daemon on a Windows host.
//
// coLinux runs only on 32-bit Windows (2000 to 7) with its kernel driver
// installed and admin rights; on every other system Start and Attach
// return an error wrapping driver.ErrUnsupported, while Config still
// renders the configuration (g:conf() works everywhere). Here it is tested
// by golden files (package conf) and a cross-build; the Windows part has
// not run on a real coLinux host.
//
// Runtime files in Spec.Dir: colinux.conf (the configuration, passed as
// @file), colinux.pid (written by the daemon with -p; the PID is also the
// coLinux instance ID that colinux-console-nt -a takes), console.log (the
// daemon's output, appended), boot.json, stop-requested and exit.json (as
// in the qemu driver), initrd.img (several initrds concatenated).
package colinuxd

import (
	"path/filepath"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/conf"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// Runtime file names in Spec.Dir.
const (
	ConfFile = "colinux.conf"
	PIDFile  = "colinux.pid"
	bootFile = "boot.json"
	exitFile = "exit.json"
	stopFile = "stop-requested"
)

// Runner starts coLinux guests. The zero value is ready to use.
type Runner struct {
	// Daemon is the colinux-daemon executable. Default "colinux-daemon"
	// from PATH (the coLinux installation directory must be on it, for
	// the daemon finds its helpers, e.g. colinux-slirp-net-daemon, there).
	Daemon string
}

// Args renders the daemon's command line (argv[0] is the executable):
// no console window (-d), the pid file (-p) and the configuration file
// (@file). It is pure.
func Args(spec driver.Spec, daemon string) []string {
	if daemon == "" {
		daemon = "colinux-daemon"
	}
	return []string{daemon, "-d", "-p", filepath.Join(spec.Dir, PIDFile), "@" + filepath.Join(spec.Dir, ConfFile)}
}

// Config renders spec's coLinux configuration (conf.Render).
func (r *Runner) Config(spec driver.Spec) (string, error) { return conf.Render(spec) }

// Interface guards.
var (
	_ driver.Runner     = (*Runner)(nil)
	_ driver.Configurer = (*Runner)(nil)
)
