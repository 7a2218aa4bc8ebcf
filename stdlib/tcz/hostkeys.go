package tcz

import (
	"context"
	"errors"
	"io/fs"
	"path"
	"slices"

	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// sshServerFiles are the daemons of Tiny Core's SSH server extensions
// (openssh.tcz: usr/local/sbin/sshd; dropbear.tcz: usr/local/sbin/dropbear).
// Installing one places the guest's host keys where it reads them.
var sshServerFiles = []string{"usr/local/sbin/sshd", "usr/local/sbin/dropbear"}

// hostKeySources are the files a guest may already hold its host keys in:
// every place ssh.HostKeySet.Files writes, then etc/ssh/ssh_host_ed25519_key,
// where tinyfarm put the OpenSSH copy of its ed25519 key before key sets.
func hostKeySources() []string {
	var out []string
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		out = append(out, ssh.OpenSSHKeyDir+"/ssh_host_"+typ+"_key",
			ssh.DropbearKeyDir+"/dropbear_"+typ+"_host_key", ssh.DropbearDefaultKeyDir+"/dropbear_"+typ+"_host_key")
	}
	return append(out, "etc/ssh/ssh_host_ed25519_key")
}

// placeHostKeys gives a newly installed SSH server the guest's host keys:
// the keys found in t (first found per algorithm) are written in every
// server's place and format where a file is missing; existing files are
// kept. A target without host keys is left alone (its server makes its
// own on first start, as Tiny Core's init scripts do). It returns the
// names written (would be, in check mode).
func placeHostKeys(ctx context.Context, t target.Target, check bool) ([]string, error) {
	var set ssh.HostKeySet
	for _, p := range hostKeySources() {
		b, err := target.ReadFile(ctx, t, p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var one ssh.HostKeySet
		if one.ParseHostKeyFile(b) != nil {
			continue // not a key tinyfarm reads (e.g. dss): the server's own business
		}
		if set.Ed25519 == nil {
			set.Ed25519 = one.Ed25519
		}
		if set.ECDSA == nil {
			set.ECDSA = one.ECDSA
		}
		if set.RSA == nil {
			set.RSA = one.RSA
		}
	}
	if set.Ed25519 == nil && set.ECDSA == nil && set.RSA == nil {
		return nil, nil
	}
	files, err := set.Files()
	if err != nil {
		return nil, err
	}
	var written []string
	for _, f := range files {
		if ok, err := target.Exists(ctx, t, f.Name); err != nil {
			return nil, err
		} else if ok {
			continue
		}
		written = append(written, f.Name)
		if check {
			continue
		}
		if _, err := target.MkdirAll(ctx, t, path.Dir(f.Name), 0o755, target.MkdirOptions{}); err != nil {
			return nil, err
		}
		if err := target.WriteFile(ctx, t, f.Name, f.Data, f.Mode, 0, 0); err != nil {
			return nil, err
		}
	}
	return written, nil
}

// installsSSHServer reports whether files (an Install's) hold an SSH daemon.
func installsSSHServer(files []string) bool {
	for _, f := range sshServerFiles {
		if slices.Contains(files, f) {
			return true
		}
	}
	return false
}
