//go:build !unix

package fsutil

func spaceError(dir string, need int64, err error) error { return err }
