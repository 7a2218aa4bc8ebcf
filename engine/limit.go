package engine

import (
	"fmt"
	"path"
	"strings"
)

// Limit is a parsed --limit pattern, read the way Ansible reads one:
// comma- (or colon-) separated elements, each a guest name or a glob
// ("web*"); "all" or "*" is every guest; "!pat" excludes what pat matches;
// "&pat" keeps only what pat also matches. A limit with only exclusions
// starts from every guest. The zero Limit matches everything.
type Limit struct {
	src                    string
	include, must, exclude []string
}

// ParseLimit parses a --limit pattern. An empty string is no limit.
func ParseLimit(s string) (Limit, error) {
	l := Limit{src: s}
	if strings.TrimSpace(s) == "" {
		return Limit{}, nil
	}
	for _, el := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ':' }) {
		el = strings.TrimSpace(el)
		list := &l.include
		switch {
		case strings.HasPrefix(el, "!"):
			list, el = &l.exclude, el[1:]
		case strings.HasPrefix(el, "&"):
			list, el = &l.must, el[1:]
		}
		if el == "" {
			return Limit{}, fmt.Errorf("--limit %q: empty element (want names or globs like web1,web*,!web3)", s)
		}
		if el == "all" {
			el = "*"
		}
		if _, err := path.Match(el, ""); err != nil {
			return Limit{}, fmt.Errorf("--limit %q: bad glob %q: %w", s, el, err)
		}
		*list = append(*list, el)
	}
	return l, nil
}

// Active reports whether a limit was given.
func (l Limit) Active() bool { return l.src != "" }

// String is the pattern as given.
func (l Limit) String() string { return l.src }

// Match reports whether the guest called name is inside the limit.
func (l Limit) Match(name string) bool {
	if !l.Active() {
		return true
	}
	if len(l.include) > 0 && !matchAny(l.include, name) {
		return false
	}
	for _, p := range l.must {
		if !matchAny([]string{p}, name) {
			return false
		}
	}
	return !matchAny(l.exclude, name)
}

func matchAny(pats []string, name string) bool {
	for _, p := range pats {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
