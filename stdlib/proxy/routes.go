package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultHost is the VHost.Host of the optional default backend: requests
// whose Host matches no other vhost go there. Without it they get a 404.
const DefaultHost = "*"

// Table is the routing table stored in the registry file.
type Table struct {
	// VHosts are the HTTP virtual hosts, sorted by Host. Default: none.
	VHosts []VHost `json:"vhosts"`
	// Forwards are the TCP forwards, sorted by Listen. Default: none.
	Forwards []Forward `json:"forwards"`
}

// VHost routes HTTP requests for one host name to one backend.
type VHost struct {
	// Host is a lower-case host name ("web1.example.com"), a wildcard
	// ("*.example.com", any name below example.com but not example.com
	// itself) or DefaultHost. Required.
	Host string `json:"host"`
	// To is the target as given: a guest name or an address. Required.
	To string `json:"to"`
	// Guest is true when To was resolved as a guest name. Default false.
	Guest bool `json:"guest,omitempty"`
	// Addr is the resolved backend host (an IP or DNS name). Required.
	Addr string `json:"addr"`
	// Port is the resolved backend port, 1-65535. Required.
	Port int `json:"port"`
	// ToPort is the port asked for on To when the Resolver reached it at a
	// different Port (a guest on user-mode networking: guest port 80 is
	// 127.0.0.1:10080). Default 0: the same as Port.
	ToPort int `json:"to_port,omitempty"`
}

// Backend returns the backend's "host:port".
func (v VHost) Backend() string { return net.JoinHostPort(v.Addr, strconv.Itoa(v.Port)) }

// target returns the route's target as asked for: To and the port on it.
func (v VHost) target() (string, int) { return v.To, askedPort(v.Port, v.ToPort) }

// Forward relays TCP connections accepted on Listen to a backend.
type Forward struct {
	// Listen is the normalized listen address, "host:port" or ":port"
	// (all interfaces). Required.
	Listen string `json:"listen"`
	// To is the target as given: a guest name or an address. Required.
	To string `json:"to"`
	// Guest is true when To was resolved as a guest name. Default false.
	Guest bool `json:"guest,omitempty"`
	// Addr is the resolved backend host. Required.
	Addr string `json:"addr"`
	// Port is the resolved backend port, 1-65535. Required.
	Port int `json:"port"`
	// ToPort is the port asked for on To when it differs from Port, as in
	// VHost. Default 0: the same as Port.
	ToPort int `json:"to_port,omitempty"`
}

// Backend returns the backend's "host:port".
func (f Forward) Backend() string { return net.JoinHostPort(f.Addr, strconv.Itoa(f.Port)) }

// target returns the route's target as asked for: To and the port on it.
func (f Forward) target() (string, int) { return f.To, askedPort(f.Port, f.ToPort) }

func askedPort(port, toPort int) int {
	if toPort != 0 {
		return toPort
	}
	return port
}

// String renders the table as text, one route per line, in a stable order.
// Check mode diffs this text.
func (t Table) String() string {
	var b strings.Builder
	for _, v := range t.VHosts {
		b.WriteString(v.line())
	}
	for _, f := range t.Forwards {
		b.WriteString(f.line())
	}
	return b.String()
}

// line is the vhost's line of Table.String: two vhosts with the same line
// route alike.
func (v VHost) line() string {
	return routeLine("vhost ", v.Host, v.Backend(), guestNote(v.Guest, v.To, v.ToPort))
}

// line is the forward's line of Table.String.
func (f Forward) line() string {
	return routeLine("forward ", f.Listen, f.Backend(), guestNote(f.Guest, f.To, f.ToPort))
}

// routeLine appends, not fmt: with 10,000 routes String runs on every
// full diff.
func routeLine(kind, from, to, note string) string {
	return kind + from + " -> " + to + note + "\n"
}

func guestNote(guest bool, to string, toPort int) string {
	switch {
	case guest && toPort != 0:
		return " (guest " + to + " port " + strconv.Itoa(toPort) + ")"
	case guest:
		return " (guest " + to + ")"
	}
	return ""
}

// sort sorts the table in place (a table read back from its file is
// sorted already: checked first, in one pass).
func (t *Table) sort() {
	byHost := func(a, b VHost) int { return strings.Compare(a.Host, b.Host) }
	byListen := func(a, b Forward) int { return strings.Compare(a.Listen, b.Listen) }
	if !slices.IsSortedFunc(t.VHosts, byHost) {
		slices.SortFunc(t.VHosts, byHost)
	}
	if !slices.IsSortedFunc(t.Forwards, byListen) {
		slices.SortFunc(t.Forwards, byListen)
	}
}

func (t Table) clone() Table {
	return Table{
		VHosts:   append([]VHost(nil), t.VHosts...),
		Forwards: append([]Forward(nil), t.Forwards...),
	}
}

// Resolver maps a guest's port to the address the host reaches it at. The
// guests module implements it; StaticResolver is a fixed map for tests.
type Resolver interface {
	// ResolveGuest returns "host:port" for port on guest name: the
	// guest's IP and port on a bridged network, or 127.0.0.1 and the
	// forwarded host port under user-mode networking. An unknown guest is
	// an error wrapping ErrNotFound.
	ResolveGuest(ctx context.Context, name string, port int) (addr string, err error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, name string, port int) (string, error)

// ResolveGuest implements Resolver.
func (f ResolverFunc) ResolveGuest(ctx context.Context, name string, port int) (string, error) {
	return f(ctx, name, port)
}

// StaticResolver is a Resolver backed by a fixed map. A key "name:port"
// wins over a key "name". A value "host:port" is returned as is; a bare
// host (an IP or a name) is joined with the asked port.
type StaticResolver map[string]string

// ResolveGuest implements Resolver.
func (s StaticResolver) ResolveGuest(_ context.Context, name string, port int) (string, error) {
	a, ok := s[name+":"+strconv.Itoa(port)]
	if !ok {
		a, ok = s[name]
	}
	if !ok {
		return "", fmt.Errorf("resolve guest %s: %w", name, ErrNotFound)
	}
	if _, _, err := net.SplitHostPort(a); err == nil {
		return a, nil
	}
	return net.JoinHostPort(a, strconv.Itoa(port)), nil
}

// NormalizeHost validates a vhost name and returns it in canonical form:
// lower case, no trailing dot. It accepts DefaultHost, "*.suffix" wildcards
// and DNS names made of letters, digits and hyphens (use punycode for IDN).
func NormalizeHost(host string) (string, error) {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	if h == DefaultHost {
		return h, nil
	}
	name := h
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		name = rest
		if !strings.Contains(name, ".") {
			return "", fmt.Errorf("host %q: wildcard needs at least two labels after \"*.\": %w", host, ErrInvalid)
		}
	}
	if err := checkDNSName(name); err != nil {
		return "", fmt.Errorf("host %q: %v: %w", host, err, ErrInvalid)
	}
	return h, nil
}

func checkDNSName(name string) error {
	if name == "" {
		return fmt.Errorf("empty name")
	}
	if len(name) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("character %q not allowed (letters, digits, '-', '.')", c)
			}
		}
	}
	return nil
}

// normalizeListen turns "8022", ":8022", "127.0.0.1:8022" or "[::1]:8022"
// into "host:port" form.
func normalizeListen(listen string) (string, error) {
	l := strings.TrimSpace(listen)
	if _, err := strconv.Atoi(l); err == nil {
		l = ":" + l
	}
	host, port, err := net.SplitHostPort(l)
	if err != nil {
		return "", fmt.Errorf("listen %q: %v: %w", listen, err, ErrInvalid)
	}
	if err := checkPort(port); err != nil {
		return "", fmt.Errorf("listen %q: %w", listen, err)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && checkDNSName(strings.ToLower(host)) != nil {
			return "", fmt.Errorf("listen %q: bad host %q: %w", listen, host, ErrInvalid)
		}
	}
	return net.JoinHostPort(host, port), nil
}

func checkPort(port string) error {
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %s out of range 1-65535: %w", port, ErrInvalid)
	}
	return nil
}

// resolved is a route's backend after resolution.
type resolved struct {
	addr   string // backend host
	port   int    // backend port
	toPort int    // the port asked for, when the resolver mapped it elsewhere
	guest  bool   // to was a guest name
}

// resolveTarget turns a route's "to" and "port" into its backend.
// An IP literal, or a name with a dot or a colon, is an address ("host:port"
// is accepted when port is 0); anything else is a guest name, resolved
// through res to "host:port".
func resolveTarget(ctx context.Context, res Resolver, to string, port int) (resolved, error) {
	to = strings.TrimSpace(to)
	if to == "" {
		return resolved{}, fmt.Errorf("to: empty target: %w", ErrInvalid)
	}
	addr, guest := to, false
	if h, p, err := net.SplitHostPort(to); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 {
			return resolved{}, fmt.Errorf("to %q: port %s out of range 1-65535: %w", to, p, ErrInvalid)
		}
		if port != 0 && port != n {
			return resolved{}, fmt.Errorf("to %q: port %d given twice, differently: %w", to, port, ErrInvalid)
		}
		addr, port = h, n
	} else if _, err := netip.ParseAddr(to); err != nil && !strings.Contains(to, ".") {
		guest = true
	}
	if port < 1 || port > 65535 {
		return resolved{}, fmt.Errorf("port %d out of range 1-65535: %w", port, ErrInvalid)
	}
	if guest {
		if res == nil {
			return resolved{}, fmt.Errorf("resolve guest %s: no guest resolver: %w", to, ErrNotFound)
		}
		a, err := res.ResolveGuest(ctx, to, port)
		if err != nil {
			return resolved{}, err
		}
		h, p, err := net.SplitHostPort(a)
		n, perr := strconv.Atoi(p)
		if err != nil || perr != nil || n < 1 || n > 65535 || h == "" {
			return resolved{}, fmt.Errorf("resolve guest %s port %d: resolver returned %q, want host:port: %w", to, port, a, ErrInvalid)
		}
		t := resolved{addr: h, port: n, guest: true}
		if n != port {
			t.toPort = port
		}
		return t, nil
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		if err := checkDNSName(strings.ToLower(addr)); err != nil {
			return resolved{}, fmt.Errorf("to %q: not an IP address or host name (%v): %w", to, err, ErrInvalid)
		}
	}
	return resolved{addr: addr, port: port}, nil
}
