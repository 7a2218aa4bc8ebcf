package proxy

import (
	"strconv"
	"time"
)

// Limits are the protective limits of the embedded proxy that
// proxy.serve{}, proxy.daemon{} and `tinyfarm proxy serve` can set. Zero
// keeps the default; see Options for each one's meaning and default.
type Limits struct {
	ReadHeaderTimeout time.Duration `lua:"read_header_timeout"`
	IdleTimeout       time.Duration `lua:"idle_timeout"`
	BodyTimeout       time.Duration `lua:"body_timeout"`
	WriteTimeout      time.Duration `lua:"write_timeout"`
	BackendTimeout    time.Duration `lua:"backend_timeout"`
	MaxConns          int           `lua:"max_conns"`
	MaxConnsPerIP     int           `lua:"max_conns_per_ip"`
	MaxHeaders        int           `lua:"max_headers"`
}

// LimitField is one limit, for flag parsers: exactly one of Dur and Int
// is set, pointing into the Limits it came from.
type LimitField struct {
	Flag  string // "read-header-timeout"
	Usage string
	Dur   *time.Duration
	Int   *int
}

// Fields lists l's limits with pointers into l.
func (l *Limits) Fields() []LimitField {
	return []LimitField{
		{Flag: "read-header-timeout", Usage: "time to read a request head; default 10s", Dur: &l.ReadHeaderTimeout},
		{Flag: "idle-timeout", Usage: "keep-alive idle time; default 120s", Dur: &l.IdleTimeout},
		{Flag: "body-timeout", Usage: "time a client may take to send any byte of a request body (then 408); default 60s", Dur: &l.BodyTimeout},
		{Flag: "write-timeout", Usage: "time a client may take to accept one write; default 60s", Dur: &l.WriteTimeout},
		{Flag: "backend-timeout", Usage: "wait for a backend's response head, then 504; default 60s", Dur: &l.BackendTimeout},
		{Flag: "max-conns", Usage: "open client connections (idle ones are reclaimed); default 4096, or half the fd limit if lower", Int: &l.MaxConns},
		{Flag: "max-conns-per-ip", Usage: "open connections per client address; default 512", Int: &l.MaxConnsPerIP},
		{Flag: "max-headers", Usage: "header fields per request (more: 431); default 100", Int: &l.MaxHeaders},
	}
}

// Args renders the limits that are set as `tinyfarm proxy serve` flags.
func (l Limits) Args() []string {
	var args []string
	for _, f := range l.Fields() {
		switch {
		case f.Dur != nil && *f.Dur != 0:
			args = append(args, "--"+f.Flag, f.Dur.String())
		case f.Int != nil && *f.Int != 0:
			args = append(args, "--"+f.Flag, strconv.Itoa(*f.Int))
		}
	}
	return args
}

// Apply copies the limits that are set into o.
func (l Limits) Apply(o *Options) {
	set := func(dst *time.Duration, v time.Duration) {
		if v != 0 {
			*dst = v
		}
	}
	setInt := func(dst *int, v int) {
		if v != 0 {
			*dst = v
		}
	}
	set(&o.ReadHeaderTimeout, l.ReadHeaderTimeout)
	set(&o.IdleTimeout, l.IdleTimeout)
	set(&o.BodyTimeout, l.BodyTimeout)
	set(&o.WriteTimeout, l.WriteTimeout)
	set(&o.BackendTimeout, l.BackendTimeout)
	setInt(&o.MaxConns, l.MaxConns)
	setInt(&o.MaxConnsPerIP, l.MaxConnsPerIP)
	setInt(&o.MaxHeaders, l.MaxHeaders)
}
