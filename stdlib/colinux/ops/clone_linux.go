package ops

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/tinyfarm/tinyfarm/stdlib/image"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// editIdentity gives the copied disk at img its own identity: hostname in
// etc/hostname and etc/hosts, the SSH host key set where each Tiny Core
// SSH server reads it (ssh.HostKeySet.Files), and a fresh random seed if
// there is one.
func editIdentity(ctx context.Context, img, oldHost, newHost string, hk *ssh.HostKeySet) (seed bool, err error) {
	files, err := hk.Files()
	if err != nil {
		return false, err
	}
	err = image.Edit(ctx, img, func(t target.Target) error {
		write := func(name string, data []byte, mode fs.FileMode) error {
			if _, err := target.MkdirAll(ctx, t, path.Dir(name), 0o755, target.MkdirOptions{}); err != nil {
				return err
			}
			return target.WriteFile(ctx, t, name, data, mode, 0, 0)
		}
		if err := write("etc/hostname", []byte(newHost+"\n"), 0o644); err != nil {
			return err
		}
		hosts, err := target.ReadFile(ctx, t, "etc/hosts")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := write("etc/hosts", []byte(renameHost(string(hosts), oldHost, newHost)), 0o644); err != nil {
			return err
		}
		for _, f := range files {
			if err := write(f.Name, f.Data, f.Mode); err != nil {
				return err
			}
		}
		// Where Linux userlands keep the seed their boot feeds to
		// /dev/urandom; a clone must not share its source's.
		for _, p := range []string{"var/lib/random-seed", "var/lib/urandom/random-seed", "var/lib/systemd/random-seed", "etc/random-seed", "var/lib/misc/random-seed"} {
			e, err := t.Lstat(ctx, p)
			if err != nil || e.Type != target.TypeRegular {
				continue
			}
			b := make([]byte, max(e.Size, 512))
			rand.Read(b)
			if err := target.WriteFile(ctx, t, p, b, e.Mode, e.Uid, e.Gid); err != nil {
				return err
			}
			seed = true
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("identity of %s: %w", img, err)
	}
	return seed, nil
}

// renameHost replaces the word oldHost with newHost in a hosts file and
// makes sure newHost resolves locally.
func renameHost(hosts, oldHost, newHost string) string {
	if hosts == "" {
		hosts = "127.0.0.1\tlocalhost\n"
	}
	lines := strings.SplitAfter(hosts, "\n")
	found := false
	for i, l := range lines {
		body := strings.TrimRight(l, "\n")
		if strings.HasPrefix(strings.TrimSpace(body), "#") {
			continue
		}
		f := strings.Fields(body)
		changed := false
		for j := 1; j < len(f); j++ {
			if f[j] == oldHost {
				f[j], changed = newHost, true
			}
			if f[j] == newHost {
				found = true
			}
		}
		if changed {
			lines[i] = strings.Join(f, "\t") + strings.TrimPrefix(l, body)
		}
	}
	out := strings.Join(lines, "")
	if !found {
		if out != "" && !strings.HasSuffix(out, "\n") {
			out += "\n"
		}
		out += "127.0.1.1\t" + newHost + "\n"
	}
	return out
}

// authorizeOnDisk adds the authorized_keys line key to file (an absolute
// path in the guest) in the stopped guest's disk image, once, owned like
// the home directory it is in.
func authorizeOnDisk(ctx context.Context, img, file, key string) error {
	err := image.Edit(ctx, img, func(t target.Target) error {
		rel := strings.TrimPrefix(file, "/")
		home := path.Dir(path.Dir(rel))
		he, err := t.Lstat(ctx, home)
		if err != nil {
			return fmt.Errorf("home %s: %w", home, err)
		}
		old, err := target.ReadFile(ctx, t, rel)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		for _, l := range strings.Split(string(old), "\n") {
			if strings.TrimSpace(l) == key {
				return nil
			}
		}
		dir := path.Dir(rel)
		if _, err := t.Lstat(ctx, dir); errors.Is(err, fs.ErrNotExist) {
			if err := t.Apply(ctx, target.Change{Entry: target.Entry{Name: dir, Type: target.TypeDir, Mode: 0o700, Uid: he.Uid, Gid: he.Gid}}); err != nil {
				return err
			}
		}
		if len(old) > 0 && !strings.HasSuffix(string(old), "\n") {
			old = append(old, '\n')
		}
		return target.WriteFile(ctx, t, rel, append(old, key+"\n"...), 0o600, he.Uid, he.Gid)
	})
	if err != nil {
		return fmt.Errorf("authorize the far farm's key in %s of %s: %w", file, img, err)
	}
	return nil
}

// revokeOnDisk removes from file (an authorized_keys in the stopped
// guest's disk img) every line holding the key blob of key.
func revokeOnDisk(ctx context.Context, img, file, key string) error {
	blob := keyBlob(key)
	err := image.Edit(ctx, img, func(t target.Target) error {
		rel := strings.TrimPrefix(file, "/")
		old, err := target.ReadFile(ctx, t, rel)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		fi, err := t.Lstat(ctx, rel)
		if err != nil {
			return err
		}
		var kept []string
		for _, l := range strings.SplitAfter(string(old), "\n") {
			if !strings.Contains(l, blob) {
				kept = append(kept, l)
			}
		}
		if len(kept) == len(strings.SplitAfter(string(old), "\n")) {
			return nil
		}
		return target.WriteFile(ctx, t, rel, []byte(strings.Join(kept, "")), 0o600, fi.Uid, fi.Gid)
	})
	if err != nil {
		return fmt.Errorf("remove a key from %s of %s: %w", file, img, err)
	}
	return nil
}
