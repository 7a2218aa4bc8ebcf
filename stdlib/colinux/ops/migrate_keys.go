package ops

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// revokeHere has the far tinyfarm remove this farm's key from the moved
// guest (unless o.KeepKey, or the guest is not managed over SSH, or both
// farms share one key). It runs once the guest is there and gone here: a
// failure is reported, the move stands.
func revokeHere(ctx context.Context, g *farm.Guest, c *ssh.Client, to Remote, o MigrateOptions, probe FarProbe, res *MigrateResult) error {
	if o.KeepKey || g.Def.HostKey == "" || probe.FarmKey == "" {
		return nil
	}
	own, err := ssh.EnsureFarmKey(g.Farm().StateDir())
	if err != nil {
		return fmt.Errorf("moved, but reading this farm's key to remove it from the guest: %w", err)
	}
	if keyBlob(own.AuthorizedKey()) == keyBlob(probe.FarmKey) {
		return nil // one farm key on both sides
	}
	if _, err := to.tinyfarm(ctx, c, strings.NewReader(own.AuthorizedKey()+"\n"), "migrate", "revoke", g.Def.Name); err != nil {
		return fmt.Errorf("moved, but removing this farm's key from the guest there failed (it still accepts this host; remove the key from its authorized_keys): %w", err)
	}
	res.KeyRevoked = true
	return nil
}

// keyBlob is the base64 key of an authorized_keys line (its second
// field, or the first for a bare key): what identifies the key whatever
// options or comment the line has.
func keyBlob(line string) string {
	f := strings.Fields(line)
	for i, w := range f {
		if strings.HasPrefix(w, "ssh-") || strings.HasPrefix(w, "ecdsa-") {
			if i+1 < len(f) {
				return f[i+1]
			}
		}
	}
	if len(f) > 0 {
		return f[0]
	}
	return ""
}

// RevokeKey is the far side of a migration's last step: it removes key
// (an authorized_keys line: the source farm's) from the guest name's SSH
// user's authorized_keys, in the running guest (through Exec) or in its
// stopped disk. This farm's own key is never removed.
func RevokeKey(ctx context.Context, f *farm.Farm, name, key string) error {
	fail := func(err error) error { return fmt.Errorf("revoke key in %s: %w", name, err) }
	blob := keyBlob(key)
	if blob == "" || strings.ContainsAny(blob, "'\"\\$` \n") {
		return fail(fmt.Errorf("key %q: want an authorized_keys line: %w", key, farm.ErrInvalid))
	}
	if own, err := ssh.EnsureFarmKey(f.StateDir()); err != nil {
		return fail(err)
	} else if keyBlob(own.AuthorizedKey()) == blob {
		return fail(fmt.Errorf("that is this farm's own key: %w", farm.ErrInvalid))
	}
	g, err := f.Guest(ctx, name)
	if err != nil {
		return fail(err)
	}
	file := g.AuthorizedKeysFile()
	if !g.Running(ctx) {
		if err := revokeOnDisk(ctx, g.Def.Disk, file, key); err != nil {
			return fail(err)
		}
		return nil
	}
	// Rewritten in place (cat >), so the file keeps its owner and mode.
	q := ssh.ShellQuote(file)
	script := "f=" + q + "; [ -f \"$f\" ] || exit 0; grep -vF -- '" + blob + "' \"$f\" > \"$f.tf-new\"; cat \"$f.tf-new\" > \"$f\" && rm -f \"$f.tf-new\" && sync && ! grep -qF -- '" + blob + "' \"$f\""
	r, err := g.Exec(ctx, []string{"/bin/sh", "-c", script}, driver.ExecOptions{Timeout: 30 * time.Second})
	if err == nil && r.Code != 0 {
		err = fmt.Errorf("in the guest: exit %d: %s", r.Code, bytes.TrimSpace(r.Stderr))
	}
	if err != nil {
		return fail(fmt.Errorf("%s: %w", file, err))
	}
	return nil
}

// authorizeKey adds key (an authorized_keys line; "" or this farm's own
// key: nothing to do) to the authorized_keys of the guest's SSH user, so
// the farm that key belongs to can manage the guest: through the guest's
// shell while it runs (farm.Guest.AuthorizeKey; a live move carries the
// change in its memory and disk), else in its disk image. The line is added once; the others stay.
func authorizeKey(ctx context.Context, g *farm.Guest, key string, running bool) error {
	if key == "" || g.Def.HostKey == "" {
		return nil // no SSH to the guest from any farm
	}
	pub, err := ssh.ParsePublicKey(key)
	if err != nil {
		return fmt.Errorf("far farm key %q: %w", key, err)
	}
	if own, err := ssh.EnsureFarmKey(g.Farm().StateDir()); err == nil && bytes.Equal(own.PublicKey().Marshal(), pub.Marshal()) {
		return nil // one farm key on both sides
	}
	if running {
		if _, err := g.AuthorizeKey(ctx, key, ssh.FarmKeyComment, false); err != nil {
			return fmt.Errorf("authorize the far farm's key: %w", err)
		}
		return nil
	}
	return authorizeOnDisk(ctx, g.Def.Disk, g.AuthorizedKeysFile(), key)
}
