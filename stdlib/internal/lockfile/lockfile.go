// Package lockfile is an exclusive advisory lock on a file, shared by the
// modules that keep state files (guest definitions, proxy routes), so two
// tinyfarm processes never lose each other's updates.
package lockfile

import (
	"context"
	"fmt"
	"os"
	"time"
)

// Lock blocks until it holds the lock on path (created if missing) and
// returns the function that releases it.
func Lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := lock(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

// LockContext is Lock that gives up when ctx is done, polling a
// non-blocking lock with a short backoff.
func LockContext(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for delay := time.Millisecond; ; delay = min(2*delay, 10*time.Millisecond) {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if ok {
			return func() { f.Close() }, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
	}
}
