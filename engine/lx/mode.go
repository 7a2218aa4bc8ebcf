package lx

import (
	"fmt"
	"io/fs"
)

// ParseMode parses a file mode in octal digits, as chmod and Ansible take
// it: "0644", "644", "4755", "0" (a Lua number 644 arrives here as "644"
// and means 0644 too, as in chmod). Nothing but the digits 0-7 is
// accepted, and at most 07777; the setuid, setgid and sticky bits become
// fs.ModeSetuid, fs.ModeSetgid and fs.ModeSticky. Every module that takes
// a mode option parses it here, so they all accept the same inputs.
func ParseMode(s string) (fs.FileMode, error) {
	bad := func() (fs.FileMode, error) {
		return 0, fmt.Errorf("invalid mode %q: want octal digits like \"0644\" or \"644\", at most 07777", s)
	}
	if s == "" || len(s) > 12 {
		return bad()
	}
	var v uint32
	for _, c := range s {
		if c < '0' || c > '7' {
			return bad()
		}
		v = v<<3 | uint32(c-'0')
	}
	if v > 0o7777 {
		return bad()
	}
	m := fs.FileMode(v & 0o777)
	if v&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if v&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if v&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m, nil
}
