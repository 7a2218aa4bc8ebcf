// Command tinyfarm-guest is the small binary tinyfarm runs for the
// processes that live as long as a guest: an ns guest's monitor, its first
// init and the exec helper (ns.Main), and the farm's DHCP server
// (farmnet.Main). It links only those drivers, none of etcd, gRPC or the
// Lua engine, so each guest costs less memory and each g:exec starts
// faster. tinyfarm starts it with the role in its environment; it is not
// meant to be run by hand. See stdlib/colinux/guestexe.
package main

import (
	"fmt"
	"os"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

func main() {
	ns.Main()      // guest monitor / init / exec roles of the ns driver; exits
	farmnet.Main() // the farm's DHCP server; exits
	fmt.Fprintln(os.Stderr, "tinyfarm-guest: a helper that tinyfarm starts for its guests; run tinyfarm instead")
	os.Exit(2)
}
