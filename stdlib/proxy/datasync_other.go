//go:build !linux

package proxy

import "os"

// datasync is a full fsync off Linux.
func datasync(f *os.File) error { return f.Sync() }
