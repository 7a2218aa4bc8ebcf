//go:build !unix

package fsutil

func SpaceError(dir string, need int64, err error) error { return err }
