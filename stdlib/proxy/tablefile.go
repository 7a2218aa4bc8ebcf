package proxy

import (
	"fmt"
	"os"
	"strings"
)

// TableFile writes a whole routing table to a routes file that a Server
// serves, the way the registry does: only the routes that differ from the
// file's are written (appended to its journal once the table is large), so
// the server applies them without reloading the table. For a program that
// computes its table whole, such as the cluster daemon from etcd. The
// file must have no other writer. Not safe for concurrent use.
type TableFile struct {
	path string
	st   *store
}

// NewTableFile returns the writer of the routes file at path (created on
// the first Write).
func NewTableFile(path string) *TableFile { return &TableFile{path: path} }

// Write makes the file's table t; changed is false when it was t already.
// Write sorts t and keeps it (Apply changes it in place): the caller must
// not use it afterwards.
func (f *TableFile) Write(t Table) (changed bool, err error) {
	if f.st == nil {
		if f.st, err = loadStore(f.path); err != nil {
			return false, fmt.Errorf("write routes %s: %w", f.path, err)
		}
	}
	t.sort()
	rec := tableChanges(f.st.t, t)
	if rec.empty() {
		return false, nil
	}
	f.st.t = t
	if err := f.st.commit(rec); err != nil {
		f.st = nil
		return false, fmt.Errorf("write routes %s: %w", f.path, err)
	}
	return true, nil
}

// tableChanges returns the record that turns the sorted table a into the
// sorted table b (one pass over both).
func tableChanges(a, b Table) journalRecord {
	var rec journalRecord
	rec.RemoveHosts, rec.VHosts = mergeDiff(a.VHosts, b.VHosts, func(v VHost) string { return v.Host })
	rec.RemoveListens, rec.Forwards = mergeDiff(a.Forwards, b.Forwards, func(f Forward) string { return f.Listen })
	return rec
}

// mergeDiff walks two lists sorted by key: the keys only in a, and the
// entries of b that are new or differ.
func mergeDiff[T comparable](a, b []T, key func(T) string) (removed []string, set []T) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		c := 0
		switch {
		case i == len(a):
			c = 1
		case j == len(b):
			c = -1
		default:
			c = strings.Compare(key(a[i]), key(b[j]))
		}
		switch {
		case c < 0:
			removed = append(removed, key(a[i]))
			i++
		case c > 0:
			set = append(set, b[j])
			j++
		default:
			if a[i] != b[j] {
				set = append(set, b[j])
			}
			i++
			j++
		}
	}
	return removed, set
}

// Apply changes the file's table by the vhosts in set (added or
// re-pointed) and the hosts in remove, without the whole table: for a
// writer that learns of changes one by one, such as the cluster daemon
// watching etcd. A host in both lists is set; of a host set twice, the
// last wins. Entries that are as the file has them already are not
// written; changed is false when nothing differed.
func (f *TableFile) Apply(set []VHost, remove []string) (changed bool, err error) {
	if f.st == nil {
		if f.st, err = loadStore(f.path); err != nil {
			return false, fmt.Errorf("write routes %s: %w", f.path, err)
		}
	}
	var rec journalRecord
	last := make(map[string]int, len(set))
	for i, v := range set {
		last[v.Host] = i
	}
	for _, h := range remove {
		if _, ok := last[h]; !ok {
			if _, ok := f.st.t.vhostIndex(h); ok {
				rec.RemoveHosts = append(rec.RemoveHosts, h)
			}
		}
	}
	for i, v := range set {
		if last[v.Host] != i {
			continue
		}
		if j, ok := f.st.t.vhostIndex(v.Host); !ok || f.st.t.VHosts[j] != v {
			rec.VHosts = append(rec.VHosts, v)
		}
	}
	if rec.empty() {
		return false, nil
	}
	f.st.t.apply(rec)
	if err := f.st.commit(rec); err != nil {
		f.st = nil
		return false, fmt.Errorf("write routes %s: %w", f.path, err)
	}
	return true, nil
}

// TableSignature changes whenever the routes file at path (its base or
// its journal) changes: a cheap test of whether to load it again.
func TableSignature(path string) string {
	sig := func(p string) string {
		fi, err := os.Stat(p)
		if err != nil {
			return "-"
		}
		return signature(fi)
	}
	return sig(path) + "+" + sig(journalPath(path))
}
