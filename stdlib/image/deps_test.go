package image_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The image builder sits below the guest drivers: it writes the line they
// wait for (internal/ready) but must not depend on colinux or its drivers,
// directly or through another package.
func TestImageDoesNotImportColinux(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, p := range strings.Fields(string(out)) {
		if strings.Contains(p, "/stdlib/colinux") {
			t.Errorf("stdlib/image depends on %s: move what it needs below both (as internal/ready)", p)
		}
	}
}
