package colinuxd

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
)

func TestArgs(t *testing.T) {
	spec := driver.Spec{Name: "web1", Dir: "/state/web1"}
	got := strings.Join(Args(spec, ""), " ")
	want := "colinux-daemon -d -p " + filepath.Join("/state/web1", PIDFile) + " @" + filepath.Join("/state/web1", ConfFile)
	if got != want {
		t.Errorf("Args = %s\nwant   %s", got, want)
	}
}

func TestConfig(t *testing.T) {
	var r Runner
	text, err := r.Config(driver.Spec{Name: "g", Kernel: "vmlinux", Initrds: []string{"core.gz"}, MemBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "kernel=vmlinux\ninitrd=core.gz\nmem=64\neth0=slirp,") {
		t.Errorf("config:\n%s", text)
	}
}

func TestUnsupportedOffWindows(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("coLinux can run here")
	}
	var r Runner
	spec := driver.Spec{Name: "web1", Dir: t.TempDir(), Kernel: "vmlinux"}
	_, err := r.Start(context.Background(), spec)
	if !errors.Is(err, driver.ErrUnsupported) || !strings.Contains(err.Error(), "coLinux runs only on 32-bit Windows hosts") ||
		!strings.HasPrefix(err.Error(), "colinux web1: start: ") {
		t.Errorf("Start: %v", err)
	}
	if _, err := r.Attach(context.Background(), spec); !errors.Is(err, driver.ErrUnsupported) {
		t.Errorf("Attach: %v", err)
	}
}
