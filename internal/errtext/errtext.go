// Package errtext cuts a failed command's output down to what an error
// message should quote.
package errtext

import (
	"strings"
	"unicode/utf8"
)

// Tail is the end of a failed command's stderr, at most n bytes, trimmed,
// with "…" where it was cut. A Go program's crash (a panic or a fatal
// runtime error, such as tinyfarm's own exec helper dying) is quoted from
// its start instead: its end is goroutine stacks, its first lines say
// what happened.
func Tail(stderr []byte, n int) string {
	s := strings.TrimSpace(string(stderr))
	if i := goCrash(s); i >= 0 {
		s = s[i:]
		if len(s) > n {
			cut := n
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			s = s[:cut] + "…"
		}
		return s
	}
	if len(s) > n {
		cut := len(s) - n
		for cut < len(s) && !utf8.RuneStart(s[cut]) {
			cut++
		}
		s = "…" + s[cut:]
	}
	return s
}

// goCrash finds where a Go runtime crash report starts in s: a line
// beginning "panic: " or "fatal error: " with goroutine stacks after it;
// -1 when there is none.
func goCrash(s string) int {
	for off := 0; off < len(s); {
		rest := s[off:]
		if (strings.HasPrefix(rest, "panic: ") || strings.HasPrefix(rest, "fatal error: ")) && strings.Contains(rest, "\ngoroutine ") {
			return off
		}
		nl := strings.IndexByte(rest, '\n')
		if nl < 0 {
			break
		}
		off += nl + 1
	}
	return -1
}
