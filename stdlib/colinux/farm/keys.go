package farm

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// AuthorizedKeysFile is the authorized_keys of the guest's SSH user
// (/home/tc/.ssh/authorized_keys for Tiny Core's tc): the file whose keys
// log in to the guest.
func (g *Guest) AuthorizedKeysFile() string {
	if u := g.User(); u != "root" {
		return "/home/" + u + "/.ssh/authorized_keys"
	}
	return "/root/.ssh/authorized_keys"
}

// AuthorizeKey lets the public key of line (authorized_keys format; its
// options and comment are dropped) log in to the running guest as its SSH
// user: "type base64 comment" is appended to AuthorizedKeysFile unless the
// key is on a line there already, so a second call changes nothing and the
// comment finds the line again to revoke it. It reports whether it added
// the line; with check it changes nothing and says whether it would.
//
// The guest's own shell does it (Exec): as root where the driver enters
// the guest (the directory and file then given to the user), as the user
// over SSH otherwise.
func (g *Guest) AuthorizeKey(ctx context.Context, line, comment string, check bool) (bool, error) {
	pub, err := ssh.ParsePublicKey(line)
	if err != nil {
		return false, fmt.Errorf("guest %s: authorize key: %w: %w", g.Def.Name, err, ErrInvalid)
	}
	if strings.ContainsFunc(comment, func(r rune) bool { return r <= ' ' || r > '~' }) {
		return false, fmt.Errorf("guest %s: authorize key: comment %q: want one word of printable ASCII: %w", g.Def.Name, comment, ErrInvalid)
	}
	entry := ssh.AuthorizedKey(pub, comment)
	file, user := g.AuthorizedKeysFile(), g.User()
	script := authorizeScript(file, user, entry, check)
	r, err := g.Exec(ctx, []string{"/bin/sh", "-c", script}, driver.ExecOptions{Timeout: 30 * time.Second})
	if err == nil && r.Code != 0 {
		err = fmt.Errorf("exit %d: %s", r.Code, bytes.TrimSpace(r.Stderr))
	}
	if err != nil {
		return false, fmt.Errorf("guest %s: authorize key %s in %s: %w", g.Def.Name, ssh.Fingerprint(pub), file, err)
	}
	out := string(bytes.TrimSpace(r.Stdout))
	return out == "added" || out == "absent", nil
}

// authorizeScript is AuthorizeKey's shell script: it prints present,
// absent (check) or added. entry is "type base64 comment"; the key is
// found by its base64, whatever the comment or options of its line.
func authorizeScript(file, user, entry string, check bool) string {
	q := ssh.ShellQuote
	blob := strings.Fields(entry)[1]
	return "f=" + q(file) + `; d="${f%/*}"
if [ -f "$f" ] && grep -qF -- ` + q(blob) + ` "$f"; then echo present; exit 0; fi
if [ ` + q(fmt.Sprint(check)) + ` = true ]; then echo absent; exit 0; fi
mkdir -p "$d" || exit 1
if [ -s "$f" ] && [ -n "$(tail -c 1 "$f")" ]; then echo >> "$f"; fi
printf '%s\n' ` + q(entry) + ` >> "$f" && chmod go-w "$d" "$f" || exit 1
if [ "$(id -u)" = 0 ] && [ ` + q(user) + ` != root ]; then chown ` + q(user) + ` "$d" "$f" || exit 1; fi
sync; echo added`
}
