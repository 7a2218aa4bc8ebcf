package fsutil

import (
	"errors"
	"strings"
	"testing"
)

// TestErrNoMknodat: where there is no mknodat(2) the error names it, and
// callers see the class errors.ErrUnsupported (Lua kind unsupported).
func TestErrNoMknodat(t *testing.T) {
	if !errors.Is(ErrNoMknodat, errors.ErrUnsupported) {
		t.Error("ErrNoMknodat does not match errors.ErrUnsupported")
	}
	if msg := ErrNoMknodat.Error(); !strings.Contains(msg, "mknodat(2)") || !strings.Contains(msg, "Linux host") {
		t.Errorf("message %q does not name mknodat(2) and the way around", msg)
	}
}
