//go:build !linux

package ops

import (
	"context"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

func editIdentity(ctx context.Context, img, oldHost, newHost string, hk *ssh.HostKeySet) (bool, error) {
	return false, driver.Unsupported("tinyfarm", "editing a cloned disk", "image.edit needs Linux (loop mounts)")
}

func authorizeOnDisk(ctx context.Context, img, file, key string) error {
	return driver.Unsupported("tinyfarm", "editing a stopped guest's disk", "image.edit needs Linux (loop mounts)")
}

func revokeOnDisk(ctx context.Context, img, file, key string) error {
	return driver.Unsupported("tinyfarm", "editing a stopped guest's disk", "image.edit needs Linux (loop mounts)")
}
