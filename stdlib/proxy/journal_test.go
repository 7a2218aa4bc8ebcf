package proxy

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// withJournal makes every registry of the test journal its changes,
// whatever the table's size.
func withJournal(t *testing.T, minBase int64) {
	old := journalMinBase
	journalMinBase = minBase
	t.Cleanup(func() { journalMinBase = old })
}

// TestTableDiffWindow checks the diff of a one-route change, computed from
// the lines around it: patching the table's text with it gives the new
// table's, and it is as short as one change makes it.
func TestTableDiffWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 2000; trial++ {
		var tab Table
		for i := rng.IntN(12); i > 0; i-- {
			tab.apply(journalRecord{VHosts: []VHost{{Host: fmt.Sprintf("h%d.test", rng.IntN(20)), To: "10.0.0.1", Addr: "10.0.0.1", Port: 80}}})
		}
		for i := rng.IntN(5); i > 0; i-- {
			tab.apply(journalRecord{Forwards: []Forward{{Listen: fmt.Sprintf(":%d", 2000+rng.IntN(9)), To: "10.0.0.1", Addr: "10.0.0.1", Port: 22}}})
		}
		var rec journalRecord
		switch rng.IntN(4) {
		case 0:
			rec.VHosts = []VHost{{Host: fmt.Sprintf("h%d.test", rng.IntN(20)), To: "10.0.0.2", Addr: "10.0.0.2", Port: 80}}
		case 1:
			rec.RemoveHosts = []string{fmt.Sprintf("h%d.test", rng.IntN(20))}
		case 2:
			rec.Forwards = []Forward{{Listen: fmt.Sprintf(":%d", 2000+rng.IntN(9)), To: "10.0.0.2", Addr: "10.0.0.2", Port: 22}}
		case 3:
			rec.RemoveListens = []string{fmt.Sprintf(":%d", 2000+rng.IntN(9))}
		}
		after := tab.clone()
		after.apply(rec)
		d := tableDiff(tab, rec)
		if (d == "") != (tab.String() == after.String()) {
			t.Fatalf("trial %d: %+v on\n%s\ndiff %q", trial, rec, tab, d)
		}
		if got, err := patch(tab.String(), d); err != nil || got != after.String() {
			t.Fatalf("trial %d: %+v on\n%s\ndiff:\n%s\npatched (%v):\n%s\nwant:\n%s", trial, rec, tab, d, err, got, after)
		}
		if n := strings.Count(d, "\n"); n > 3+2*diffContext+2 {
			t.Fatalf("trial %d: %d diff lines for one route:\n%s", trial, n, d)
		}
	}
}

// patch applies the unified diff d to text.
func patch(text, d string) (string, error) {
	if d == "" {
		return text, nil
	}
	lines := strings.SplitAfter(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var out []string
	next := 0 // the next line of text to copy
	dl := strings.SplitAfter(strings.TrimSuffix(d, "\n"), "\n")
	if len(dl) < 3 || !strings.HasPrefix(dl[0], "--- ") || !strings.HasPrefix(dl[1], "+++ ") {
		return "", fmt.Errorf("no diff header")
	}
	for _, l := range dl[2:] {
		if !strings.HasSuffix(l, "\n") {
			l += "\n"
		}
		switch l[0] {
		case '@':
			var a, b, c, e int
			if _, err := fmt.Sscanf(l, "@@ -%d,%d +%d,%d @@", &a, &b, &c, &e); err != nil {
				b = 1
				if _, err := fmt.Sscanf(l, "@@ -%d +%d", &a, &c); err != nil {
					if _, err := fmt.Sscanf(l, "@@ -%d,%d +%d", &a, &b, &c); err != nil {
						if _, err := fmt.Sscanf(l, "@@ -%d +%d,%d", &a, &c, &e); err != nil {
							return "", fmt.Errorf("hunk header %q", l)
						}
					}
				}
			}
			start := a - 1
			if b == 0 {
				start = a
			}
			if start < next {
				return "", fmt.Errorf("hunk %q overlaps", l)
			}
			out = append(out, lines[next:start]...)
			next = start
		case ' ', '-':
			if next >= len(lines) || lines[next] != l[1:] {
				return "", fmt.Errorf("line %d: %q does not match %q", next+1, l, lines[min(next, len(lines)-1)])
			}
			if l[0] == ' ' {
				out = append(out, l[1:])
			}
			next++
		case '+':
			out = append(out, l[1:])
		default:
			return "", fmt.Errorf("diff line %q", l)
		}
	}
	return strings.Join(append(out, lines[next:]...), ""), nil
}

// TestJournal follows the registry files through changes: the journal
// takes the changes of a large table, two registries (two processes)
// see each other's, and a compaction folds the journal into the base.
func TestJournal(t *testing.T) {
	withJournal(t, 1)
	old := compactMin
	compactMin = 1 << 10
	t.Cleanup(func() { compactMin = old })
	ctx := context.Background()
	dir := t.TempDir()
	a, b := NewRegistry(dir, nil), NewRegistry(dir, nil)
	jp := journalPath(a.Path())
	mustVHost(t, a, "seed.test", "10.0.0.1:80") // no epoch yet: a base
	if _, err := os.Stat(jp); !os.IsNotExist(err) {
		t.Fatalf("first change wrote a journal: %v", err)
	}
	for i := 0; i < 20; i++ {
		mustVHost(t, a, fmt.Sprintf("a%d.test", i), "10.0.0.2:80")
		mustVHost(t, b, fmt.Sprintf("b%d.test", i), "10.0.0.3:80")
	}
	if _, err := b.Remove(ctx, RemoveSpec{Host: "a3.test"}, ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	ta, err := a.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadTable(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(ta.VHosts) != 40 || ta.String() != loaded.String() {
		t.Fatalf("registry a has %d vhosts, LoadTable:\n%s\nregistry a:\n%s", len(ta.VHosts), loaded, ta)
	}
	// The journal holds records since the last compaction, never more
	// than half the base.
	st, err := loadStore(a.Path())
	if err != nil {
		t.Fatal(err)
	}
	if st.epoch < 2 || st.jend > st.size/2 {
		t.Errorf("epoch %d (want >= 2: compacted), journal %d bytes for a %d-byte base", st.epoch, st.jend, st.size)
	}
}

// TestJournalTornTail: a record cut short by a crash (or corrupt) is
// ignored with everything after it, and the next change replaces it.
func TestJournalTornTail(t *testing.T) {
	withJournal(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	r := NewRegistry(dir, nil)
	for i := 0; i < 3; i++ {
		mustVHost(t, r, fmt.Sprintf("h%d.test", i), "10.0.0.1:80")
	}
	jp := journalPath(r.Path())
	good, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	line, _ := encodeRecord(journalRecord{VHosts: []VHost{{Host: "torn.test", To: "10.0.0.9:80", Addr: "10.0.0.9", Port: 80}}})
	corrupt := append([]byte(nil), line...)
	corrupt[12] ^= 1
	for name, tail := range map[string][]byte{
		"torn":    line[:len(line)-5],
		"no-eol":  line[:len(line)-1],
		"corrupt": append(corrupt, line...), // and a good one after it
	} {
		if err := os.WriteFile(jp, append(append([]byte(nil), good...), tail...), 0o644); err != nil {
			t.Fatal(err)
		}
		tab, err := LoadTable(r.Path())
		if err != nil || len(tab.VHosts) != 3 || strings.Contains(tab.String(), "torn.test") {
			t.Fatalf("%s: LoadTable = %v, %v; want the 3 whole records", name, tab, err)
		}
		fresh := NewRegistry(dir, nil)
		mustVHost(t, fresh, "next.test", "10.0.0.4:80")
		b, _ := os.ReadFile(jp)
		if want := string(good) + string(mustEncode(t, VHost{Host: "next.test", To: "10.0.0.4:80", Addr: "10.0.0.4", Port: 80})); string(b) != want {
			t.Fatalf("%s: the next change did not cut the tail off:\n%q\nwant\n%q", name, b, want)
		}
		if _, err := fresh.Remove(ctx, RemoveSpec{Host: "next.test"}, ChangeOptions{}); err != nil {
			t.Fatal(err)
		}
		good, _ = os.ReadFile(jp)
	}
}

func mustEncode(t *testing.T, v VHost) []byte {
	line, err := encodeRecord(journalRecord{VHosts: []VHost{v}})
	if err != nil {
		t.Fatal(err)
	}
	return line
}

// TestJournalStale: a writer killed after writing a compacted base and
// before removing the journal leaves a journal of the previous epoch,
// whose records are in the base: it is not applied again, and the next
// change replaces it.
func TestJournalStale(t *testing.T) {
	withJournal(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	r := NewRegistry(dir, nil)
	mustVHost(t, r, "a.test", "10.0.0.1:80")
	mustVHost(t, r, "b.test", "10.0.0.1:80")
	jp := journalPath(r.Path())
	old, err := os.ReadFile(jp)
	if err != nil {
		t.Fatal(err)
	}
	// The compaction, killed before the journal's removal.
	st, err := loadStore(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	st.t.apply(journalRecord{RemoveHosts: []string{"b.test"}}) // a change after b, in the base only
	if err := st.writeBase(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(jp, old, 0o644); err != nil {
		t.Fatal(err)
	}
	tab, err := LoadTable(r.Path())
	if err != nil || tab.String() != "vhost a.test -> 10.0.0.1:80\n" {
		t.Fatalf("LoadTable = %v, %v: want a.test alone (the stale journal re-adds b.test)", tab, err)
	}
	mustVHost(t, r, "c.test", "10.0.0.1:80")
	if tab, err := r.Routes(ctx); err != nil || len(tab.VHosts) != 2 {
		t.Fatalf("routes = %v, %v; want a.test and c.test", tab, err)
	}
	if tab, err := LoadTable(r.Path()); err != nil || len(tab.VHosts) != 2 {
		t.Fatalf("LoadTable = %v, %v; want a.test and c.test", tab, err)
	}
}

// TestServerFollowsJournal: a server applies journal records to its live
// table (re-pointing, removing, the default and wildcard routes), drops
// the backends no route uses, and loads the table again when the base is
// replaced.
func TestServerFollowsJournal(t *testing.T) {
	withJournal(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	r := NewRegistry(dir, nil)
	mustVHost(t, r, "a.test", "10.0.0.1:80")
	mustVHost(t, r, "b.test", "10.0.0.1:80")
	s, err := NewServer(Options{RoutesFile: r.Path()})
	if err != nil {
		t.Fatal(err)
	}
	s.fwdCtx, s.stopFwd = context.WithCancel(ctx)
	defer s.stopFwd()
	if err := s.reload(true); err != nil {
		t.Fatal(err)
	}
	check := func(want map[string]string) {
		t.Helper()
		if err := s.reload(false); err != nil {
			t.Fatal(err)
		}
		sn := s.routes.Load()
		for host, addr := range want {
			got := ""
			if b := sn.lookup(host); b != nil {
				got = b.addr
			}
			if got != addr {
				t.Errorf("lookup(%s) = %q, want %q", host, got, addr)
			}
		}
		// What a full load of the same files gives.
		full := s.buildSnapshot(mustLoad(t, r.Path()), &snapshot{})
		for host := range want {
			fb, lb := full.lookup(host), sn.lookup(host)
			if (fb == nil) != (lb == nil) || fb != nil && fb.addr != lb.addr {
				t.Errorf("lookup(%s): live %v, full load %v", host, lb, fb)
			}
		}
		if len(s.live.byAddr) != len(s.live.refs) {
			t.Errorf("backends by address %d, referenced %d", len(s.live.byAddr), len(s.live.refs))
		}
	}
	check(map[string]string{"a.test": "10.0.0.1:80", "b.test": "10.0.0.1:80", "c.test": ""})
	old := s.routes.Load().lookup("a.test")
	if _, err := r.VHost(ctx, VHostSpec{Host: "a.test", To: "10.0.0.2:80", Replace: true}, ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"a.test": "10.0.0.2:80", "b.test": "10.0.0.1:80"})
	if _, err := r.Remove(ctx, RemoveSpec{Host: "b.test"}, ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"a.test": "10.0.0.2:80", "b.test": ""})
	if !old.pool.closed || len(s.live.refs) != 1 {
		t.Errorf("the backend no route uses is still open (%d backends)", len(s.live.refs))
	}
	mustVHost(t, r, "*.w.test", "10.0.0.3:80")
	mustVHost(t, r, DefaultHost, "10.0.0.4:80")
	check(map[string]string{"x.w.test": "10.0.0.3:80", "other.test": "10.0.0.4:80", "a.test": "10.0.0.2:80"})
	if _, err := r.Remove(ctx, RemoveSpec{Host: "*.w.test"}, ChangeOptions{}); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"x.w.test": "10.0.0.4:80"})
	// Replaced whole (another tool, or a compaction).
	if err := writeFileAtomic(r.Path(), []byte(`{"vhosts":[{"host":"z.test","to":"10.0.0.5:80","addr":"10.0.0.5","port":80}],"forwards":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	check(map[string]string{"z.test": "10.0.0.5:80", "a.test": ""})
}

func mustLoad(t *testing.T, path string) Table {
	t.Helper()
	tab, err := LoadTable(path)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

// TestTableFile: writing whole tables stores only their differences, and
// reading back (LoadTable) gives the last table written.
func TestTableFile(t *testing.T) {
	withJournal(t, 1)
	path := filepath.Join(t.TempDir(), RoutesFile)
	f := NewTableFile(path)
	rng := rand.New(rand.NewPCG(3, 4))
	var last Table
	for i := 0; i < 200; i++ {
		var tab Table
		for h := 0; h < 30; h++ {
			if rng.IntN(3) != 0 {
				tab.VHosts = append(tab.VHosts, VHost{Host: fmt.Sprintf("h%d.test", h), To: "10.0.0.1", Addr: "10.0.0.1", Port: 80 + rng.IntN(2)})
			}
		}
		if rng.IntN(2) == 0 {
			tab.Forwards = []Forward{{Listen: ":2222", To: "10.0.0.1", Addr: "10.0.0.1", Port: 22}}
		}
		changed, err := f.Write(tab)
		if err != nil {
			t.Fatal(err)
		}
		tab.sort() // as stored
		if want := tab.String() != last.String(); changed != want {
			t.Fatalf("write %d: changed = %v, want %v", i, changed, want)
		}
		if got := mustLoad(t, path); got.String() != tab.String() {
			t.Fatalf("write %d: read back\n%s\nwant\n%s", i, got, tab)
		}
		last = tab
	}
	if _, err := os.Stat(journalPath(path)); err != nil {
		t.Errorf("no journal after 200 writes: %v", err)
	}
}

// TestTableFileApply: changes applied one by one (Apply), mixed with
// whole tables (Write), read back as the table they make; a change to
// what the file has already writes nothing; TableSignature moves with
// every write.
func TestTableFileApply(t *testing.T) {
	withJournal(t, 1)
	path := filepath.Join(t.TempDir(), RoutesFile)
	f := NewTableFile(path)
	rng := rand.New(rand.NewPCG(7, 8))
	want := map[string]VHost{}
	vhost := func(h int) VHost {
		return VHost{Host: fmt.Sprintf("h%02d.test", h), To: "10.0.0.1", Addr: "10.0.0.1", Port: 80 + rng.IntN(2)}
	}
	for i := 0; i < 300; i++ {
		sig := TableSignature(path)
		var set []VHost
		var remove []string
		differs := false
		if i%50 == 49 { // a whole table now and then
			var tab Table
			clear(want)
			for h := 0; h < 40; h += 1 + rng.IntN(3) {
				v := vhost(h)
				tab.VHosts = append(tab.VHosts, v)
				want[v.Host] = v
			}
			if _, err := f.Write(tab); err != nil {
				t.Fatal(err)
			}
		} else {
			for k := rng.IntN(4); k >= 0; k-- {
				v := vhost(rng.IntN(40))
				if rng.IntN(3) == 0 {
					remove = append(remove, v.Host)
				} else {
					set = append(set, v)
				}
			}
			// What Apply promises: a host set wins over its removal, the
			// last of a host set twice wins.
			next := maps.Clone(want)
			for _, h := range remove {
				delete(next, h)
			}
			for _, v := range set {
				next[v.Host] = v
			}
			differs = !maps.Equal(next, want)
			want = next
			changed, err := f.Apply(set, remove)
			if err != nil {
				t.Fatal(err)
			}
			if changed != differs {
				t.Fatalf("apply %d (set %v, remove %v): changed = %v, want %v", i, set, remove, changed, differs)
			}
			if changed && TableSignature(path) == sig {
				t.Fatalf("apply %d changed the table, not its signature %s", i, sig)
			}
		}
		got := mustLoad(t, path)
		if len(got.VHosts) != len(want) {
			t.Fatalf("step %d: read back %d vhosts, want %d\n%s", i, len(got.VHosts), len(want), got)
		}
		for _, v := range got.VHosts {
			if want[v.Host] != v {
				t.Fatalf("step %d: read back %+v, want %+v", i, v, want[v.Host])
			}
		}
	}
}

// TestServerRecentFold: hundreds of changes (more than a snapshot keeps
// beside its exact map) leave the live table as a full load of the files
// would make it.
func TestServerRecentFold(t *testing.T) {
	withJournal(t, 1)
	old := compactMin
	compactMin = 1 << 30 // a compaction reloads all: only folds here
	t.Cleanup(func() { compactMin = old })
	ctx := context.Background()
	r := NewRegistry(t.TempDir(), nil)
	s, err := NewServer(Options{RoutesFile: r.Path()})
	if err != nil {
		t.Fatal(err)
	}
	s.fwdCtx, s.stopFwd = context.WithCancel(ctx)
	defer s.stopFwd()
	if err := s.reload(true); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	folded, last := 0, 0
	for i := 1; i < 4*maxRecent; i++ {
		host := fmt.Sprintf("h%d.test", rng.IntN(2*maxRecent))
		if rng.IntN(3) == 0 {
			if _, err := r.Remove(ctx, RemoveSpec{Host: host}, ChangeOptions{}); err != nil {
				t.Fatal(err)
			}
		} else {
			mustVHost(t, r, host, fmt.Sprintf("10.0.0.%d:80", 1+rng.IntN(4)))
		}
		if err := s.reload(false); err != nil {
			t.Fatal(err)
		}
		n := len(s.routes.Load().recent)
		if n < last {
			folded++
		}
		last = n
	}
	if folded == 0 {
		t.Errorf("never folded the recent changes into the exact map")
	}
	sn := s.routes.Load()
	full := s.buildSnapshot(mustLoad(t, r.Path()), &snapshot{})
	for i := 0; i < 2*maxRecent; i++ {
		host := fmt.Sprintf("h%d.test", i)
		fb, lb := full.lookup(host), sn.lookup(host)
		if (fb == nil) != (lb == nil) || fb != nil && fb.addr != lb.addr {
			t.Errorf("lookup(%s): live %v, full load %v", host, lb, fb)
		}
	}
	used := map[*backend]bool{}
	sn.each(func(b *backend) { used[b] = true })
	if len(used) != len(s.live.refs) {
		t.Errorf("the snapshot uses %d backends, %d are counted", len(used), len(s.live.refs))
	}
	for b := range s.live.refs {
		if !used[b] || b.pool.closed {
			t.Errorf("backend %s counted but unused (%v) or closed (%v)", b.addr, !used[b], b.pool.closed)
		}
	}
}
