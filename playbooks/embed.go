// Package playbooks ships tinyfarm's playbooks and reusable recipes
// (lib/*.lua). The binary embeds them, so require("lib.nginx") works from
// any directory, and this package's tests check-run every one of them.
package playbooks

import "embed"

// FS holds the shipped playbooks and recipes, at their paths under playbooks/.
//
//go:embed *.lua lib
var FS embed.FS
