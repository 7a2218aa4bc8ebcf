package errkind_test

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine/lx"
	"github.com/tinyfarm/tinyfarm/stdlib/internal/errkind"
)

func TestSentinelsCarryTheirKind(t *testing.T) {
	for _, c := range []struct {
		err   error
		class error
		kind  string
	}{
		{errkind.NotFound("not found"), fs.ErrNotExist, lx.KindNotFound},
		{errkind.Invalid("invalid"), fs.ErrInvalid, lx.KindInvalid},
		{errkind.Unsupported("unsupported"), errors.ErrUnsupported, lx.KindUnsupported},
		{errkind.Kind("no_quorum", "cluster lost quorum"), nil, "no_quorum"},
	} {
		wrapped := fmt.Errorf("op subject: %w", c.err)
		if !errors.Is(wrapped, c.err) || c.class != nil && !errors.Is(wrapped, c.class) {
			t.Errorf("%v: errors.Is does not see the sentinel and its class %v", wrapped, c.class)
		}
		if got := lx.KindOf(wrapped); got != c.kind {
			t.Errorf("KindOf(%v) = %s, want %s", wrapped, got, c.kind)
		}
		if wrapped.Error() != "op subject: "+c.err.Error() {
			t.Errorf("message %q: the class must not show in it", wrapped)
		}
	}
	if errors.Is(errkind.NotFound("a"), errkind.NotFound("a")) {
		t.Error("two sentinels with one message are the same error")
	}
}
