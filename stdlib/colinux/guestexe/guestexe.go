// Package guestexe finds the binary tinyfarm re-executes for the
// processes that live as long as a guest: an ns guest's monitor, init
// and exec helper, and the farm's DHCP server.
//
// tinyfarm links etcd, gRPC, protobuf and the Lua engine; a process
// started from that binary pays their package init (about 2 MB of heap)
// and maps a 45 MB file, once per guest and once per g:exec. The small
// tinyfarm-guest binary (cmd/tinyfarm-guest) links only the ns and
// farmnet drivers. `make build` puts it next to bin/tinyfarm with the
// same build stamp; tinyfarm uses it only then, and runs itself
// otherwise (go run, go install of tinyfarm alone, test binaries).
package guestexe

import (
	"debug/buildinfo"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
)

// Name is the helper binary's file name, looked for next to tinyfarm.
const Name = "tinyfarm-guest"

// Stamp is set at link time (-ldflags "-X ...guestexe.Stamp=S", see the
// Makefile) to the same value in tinyfarm and tinyfarm-guest: a hash of
// the sources both were built from. An empty Stamp (a plain go build)
// never uses a helper, so a stale tinyfarm-guest left next to a newer
// tinyfarm is never run: the re-exec protocol between them has no
// version of its own.
var Stamp string

var (
	once sync.Once
	path string
	err  error
)

// Path is the binary to re-execute for a guest's processes: the
// tinyfarm-guest next to the running executable when it was built with
// this one, else the running executable itself. The answer is cached.
func Path() (string, error) {
	once.Do(func() {
		var self string
		if self, err = os.Executable(); err == nil {
			path = Find(self, Stamp)
		}
	})
	return path, err
}

// Find returns the helper next to self when it may stand in for self, or
// self: the helper must be a regular executable file owned by self's
// owner, writable by nobody else (tinyfarm runs it as root), and carry
// the same build stamp and Go version.
func Find(self, stamp string) string {
	if stamp == "" {
		return self
	}
	cand := filepath.Join(filepath.Dir(self), Name)
	if !trusted(self, cand) {
		return self
	}
	bi, err := buildinfo.ReadFile(cand)
	if err != nil || bi.GoVersion != runtime.Version() {
		return self
	}
	for _, s := range bi.Settings {
		if s.Key == "-ldflags" && strings.Contains(s.Value, "guestexe.Stamp="+stamp) {
			return cand
		}
	}
	return self
}
