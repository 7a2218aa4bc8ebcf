package persist

import (
	"fmt"
	"slices"
	"strings"
)

// Bootcodes renders codes as a kernel command line: "key=value" words and
// bare flags (an empty value), sorted by key so the line is deterministic.
// A key must be non-empty and hold no space, '=', '"' or control
// character; a value may hold no whitespace, '"' or control character (the
// kernel line has no quoting Tiny Core's tc-config understands).
func Bootcodes(codes map[string]string) (string, error) {
	keys := make([]string, 0, len(codes))
	for k, v := range codes {
		if k == "" || strings.ContainsFunc(k, func(r rune) bool { return r <= ' ' || r == '=' || r == '"' || r == 0x7f }) {
			return "", fmt.Errorf("bootcodes: key %q: %w", k, ErrInvalid)
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == '"' || r == 0x7f }) {
			return "", fmt.Errorf("bootcodes: %s value %q: %w", k, v, ErrInvalid)
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		if v := codes[k]; v != "" {
			b.WriteByte('=')
			b.WriteString(v)
		}
	}
	return b.String(), nil
}

// ParseBootcodes splits a kernel command line into words (whitespace
// separated; a double-quoted span may hold spaces and its quotes are
// removed, as the kernel does) and maps each exact key to its value: the
// text after the first '=', or "" for a bare flag. Keys are never matched
// by prefix ("hometown=x" is key "hometown", not "home"). A later word
// overrides an earlier one with the same key. An unterminated quote is an
// ErrInvalid error.
func ParseBootcodes(line string) (map[string]string, error) {
	out := map[string]string{}
	var word strings.Builder
	inQuote, inWord := false, false
	flush := func() {
		if !inWord {
			return
		}
		k, v, _ := strings.Cut(word.String(), "=")
		if k != "" {
			out[k] = v
		}
		word.Reset()
		inWord = false
	}
	for _, r := range line {
		switch {
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			flush()
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("bootcodes: unterminated quote in %q: %w", line, ErrInvalid)
	}
	flush()
	return out, nil
}
