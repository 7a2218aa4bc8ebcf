package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnitFile checks what systemd is told: ordering after the network,
// the cgroup delegated, boot on start, a bounded clean stop.
func TestUnitFile(t *testing.T) {
	u := unitFile("/usr/local/bin/tinyfarm", "/var/lib/tinyfarm", 20*time.Second)
	for _, want := range []string{
		"Wants=network-online.target\n", "After=network-online.target\n",
		"Type=oneshot\n", "RemainAfterExit=yes\n", "Delegate=yes\n",
		"Environment=TINYFARM_HOME=/var/lib/tinyfarm\n",
		"ExecStart=/usr/local/bin/tinyfarm boot\n",
		"ExecStop=/usr/local/bin/tinyfarm shutdown --grace 20s\n",
		"TimeoutStopSec=50\n", "WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q:\n%s", want, u)
		}
	}
}

func runCLI(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), code
}

// TestServiceInstallUninstall installs into a temp root that looks like a
// systemd host: the unit and its multi-user.target.wants link (what
// `systemctl enable` makes) appear, a second install changes nothing,
// uninstall removes both. Without systemd it prints the rc.local line.
func TestServiceInstallUninstall(t *testing.T) {
	t.Setenv("TINYFARM_HOME", t.TempDir())
	root := t.TempDir()
	out, _, code := runCLI(t, "service", "install", "--root", root)
	if code != 0 || !strings.Contains(out, "add this line to /etc/rc.local") || !strings.Contains(out, " boot >>") {
		t.Errorf("install without systemd: %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); err == nil {
		t.Error("install without systemd wrote files")
	}
	os.MkdirAll(filepath.Join(root, "run/systemd/system"), 0o755)
	unit := filepath.Join(root, "etc/systemd/system/tinyfarm.service")
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/tinyfarm.service")
	out, errs, code := runCLI(t, "service", "install", "--root", root, "--grace", "30s")
	if code != 0 || !strings.HasPrefix(out, "installed ") {
		t.Fatalf("install: %d\n%s%s", code, out, errs)
	}
	b, err := os.ReadFile(unit)
	if err != nil || !strings.Contains(string(b), "shutdown --grace 30s") || !strings.Contains(string(b), "Environment=TINYFARM_HOME="+os.Getenv("TINYFARM_HOME")) {
		t.Errorf("unit file: %v\n%s", err, b)
	}
	if l, err := os.Readlink(wants); err != nil || l != "../tinyfarm.service" {
		t.Errorf("enable link: %q %v", l, err)
	}
	if out, _, code := runCLI(t, "service", "install", "--root", root, "--grace", "30s"); code != 0 || !strings.HasPrefix(out, "up to date") {
		t.Errorf("second install: %d %s", code, out)
	}
	if out, _, code := runCLI(t, "service", "uninstall", "--root", root); code != 0 || !strings.HasPrefix(out, "removed ") {
		t.Errorf("uninstall: %d %s", code, out)
	}
	for _, p := range []string{unit, wants} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s left after uninstall", p)
		}
	}
	if out, _, code := runCLI(t, "service", "uninstall", "--root", root); code != 0 || !strings.HasPrefix(out, "not installed") {
		t.Errorf("second uninstall: %d %s", code, out)
	}
}

// TestBootEmptyFarm: boot on a farm with nothing to start reports so and
// changes nothing.
func TestBootEmptyFarm(t *testing.T) {
	t.Setenv("TINYFARM_HOME", t.TempDir())
	out, errs, code := runCLI(t, "boot")
	if code != 0 || strings.TrimSpace(out) != "BOOT  changed=0 ok=0 failed=0" {
		t.Errorf("boot: %d\n%s%s", code, out, errs)
	}
}
