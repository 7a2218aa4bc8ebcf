package cli

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/all"
)

// braceOptions reads the option names a call writes in its first {...}
// after name: `colinux.guest{name, mem="128M", forward={[2201]=22}}` gives
// name, mem, forward; `a | b` (one of) gives both.
func braceOptions(call, name string) ([]string, bool) {
	i := strings.Index(call, name)
	if i < 0 {
		return nil, false
	}
	rest := call[i+len(name):]
	open := strings.IndexByte(rest, '{')
	if open < 0 {
		return nil, false
	}
	depth, start := 0, open+1
	var names []string
	ident := regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_]*)`)
	for j := open; j < len(rest); j++ {
		switch rest[j] {
		case '{', '(', '[':
			depth++
		case '}', ')', ']':
			depth--
		}
		if depth == 1 && (rest[j] == ',' || rest[j] == '|') || depth == 0 {
			if m := ident.FindStringSubmatch(rest[start:j]); m != nil {
				names = append(names, m[1])
			}
			start = j + 1
		}
		if depth == 0 {
			break
		}
	}
	slices.Sort(names)
	return names, true
}

// TestDocsAgreeWithREADME: every documented function with options appears
// in a README table with exactly the option keys its decoder accepts, and
// its doc's call line lists the same keys.
func TestDocsAgreeWithREADME(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile("`([^`]+)`")
	var cells []string
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `") {
			first := strings.SplitN(line[1:], " | ", 2)[0]
			for _, m := range code.FindAllStringSubmatch(first, -1) {
				cells = append(cells, m[1])
			}
		}
	}
	docs := engine.Docs(all.Modules())
	if len(docs) < 20 {
		t.Fatalf("only %d documented functions", len(docs))
	}
	for _, d := range docs {
		if d.Opts == nil {
			continue
		}
		var want []string
		for _, o := range lx.Options(d.Opts) {
			want = append(want, o.Name)
		}
		if got, ok := braceOptions(d.Call, d.Name); !ok || !slices.Equal(got, want) {
			t.Errorf("doc of %s: call %q lists %v, the decoder accepts %v", d.Name, d.Call, got, want)
		}
		found := false
		for _, c := range cells {
			if !strings.HasPrefix(c, d.Name+"{") && !strings.HasPrefix(c, d.Name+"(") {
				continue
			}
			got, ok := braceOptions(c, d.Name)
			if !ok {
				continue // a form without options, such as task(name, fn)
			}
			found = true
			if !slices.Equal(got, want) {
				t.Errorf("README: %s lists options %v, the decoder accepts %v", c, got, want)
			}
		}
		if !found {
			t.Errorf("README: no table row documents %s (want a cell like `%s`)", d.Name, d.Call)
		}
	}
}
