package engine

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Hints turn a Lua error a newcomer cannot act on into one they can.

var nilIndexRe = regexp.MustCompile(`^(\S+?):(\d+): attempt to (?:index|call) a non-table object\(nil\) with key '([A-Za-z_][A-Za-z0-9_]*)'`)

// hintFor returns msg with advice when it is a nil module: a playbook that
// uses colinux.guest without require("colinux") (the REPL preloads the
// modules as globals, so code pasted from it fails this way).
func (e *Engine) hintFor(msg string) string {
	m := nilIndexRe.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	e.mu.Lock()
	src, ok := e.sources[m[1]]
	e.mu.Unlock()
	n, _ := strconv.Atoi(m[2])
	if !ok || n < 1 {
		return msg
	}
	lines := strings.Split(src, "\n")
	if n > len(lines) {
		return msg
	}
	use := regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*[.:]\s*` + m[3] + `\b`).FindStringSubmatch(lines[n-1])
	if use == nil {
		return msg
	}
	for _, mod := range e.opts.Modules {
		if mod.Name() == use[1] {
			return fmt.Sprintf("%s (%s is nil: add local %s = require(%q); the REPL preloads modules, a playbook requires them)",
				strings.TrimRight(msg, "\n"), use[1], use[1], use[1])
		}
	}
	return msg
}
