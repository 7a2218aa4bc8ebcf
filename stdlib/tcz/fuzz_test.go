package tcz

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/target"
)

// FuzzReadArchive feeds mutated squashfs images to the validator. An
// accepted archive must hold only safe, unique names, and reading its data
// must fail cleanly or succeed; nothing may panic.
// Seeds: a real fixture extension plus the hostile archives.
func FuzzReadArchive(f *testing.F) {
	m := standardMirror(f)
	for _, n := range []string{"hello", "libfoo"} {
		b, _ := os.ReadFile(filepath.Join(m.tcz, n+".tcz"))
		f.Add(b)
	}
	f.Add(craft(f, map[string]string{"usr/ZZ/x": "x", "usr/l": "->/"}, map[string]string{"ZZ": ".."}))
	f.Add(craft(f, map[string]string{"usr/dupa": "->/", "usr/dupb/x": "x"}, map[string]string{"dupb": "dupa"}))
	f.Add([]byte("hsqs"))
	lim := Limits{MaxEntries: 2000, MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20, MaxDepth: 16}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<20 {
			return
		}
		a, err := ReadArchive(bytes.NewReader(data), int64(len(data)), lim)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, e := range a.Entries {
			c, err := target.Clean(e.Name)
			if err != nil || c != e.Name || strings.HasPrefix(e.Name, "/") || seen[e.Name] {
				t.Fatalf("accepted unsafe or duplicate name %q", e.Name)
			}
			seen[e.Name] = true
			if e.Type == target.TypeChar || e.Type == target.TypeBlock {
				t.Fatalf("accepted device %q", e.Name)
			}
			if e.Type == target.TypeHardlink && !seen[e.Linkname] {
				t.Fatalf("hardlink %q to %q not listed before it", e.Name, e.Linkname)
			}
		}
		_ = a.Verify(context.Background())
	})
}

func FuzzParseDep(f *testing.F) {
	for _, s := range []string{"libfoo.tcz\nlibbar.tcz\n", "  a.tcz \n\n\tb .tcz", "mod-KERNEL.tcz\n", "../x.tcz\n", "a\r\nb\r\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		deps, err := ParseDep(data, "6.1")
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, d := range deps {
			if checkPkgName(d) != nil || seen[d] || strings.HasSuffix(d, ".tcz") || strings.Contains(d, "KERNEL") && strings.HasSuffix(d, "-KERNEL") {
				t.Fatalf("bad dep %q in %q", d, deps)
			}
			seen[d] = true
		}
	})
}

func FuzzParseInfo(f *testing.F) {
	for _, s := range []string{"Title: a.tcz\nChange-log: x\n    y\n", "Key:v\n\tcont\nOther: 1", ":\n", " x", "A: b\nA: c\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := ParseInfo(data)
		if err != nil {
			return
		}
		if len(info.Keys) != len(info.Fields) {
			t.Fatalf("keys %q vs fields %d", info.Keys, len(info.Fields))
		}
		for _, k := range info.Keys {
			if k == "" || strings.ContainsAny(k, " \t\n:") {
				t.Fatalf("bad key %q", k)
			}
		}
	})
}
