// Package all lists the stdlib modules the tinyfarm binary preloads. The
// list is explicit: adding a module is one line here, no init() magic.
package all

import (
	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/persist"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/tcz"
	"github.com/tinyfarm/tinyfarm/stdlib/template"
)

// Modules returns a fresh set of the built-in modules.
func Modules() []engine.Module {
	return []engine.Module{
		host.Module(),
		colinux.Module(farm.DefaultDrivers()),
		ssh.Module(),
		tcz.Module(),
		persist.Module(),
		cluster.Module(),
		template.Module(),
		proxy.Module(guestResolver),
		image.Module(),
	}
}
