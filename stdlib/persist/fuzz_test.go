package persist

import (
	"maps"
	"strings"
	"testing"
)

// FuzzParseBootcodes: parsing never panics, and any map Bootcodes accepts
// round-trips through ParseBootcodes.
func FuzzParseBootcodes(f *testing.F) {
	for _, s := range []string{"quiet tce=UUID=x home=sda1", `opt="a b" x`, "a=b=c", `"`, "   ", "hometown=1 home"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		m, err := ParseBootcodes(line)
		if err != nil {
			return
		}
		out, err := Bootcodes(m)
		if err != nil {
			return // values with spaces cannot be rendered
		}
		m2, err := ParseBootcodes(out)
		if err != nil || !maps.Equal(m, m2) {
			t.Fatalf("round trip %q -> %q -> %q (%v)", line, out, m2, err)
		}
	})
}

// FuzzSetBlock: the block is idempotent and user lines outside survive.
func FuzzSetBlock(f *testing.F) {
	f.Add("#!/bin/sh\necho hi\n", "a\nb")
	f.Add("", "")
	f.Add("# BEGIN tinyfarm id\nx\n# END tinyfarm id\nmine", "y")
	f.Fuzz(func(t *testing.T, text, body string) {
		var lines []string
		if body != "" {
			lines = strings.Split(body, "\n")
		}
		a, err := SetBlock(text, "id", lines)
		if err != nil {
			return
		}
		b, err := SetBlock(a, "id", lines)
		if err != nil || a != b {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", text, a, b, err)
		}
	})
}
