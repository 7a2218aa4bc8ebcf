//go:build unix

package image

// CheckTreeCacheEntry is checkEntry, for the external tests.
var CheckTreeCacheEntry = checkEntry
