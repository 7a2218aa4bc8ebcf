//go:build !linux

package colinux

func defaultNS() bool { return false }
