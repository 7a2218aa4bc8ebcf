package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// RemoveGuest deletes every vhost and forward routed to the guest name
// (routes whose To was resolved as that guest), so a destroyed guest
// leaves no route behind that a later guest with its address would
// inherit. No route to it reports no change.
func (r *Registry) RemoveGuest(ctx context.Context, name string, opts ChangeOptions) (Change, error) {
	return r.update(ctx, "proxy remove routes to guest "+name, opts, func(t *Table) (journalRecord, error) {
		var rec journalRecord
		for _, v := range t.VHosts {
			if v.Guest && v.To == name {
				rec.RemoveHosts = append(rec.RemoveHosts, v.Host)
			}
		}
		for _, f := range t.Forwards {
			if f.Guest && f.To == name {
				rec.RemoveListens = append(rec.RemoveListens, f.Listen)
			}
		}
		return rec, nil
	})
}

// daemonRecord is the file where EnsureDaemon records how the daemon was
// last started (address and limits), kept across a kill -9 or a host
// reboot so `tinyfarm boot` can start it again the same way; only
// ForgetDaemon (proxy.daemon{stop = true}) removes it.
const daemonRecord = "daemon.json"

type daemonRec struct {
	Listen string `json:"listen"`
	Limits Limits `json:"limits"`
}

func recordDaemon(c DaemonConfig) error {
	b, _ := json.MarshalIndent(daemonRec{Listen: c.Listen, Limits: c.Limits}, "", "  ")
	return writeFileAtomic(filepath.Join(c.Dir, daemonRecord), append(b, '\n'), 0o644)
}

// LastDaemon is how the daemon of dir was last started (Dir, Listen and
// Limits set), or ok = false when none was, or it was stopped on purpose.
func LastDaemon(dir string) (c DaemonConfig, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, daemonRecord))
	if errors.Is(err, fs.ErrNotExist) {
		return DaemonConfig{}, false, nil
	}
	if err != nil {
		return DaemonConfig{}, false, fmt.Errorf("proxy daemon record: %w", err)
	}
	var rec daemonRec
	if err := json.Unmarshal(b, &rec); err != nil || rec.Listen == "" {
		return DaemonConfig{}, false, fmt.Errorf("proxy daemon record %s: unreadable (%v): start it again with proxy.daemon{listen = ...}", filepath.Join(dir, daemonRecord), err)
	}
	return DaemonConfig{Dir: dir, Listen: rec.Listen, Limits: rec.Limits}, true, nil
}

// ForgetDaemon stops the daemon of dir and removes its record, so `tinyfarm
// boot` does not start it again.
func ForgetDaemon(ctx context.Context, dir string) error {
	if err := StopDaemon(ctx, dir); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, daemonRecord)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("proxy daemon record: %w", err)
	}
	return nil
}
