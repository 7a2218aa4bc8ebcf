package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

// A panicking guest prints kilobytes of stack dump after the banner. The
// error's console tail must still hold the init's last words (the line a
// user needs) and the banner, not only the dump. TestVMPanicBeforeReady
// failed on exactly this when the dump outgrew the tail.
func TestCrashTailKeepsLinesBeforePanic(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("previous boot\n")
	boot := int64(b.Len())
	for i := 0; i < 40; i++ {
		b.WriteString("[    1.000000] booting line\n")
	}
	b.WriteString("test: init exits\n")
	b.WriteString("[    2.000000] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000300\n")
	for i := 0; i < 200; i++ {
		b.WriteString("[    2.000001]  dump_stack_lvl+0x44/0x5c frame\n")
	}
	b.WriteString("[    2.100000] ---[ end Kernel panic - not syncing: Attempted to kill init! ]---\n")
	g := &Guest{spec: driver.Spec{Name: "t", Dir: dir}, boot: bootInfo{ConsoleOffset: boot}}
	if err := os.WriteFile(filepath.Join(dir, "console.log"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got := g.crashTail(2048)
	for _, want := range []string{"test: init exits", "Kernel panic - not syncing: Attempted", "---[ end Kernel panic"} {
		if !strings.Contains(got, want) {
			t.Errorf("crash tail lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "previous boot") {
		t.Errorf("crash tail reaches into the previous boot:\n%s", got)
	}
	if len(got) > 2200 {
		t.Errorf("crash tail is %d bytes, want about 2048", len(got))
	}
	// Without a panic it is the plain end of the log.
	os.WriteFile(filepath.Join(dir, "console.log"), []byte("previous boot\nline a\nline b\n"), 0o644)
	if got := g.crashTail(2048); got != "line a\nline b" {
		t.Errorf("crash tail without panic = %q", got)
	}
}
