package proxy

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
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
	// Port is the backend port, 1-65535. Required.
	Port int `json:"port"`
}

// Backend returns the backend's "host:port".
func (v VHost) Backend() string { return net.JoinHostPort(v.Addr, strconv.Itoa(v.Port)) }

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
	// Port is the backend port, 1-65535. Required.
	Port int `json:"port"`
}

// Backend returns the backend's "host:port".
func (f Forward) Backend() string { return net.JoinHostPort(f.Addr, strconv.Itoa(f.Port)) }

// String renders the table as text, one route per line, in a stable order.
// Check mode diffs this text.
func (t Table) String() string {
	var b strings.Builder
	for _, v := range t.VHosts {
		fmt.Fprintf(&b, "vhost %s -> %s%s\n", v.Host, v.Backend(), guestNote(v.Guest, v.To))
	}
	for _, f := range t.Forwards {
		fmt.Fprintf(&b, "forward %s -> %s%s\n", f.Listen, f.Backend(), guestNote(f.Guest, f.To))
	}
	return b.String()
}

func guestNote(guest bool, to string) string {
	if guest {
		return " (guest " + to + ")"
	}
	return ""
}

func (t *Table) sort() {
	sort.Slice(t.VHosts, func(i, j int) bool { return t.VHosts[i].Host < t.VHosts[j].Host })
	sort.Slice(t.Forwards, func(i, j int) bool { return t.Forwards[i].Listen < t.Forwards[j].Listen })
}

func (t Table) clone() Table {
	return Table{
		VHosts:   append([]VHost(nil), t.VHosts...),
		Forwards: append([]Forward(nil), t.Forwards...),
	}
}

// Resolver maps a guest name to the address its services listen on. The
// guests module implements it; StaticResolver is a fixed map for tests.
type Resolver interface {
	// ResolveGuest returns the guest's IP address or host name. An unknown
	// guest is an error wrapping ErrNotFound.
	ResolveGuest(ctx context.Context, name string) (string, error)
}

// StaticResolver is a Resolver backed by a fixed map of guest name to
// address.
type StaticResolver map[string]string

// ResolveGuest implements Resolver.
func (s StaticResolver) ResolveGuest(_ context.Context, name string) (string, error) {
	if a, ok := s[name]; ok {
		return a, nil
	}
	return "", fmt.Errorf("resolve guest %s: %w", name, ErrNotFound)
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

// resolveTarget turns a route's "to" and "port" into (addr, port, guest).
// An IP literal, or a name with a dot or a colon, is an address ("host:port"
// is accepted when port is 0); anything else is a guest name.
func resolveTarget(ctx context.Context, res Resolver, to string, port int) (string, int, bool, error) {
	to = strings.TrimSpace(to)
	if to == "" {
		return "", 0, false, fmt.Errorf("to: empty target: %w", ErrInvalid)
	}
	addr, guest := to, false
	if h, p, err := net.SplitHostPort(to); err == nil {
		n, perr := strconv.Atoi(p)
		if perr != nil || n < 1 || n > 65535 {
			return "", 0, false, fmt.Errorf("to %q: port %s out of range 1-65535: %w", to, p, ErrInvalid)
		}
		if port != 0 && port != n {
			return "", 0, false, fmt.Errorf("to %q: port %d given twice, differently: %w", to, port, ErrInvalid)
		}
		addr, port = h, n
	} else if _, err := netip.ParseAddr(to); err != nil && !strings.Contains(to, ".") {
		guest = true
	}
	if port < 1 || port > 65535 {
		return "", 0, false, fmt.Errorf("port %d out of range 1-65535: %w", port, ErrInvalid)
	}
	if guest {
		if res == nil {
			return "", 0, false, fmt.Errorf("resolve guest %s: no guest resolver: %w", to, ErrNotFound)
		}
		a, err := res.ResolveGuest(ctx, to)
		if err != nil {
			return "", 0, false, err
		}
		return a, port, true, nil
	}
	if _, err := netip.ParseAddr(addr); err != nil {
		if err := checkDNSName(strings.ToLower(addr)); err != nil {
			return "", 0, false, fmt.Errorf("to %q: not an IP address or host name (%v): %w", to, err, ErrInvalid)
		}
	}
	return addr, port, false, nil
}
