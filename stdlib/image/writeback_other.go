//go:build unix && !linux

package image

import "os"

// startWriteback does nothing here (no sync_file_range).
func startWriteback(*os.File) (stop func()) { return func() {} }
