package farmnet

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// RestoreFarmBridge puts a farm's bridge back as a host reboot or a
// firewall flush left it: the bridge with its gateway address
// (EnsureFarmBridge) and every guard of it and its ports
// (RebuildGuards). It reports whether anything was missing.
func RestoreFarmBridge(name, gatewayCIDR, owner string) (changed bool, err error) {
	changed = !LinkExists(name) || !hostGuarded(name)
	if _, err := EnsureFarmBridge(name, gatewayCIDR, owner); err != nil {
		return changed, err
	}
	return changed, RebuildGuards(name)
}

// hostGuarded reports whether the bridge's INPUT guard chain is there.
func hostGuarded(bridge string) bool {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		return false
	}
	return exec.Command(ipt, "-w", "-n", "-L", guardChain(bridge)).Run() == nil
}

// RemoveFarmBridge removes a farm's bridge with its host guards and port
// filters. A bridge another farm marked as its own, or with guest ports
// still on it, is refused; a missing one reports no change.
func RemoveFarmBridge(name, owner string) (changed bool, err error) {
	if !LinkExists(name) {
		had := hostGuarded(name)
		unguardHost(name) // a chain left without its bridge
		return had, nil
	}
	if o := BridgeOwner(name); o != "" && o != owner {
		return false, fmt.Errorf("bridge %s belongs to the farm in %s: remove it from there", name, strings.TrimSuffix(o, "/guests"))
	}
	if ports, _ := os.ReadDir("/sys/class/net/" + name + "/brif"); len(ports) > 0 {
		var names []string
		for _, p := range ports {
			names = append(names, p.Name())
		}
		return false, fmt.Errorf("bridge %s still has guest ports (%s): stop or destroy its guests first", name, strings.Join(names, ", "))
	}
	return true, DeleteBridge(name)
}
