package ops

import (
	"strings"
	"testing"
)

// TestRemoteExitError: a far tinyfarm's failure quotes the end of its
// stderr, cut to 600 bytes with "…", and a Go crash from its first line.
func TestRemoteExitError(t *testing.T) {
	r := Remote{Name: "far"}
	long := strings.Repeat("x", 1000) + "the end"
	msg := r.exitError("tinyfarm import", 2, []byte(long+"\n")).Error()
	if want := "host far: tinyfarm import: exit 2: …"; !strings.HasPrefix(msg, want) {
		t.Errorf("prefix: %q, want %q", msg[:60], want)
	}
	if tail := msg[strings.Index(msg, "…")+len("…"):]; len(tail) != 600 || !strings.HasSuffix(tail, "the end") {
		t.Errorf("tail %d bytes, want 600 ending \"the end\": %q", len(tail), tail)
	}
	if msg := r.exitError("tinyfarm x", 1, []byte("  no such guest\n")).Error(); msg != "host far: tinyfarm x: exit 1: no such guest" {
		t.Errorf("short stderr: %q", msg)
	}
	crash := "panic: boom\n\ngoroutine 1 [running]:\n" + strings.Repeat("main.f()\n", 200)
	if msg := r.exitError("tinyfarm x", 2, []byte(crash)).Error(); !strings.Contains(msg, "exit 2: panic: boom") {
		t.Errorf("crash: %q", msg[:80])
	}
}
