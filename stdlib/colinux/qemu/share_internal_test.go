package qemu

import "testing"

// TestParseShareProbe: the 9p mounts (paths unescaped), the mount tags
// (NUL-terminated or not) and whether 9p is there.
func TestParseShareProbe(t *testing.T) {
	out := "@mounts\n/dev/root / ext4 rw 0 0\nshare0 /mnt/rw 9p rw,trans=virtio 0 0\n" +
		"share1 /mnt/host\\040ro\\134x 9p ro,trans=virtio 0 0\ntmpfs /mnt/t tmpfs rw 0 0\n" +
		"@tags\nshare0\x00\nshare1\n\n@9p\nyes\n"
	st := parseShareProbe(out)
	if len(st.mounted) != 2 || !st.mounted["share0 /mnt/rw"] || !st.mounted[`share1 /mnt/host ro\x`] {
		t.Errorf("mounted: %v", st.mounted)
	}
	if len(st.tags) != 2 || !st.tags["share0"] || !st.tags["share1"] || !st.have9p {
		t.Errorf("tags %v, 9p %v", st.tags, st.have9p)
	}
	if st := parseShareProbe("@mounts\n/dev/root / ext4 rw 0 0\n@tags\n@9p\n"); st.have9p || len(st.tags) != 0 || len(st.mounted) != 0 {
		t.Errorf("no 9p: %+v", st)
	}
	for in, want := range map[string]string{`a\040b`: "a b", `a\011b\012`: "a\tb\n", `x\`: `x\`, `x\0`: `x\0`, `\999`: `\999`} {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}
