package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/tinyfarm/tinyfarm/internal/fsutil"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/lockfile"
)

// RoutesFile is the registry's file name inside its directory.
const RoutesFile = "routes.json"

// Registry is the route registry stored in a directory of the state dir.
// It is safe for concurrent use by goroutines and by processes: every
// change runs under an exclusive lock on RoutesFile+".lock".
type Registry struct {
	dir string
	res Resolver

	// The table as last read or written by this Registry: a change reads
	// only what other processes appended to the journal since, not the
	// whole table again (10,000 routes: several ms). nil: not read yet.
	mu sync.Mutex
	st *store
}

// NewRegistry returns the registry stored in dir (created on first write).
// res resolves guest names; nil means only addresses are accepted.
func NewRegistry(dir string, res Resolver) *Registry {
	return &Registry{dir: dir, res: res}
}

// Path returns the registry file's path, the file Serve watches.
func (r *Registry) Path() string { return filepath.Join(r.dir, RoutesFile) }

// VHostSpec is the input of Registry.VHost (Lua: proxy.vhost{...}).
type VHostSpec struct {
	// Host is the name to route: exact, "*.wildcard" or DefaultHost.
	// Required.
	Host string
	// To is a guest name or an address (IP, DNS name with a dot, or
	// "host:port" when Port is 0). Required.
	To string
	// Port is the backend port. Required unless To carries it.
	Port int
	// Replace allows re-pointing a host that already routes elsewhere.
	// Default false: that is an ErrConflict.
	Replace bool
}

// ForwardSpec is the input of Registry.Forward (Lua: proxy.forward{...}).
type ForwardSpec struct {
	// Listen is "port", ":port" or "host:port". Required.
	Listen string
	// To is a guest name or an address, as in VHostSpec. Required.
	To string
	// Port is the backend port. Required unless To carries it.
	Port int
	// Replace allows re-pointing a listen address that already forwards
	// elsewhere. Default false: that is an ErrConflict.
	Replace bool
}

// RemoveSpec names the route to remove (Lua: proxy.remove{...}). Exactly one
// field must be set. Removing a route that does not exist is not an error;
// it reports no change.
type RemoveSpec struct {
	// Host is the vhost to remove. Default "": none.
	Host string
	// Listen is the forward to remove. Default "": none.
	Listen string
}

// ChangeOptions controls how a change is carried out.
type ChangeOptions struct {
	// Check computes the change and its diff without writing anything.
	// Default false: the change is written.
	Check bool
}

// Change reports the outcome of an idempotent operation.
type Change struct {
	// Changed is true when the operation changed (or, in check mode, would
	// change) something.
	Changed bool
	// Diff is a unified diff of the routing table (Table.String) or of
	// the rendered file; "" when nothing changed.
	Diff string
	// Table is the planned routing table, in check mode only: a write
	// leaves it empty (with 10,000 routes copying the table was most of a
	// change's cost); Routes reads the table.
	Table Table
}

// Routes returns the current routing table. A missing registry file is an
// empty table.
func (r *Registry) Routes(ctx context.Context) (Table, error) {
	if err := ctx.Err(); err != nil {
		return Table{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.current()
	if err != nil {
		return Table{}, fmt.Errorf("proxy routes: %w", err)
	}
	return st.t.clone(), nil
}

// VHost adds or updates a virtual host. Re-adding the same route reports no
// change. A guest whose address changed is updated without Replace.
func (r *Registry) VHost(ctx context.Context, spec VHostSpec, opts ChangeOptions) (Change, error) {
	host, err := NormalizeHost(spec.Host)
	if err != nil {
		return Change{}, fmt.Errorf("proxy vhost: %w", err)
	}
	op := "proxy vhost " + host
	tg, err := resolveTarget(ctx, r.res, spec.To, spec.Port)
	if err != nil {
		return Change{}, fmt.Errorf("%s: %w", op, err)
	}
	nv := VHost{Host: host, To: spec.To, Guest: tg.guest, Addr: tg.addr, Port: tg.port, ToPort: tg.toPort}
	return r.update(ctx, op, opts, func(t *Table) (journalRecord, error) {
		if i, ok := t.vhostIndex(host); ok {
			v := t.VHosts[i]
			if !spec.Replace && !sameTarget(v.target, nv.target) {
				return journalRecord{}, fmt.Errorf("already routed to %s (%s); set replace to re-point it: %w", v.To, v.Backend(), ErrConflict)
			}
			if v.line() == nv.line() {
				return journalRecord{}, nil
			}
		}
		return journalRecord{VHosts: []VHost{nv}}, nil
	})
}

// Forward adds or updates a TCP forward.
func (r *Registry) Forward(ctx context.Context, spec ForwardSpec, opts ChangeOptions) (Change, error) {
	listen, err := normalizeListen(spec.Listen)
	if err != nil {
		return Change{}, fmt.Errorf("proxy forward: %w", err)
	}
	op := "proxy forward " + listen
	tg, err := resolveTarget(ctx, r.res, spec.To, spec.Port)
	if err != nil {
		return Change{}, fmt.Errorf("%s: %w", op, err)
	}
	nf := Forward{Listen: listen, To: spec.To, Guest: tg.guest, Addr: tg.addr, Port: tg.port, ToPort: tg.toPort}
	return r.update(ctx, op, opts, func(t *Table) (journalRecord, error) {
		if i, ok := t.forwardIndex(listen); ok {
			f := t.Forwards[i]
			if !spec.Replace && !sameTarget(f.target, nf.target) {
				return journalRecord{}, fmt.Errorf("already forwarded to %s (%s); set replace to re-point it: %w", f.To, f.Backend(), ErrConflict)
			}
			if f.line() == nf.line() {
				return journalRecord{}, nil
			}
		}
		return journalRecord{Forwards: []Forward{nf}}, nil
	})
}

// sameTarget reports whether two routes ask for the same target (To and
// the port on it), whatever it resolved to.
func sameTarget(a, b func() (string, int)) bool {
	ta, pa := a()
	tb, pb := b()
	return ta == tb && pa == pb
}

// Remove deletes a vhost or a forward. An absent route reports no change.
func (r *Registry) Remove(ctx context.Context, spec RemoveSpec, opts ChangeOptions) (Change, error) {
	switch {
	case spec.Host != "" && spec.Listen == "":
		host, err := NormalizeHost(spec.Host)
		if err != nil {
			return Change{}, fmt.Errorf("proxy remove: %w", err)
		}
		return r.update(ctx, "proxy remove "+host, opts, func(t *Table) (journalRecord, error) {
			if _, ok := t.vhostIndex(host); !ok {
				return journalRecord{}, nil
			}
			return journalRecord{RemoveHosts: []string{host}}, nil
		})
	case spec.Listen != "" && spec.Host == "":
		listen, err := normalizeListen(spec.Listen)
		if err != nil {
			return Change{}, fmt.Errorf("proxy remove: %w", err)
		}
		return r.update(ctx, "proxy remove "+listen, opts, func(t *Table) (journalRecord, error) {
			if _, ok := t.forwardIndex(listen); !ok {
				return journalRecord{}, nil
			}
			return journalRecord{RemoveListens: []string{listen}}, nil
		})
	default:
		return Change{}, fmt.Errorf("proxy remove: exactly one of host and listen must be set: %w", ErrInvalid)
	}
}

// update runs fn on the current table under the lock and makes the
// change it returns durable, unless it is empty or opts.Check is set. fn
// must not modify the table.
func (r *Registry) update(ctx context.Context, op string, opts ChangeOptions, fn func(*Table) (journalRecord, error)) (Change, error) {
	if !opts.Check {
		unlock, err := r.lock(ctx)
		if err != nil {
			return Change{}, fmt.Errorf("%s: %w", op, err)
		}
		defer unlock()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.current()
	if err != nil {
		return Change{}, fmt.Errorf("%s: %w", op, err)
	}
	rec, err := fn(&st.t)
	if err != nil {
		return Change{}, fmt.Errorf("%s: %w", op, err)
	}
	if rec.empty() {
		if opts.Check {
			return Change{Table: st.t.clone()}, nil
		}
		return Change{}, nil
	}
	ch := Change{Changed: true, Diff: tableDiff(st.t, rec)}
	if opts.Check {
		ch.Table = st.t.clone()
		ch.Table.apply(rec)
		return ch, nil
	}
	st.t.apply(rec)
	if err := st.commit(rec); err != nil {
		r.st = nil // read it again: the files may hold the change or not
		return Change{}, fmt.Errorf("%s: %w", op, err)
	}
	return ch, nil
}

// current brings r.st up to date with the files (r.mu held).
func (r *Registry) current() (*store, error) {
	if r.st != nil {
		_, full, err := r.st.refresh()
		if err != nil {
			r.st = nil
			return nil, err
		}
		if !full {
			return r.st, nil
		}
	}
	st, err := loadStore(r.Path())
	if err != nil {
		r.st = nil
		return nil, err
	}
	r.st = st
	return st, nil
}

// lock takes the registry's exclusive lock, waiting until ctx is done.
func (r *Registry) lock(ctx context.Context) (func(), error) {
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return nil, err
	}
	return lockfile.LockContext(ctx, r.Path()+".lock")
}

// LoadTable reads a registry file and its journal. A missing file is an
// empty table.
func LoadTable(path string) (Table, error) {
	st, err := loadStore(path)
	if err != nil {
		return Table{}, err
	}
	return st.t, nil
}

// writeFileAtomic replaces path (creating its directory): readers see the
// old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, data, perm)
}
