package all

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// guestResolver lets require("proxy") route to colinux guests: a guest's
// port is reached at its bridge IP, or at 127.0.0.1 and the forwarded host
// port under user-mode networking (farm.Guest.Addr). Only definitions
// are read, so no driver is needed.
func guestResolver(env *engine.Env) proxy.Resolver {
	fm := colinux.FarmFor(env, nil)
	return proxy.ResolverFunc(func(ctx context.Context, name string, port int) (string, error) {
		g, err := fm.Guest(ctx, name)
		if errors.Is(err, farm.ErrNotFound) && env.Check && env.Pending("guest:"+name) {
			// Check mode: the playbook defines this guest earlier; its
			// address is only known once it exists.
			return net.JoinHostPort("pending-guest-"+name+".invalid", strconv.Itoa(port)), nil
		}
		if errors.Is(err, farm.ErrNotFound) {
			return "", fmt.Errorf("unknown guest %q: define it with colinux.guest: %w", name, proxy.ErrNotFound)
		}
		if err != nil {
			return "", err
		}
		return g.Addr(port)
	})
}
