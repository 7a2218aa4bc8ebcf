package proxy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/aymanbagabas/go-udiff"
)

// diffContext is the context lines around a change in a unified diff
// (udiff.Unified's).
const diffContext = 3

// tableDiff is the unified diff of the table's String() before and after
// rec. A change of one route diffs only the lines around it, so its cost
// does not grow with the table; a larger one (RemoveGuest) diffs the
// whole tables.
func tableDiff(before Table, rec journalRecord) string {
	const from, to = "routes (current)", "routes (planned)"
	if rec.lines() != 1 {
		after := before.clone()
		after.apply(rec)
		return udiff.Unified(from, to, before.String(), after.String())
	}
	// k: the changed line's index in before's lines (where it is inserted
	// if new); had: whether before has it.
	var k int
	var had bool
	switch {
	case len(rec.VHosts) == 1:
		k, had = before.vhostIndex(rec.VHosts[0].Host)
	case len(rec.RemoveHosts) == 1:
		k, had = before.vhostIndex(rec.RemoveHosts[0])
	case len(rec.Forwards) == 1:
		k, had = before.forwardIndex(rec.Forwards[0].Listen)
		k += len(before.VHosts)
	default:
		k, had = before.forwardIndex(rec.RemoveListens[0])
		k += len(before.VHosts)
	}
	// The lines around the change, as a table of their own, before and
	// after the change: an inserted line gets its context after it from
	// the lines pushed down, a removed one from those pulled up.
	lo := max(0, k-diffContext)
	win := window(before, lo, k+diffContext+b2i(had))
	a := win.String()
	win.apply(rec)
	d := udiff.Unified(from, to, a, win.String())
	if lo == 0 || d == "" {
		return d
	}
	return shiftHunks(d, lo)
}

// window returns a copy of the routes on lines [lo, hi) of t.String().
func window(t Table, lo, hi int) Table {
	nv, n := len(t.VHosts), len(t.VHosts)+len(t.Forwards)
	hi = min(hi, n)
	var w Table
	if lo < nv {
		w.VHosts = slices.Clone(t.VHosts[lo:min(hi, nv)])
	}
	if hi > nv {
		w.Forwards = slices.Clone(t.Forwards[max(lo, nv)-nv : hi-nv])
	}
	return w
}

// shiftHunks adds off to the line numbers of the hunk headers of the
// unified diff d ("@@ -a,b +c,d @@").
func shiftHunks(d string, off int) string {
	lines := strings.SplitAfter(d, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "@@ -") {
			continue
		}
		var a, c int
		oldR, newR, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(l, "@@ -"), " @@\n"), " +")
		if !ok {
			continue
		}
		oldN, oldC, _ := strings.Cut(oldR, ",")
		newN, newC, _ := strings.Cut(newR, ",")
		if _, err := fmt.Sscan(oldN, &a); err != nil {
			continue
		}
		if _, err := fmt.Sscan(newN, &c); err != nil {
			continue
		}
		h := fmt.Sprintf("@@ -%d", a+off)
		if oldC != "" {
			h += "," + oldC
		}
		h += fmt.Sprintf(" +%d", c+off)
		if newC != "" {
			h += "," + newC
		}
		lines[i] = h + " @@\n"
	}
	return strings.Join(lines, "")
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
