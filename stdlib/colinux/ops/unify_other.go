//go:build !linux

package ops

import (
	"context"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

func unifyDisks(ctx context.Context, disks []unifyDisk, exclude []string, res *UnifyResult) error {
	if len(disks) == 0 {
		return nil
	}
	return driver.Unsupported("tinyfarm", "unify", "sharing disk blocks needs Linux (loop mounts, FIEMAP, FIDEDUPERANGE)")
}
