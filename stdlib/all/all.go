// Package all lists the stdlib modules the tinyfarm binary preloads. The
// list is explicit: adding a module is one line here, no init() magic.
package all

import (
	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
)

// Modules returns a fresh set of the built-in modules.
func Modules() []engine.Module {
	return []engine.Module{
		host.Module(),
	}
}
