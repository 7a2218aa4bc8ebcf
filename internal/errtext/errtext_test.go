package errtext

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestTail(t *testing.T) {
	long := strings.Repeat("x", 500) + "the end"
	if got := Tail([]byte(long), 400); !strings.HasPrefix(got, "…") || !strings.HasSuffix(got, "the end") || len(got) != 400+len("…") {
		t.Errorf("long stderr: %q", got)
	}
	if got := Tail([]byte("  short\n"), 400); got != "short" {
		t.Errorf("short stderr: %q", got)
	}
	// Cut inside a multi-byte rune: still valid UTF-8.
	if got := Tail([]byte(strings.Repeat("é", 300)), 401); !strings.HasPrefix(got, "…é") {
		t.Errorf("runes: %q", got[:10])
	}
	// "panic: " inside a line is no crash.
	if got := Tail([]byte("echo panic: no\ngoroutine x"), 400); got != "echo panic: no\ngoroutine x" {
		t.Errorf("not a crash: %q", got)
	}
}

// TestTailGoCrash: a real Go program's crash is quoted from its start,
// where it says what happened, not from its goroutine stacks.
func TestTailGoCrash(t *testing.T) {
	if os.Getenv("ERRTEXT_CRASH") == "1" {
		var m map[string]int
		go func() { select {} }()
		m["boom"] = 1 // panic: assignment to entry in nil map
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestTailGoCrash$")
	cmd.Env = append(os.Environ(), "ERRTEXT_CRASH=1", "GOTRACEBACK=all")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("the crashing program exited 0")
	}
	got := Tail([]byte("some output first\n"+stderr.String()), 400)
	if !strings.HasPrefix(got, "panic: assignment to entry in nil map") {
		t.Errorf("crash quoted as %q", got)
	}
	if len(stderr.String()) > 400 && !strings.HasSuffix(got, "…") {
		t.Errorf("a cut crash report should end with …: %q", got)
	}
}
