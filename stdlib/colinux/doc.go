// Package colinux is require("colinux"): the Lua binding of tinyfarm's
// guests. It decodes a playbook's options, honours check mode and reports
// changes; what a guest is and does lives in the Go API it binds, package
// farm (definitions, lifecycle, network, shares) and package ops (clone,
// checkpoint, migrate, unify).
package colinux
