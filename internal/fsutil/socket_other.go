//go:build !linux

package fsutil

import "path/filepath"

// SocketPath returns path: the /proc/self/fd detour for long paths is
// Linux only.
func SocketPath(path string) (string, func(), error) { return path, func() {}, nil }

// SocketArg is the absolute path of dir/name.
func SocketArg(dir, name string) string { return filepath.Join(dir, name) }
