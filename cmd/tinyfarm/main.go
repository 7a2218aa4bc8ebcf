// Command tinyfarm turns one Linux server into a farm of Tiny Core Linux
// guests and drives their lifecycle from Lua playbooks.
package main

import (
	"context"
	"os"

	"github.com/tinyfarm/tinyfarm/cmd/tinyfarm/cli"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

func main() {
	ns.Main()      // guest monitor / init / exec roles of the ns driver
	farmnet.Main() // the farm's DHCP server (qemu guests on the bridge)
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
