//go:build !unix

package engine

func spaceError(dir string, need int, err error) error { return err }
