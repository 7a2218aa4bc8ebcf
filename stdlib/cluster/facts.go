package cluster

import (
	"crypto/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Version is the tinyfarm version hosts publish; the binary sets it.
var Version = "dev"

// LocalFacts reads this host's memory and CPUs; drivers as given.
func LocalFacts(drivers []string) Facts {
	f := Facts{CPUs: runtime.NumCPU(), Drivers: drivers, Version: Version}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				f.Mem = kb << 10
			}
		}
	}
	for _, p := range []string{"/etc/ssh/ssh_host_ed25519_key.pub", "/etc/dropbear/dropbear_ed25519_host_key.pub"} {
		if b, err := os.ReadFile(p); err == nil {
			f.SSHHostKey = strings.TrimSpace(string(b))
			break
		}
	}
	return f
}

func randRead(b []byte) (int, error) { return rand.Read(b) }
