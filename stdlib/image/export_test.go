//go:build linux

package image

// CheckTreeCacheEntry is checkEntry, for the external tests.
var CheckTreeCacheEntry = checkEntry
