package ops

import (
	"reflect"
	"testing"
)

func TestUnifyExcluded(t *testing.T) {
	ex := append(DefaultUnifyExclude(), "usr/local/lib/*.so*")
	for p, want := range map[string]bool{
		"etc/passwd": true, "etc": true, "etcetera/x": false, "tce/onboot.lst": true,
		"tce/optional/nginx.tcz": false, "usr/local/lib/libz.so.1": true, "usr/local/lib/x/libz.so.1": false,
		"bin/busybox": false, "var/log/x": true,
	} {
		if got := unifyExcluded(p, ex); got != want {
			t.Errorf("excluded(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestAlignedRanges(t *testing.T) {
	const bs = 4096
	// Same placement in both images: all whole blocks shared, the partial
	// tail block not.
	r, un := alignedRanges([]extent{{0, 8192, 12288}}, []extent{{0, 8192, 12288}}, 10000, bs)
	if !reflect.DeepEqual(r, []blockRange{{8192, 8192, 8192}}) || un != 10000-8192 {
		t.Errorf("same placement: %v, unaligned %d", r, un)
	}
	// Offsets differing by 1 KiB: nothing can be shared.
	r, un = alignedRanges([]extent{{0, 8192, 8192}}, []extent{{0, 9216, 8192}}, 8192, bs)
	if len(r) != 0 || un != 8192 {
		t.Errorf("misaligned: %v, unaligned %d", r, un)
	}
	// Two fragments in the destination, aligned: two ranges.
	r, _ = alignedRanges([]extent{{0, 0, 16384}}, []extent{{0, 40960, 8192}, {8192, 81920, 8192}}, 16384, bs)
	if !reflect.DeepEqual(r, []blockRange{{0, 40960, 8192}, {8192, 81920, 8192}}) {
		t.Errorf("fragments: %v", r)
	}
	// A start 1 KiB into a block on both sides: shared from the next block.
	r, _ = alignedRanges([]extent{{0, 5120, 8192}}, []extent{{0, 1024, 8192}}, 8192, bs)
	if !reflect.DeepEqual(r, []blockRange{{8192, 4096, 4096}}) {
		t.Errorf("offset start: %v", r)
	}
}
