//go:build linux

package ns_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// buildHelper builds cmd/tinyfarm-guest as make build does (static, the
// given stamp) into dir.
func buildHelper(t *testing.T, dir, stamp string) string {
	t.Helper()
	bin := filepath.Join(dir, "tinyfarm-guest")
	cmd := exec.Command("go", "build", "-ldflags", "-X github.com/tinyfarm/tinyfarm/stdlib/colinux/guestexe.Stamp="+stamp, "-o", bin, "github.com/tinyfarm/tinyfarm/cmd/tinyfarm-guest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tinyfarm-guest: %v\n%s", err, out)
	}
	return bin
}

// TestHelperBinaryGuest runs a guest the way tinyfarm built by make does:
// monitor, init and every exec from the small tinyfarm-guest binary, not
// from this test binary. In the default configuration (user namespace
// where the host has them, the farm bridge). The monitor re-executes
// itself once the guest runs (settle) and still supervises it: exec,
// a command that leaves a child holding its output, a command killed by
// its deadline with its children, a clean stop with its exit record.
func TestHelperBinaryGuest(t *testing.T) {
	needRoot(t)
	bin := buildHelper(t, t.TempDir(), "helpertest")
	disk := scatterDisk(t, "")
	s := spec(t, "nshelper", disk, 51)
	s.UserNS = ns.UserNSAvailable()
	r := &ns.Runner{Exe: bin}
	g, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Stop(context.Background(), 0) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	rt, err := os.ReadFile(filepath.Join(s.Dir, "runtime.json"))
	if err != nil {
		t.Fatal(err)
	}
	mpid := field(string(rt), `"monitor_pid":`)
	if exe, _ := os.Readlink("/proc/" + mpid + "/exe"); exe != bin {
		t.Errorf("monitor %s runs %q, want %s", mpid, exe, bin)
	}
	// settle has run once the guest is ready: the console log it copies
	// shows the ready marker (WaitReady read it), and the monitor still
	// has the same PID (runtime.json stays true).
	if env, _ := os.ReadFile("/proc/" + mpid + "/environ"); !strings.Contains(string(env), "_TINYFARM_NS_SETTLED=") {
		t.Errorf("monitor %s did not settle (re-execute itself): environment %q", mpid, env)
	}

	ex := g.(driver.Execer)
	res, err := ex.Exec(context.Background(), []string{"sh", "-c", "hostname; id -u"}, driver.ExecOptions{})
	if err != nil || res.Code != 0 || string(res.Stdout) != "nshelper\n0\n" {
		t.Fatalf("exec: %v %+v (stdout %q)", err, res, res.Stdout)
	}

	// A background child keeps the command's stdout open after the
	// command exits: Exec returns anyway, with the command's output.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	res, err = ex.Exec(ctx2, []string{"sh", "-c", "sleep 61 & echo started"}, driver.ExecOptions{})
	if err != nil || res.Code != 0 || string(res.Stdout) != "started\n" {
		t.Fatalf("exec with a background child: %v %+v (stdout %q); want it to return with exit 0", err, res, res.Stdout)
	}

	// A deadline kills the command and the children it started: nothing
	// holds its output, Exec returns the deadline's error, and neither
	// sleep runs on in the guest.
	ctx3, cancel3 := context.WithTimeout(context.Background(), time.Second)
	defer cancel3()
	done := make(chan error, 1)
	go func() {
		_, err := ex.Exec(ctx3, []string{"sh", "-c", "sleep 62 & sleep 63"}, driver.ExecOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("exec past its deadline: %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("exec past its deadline still waits after 40s (its children hold the output)")
	}
	res, err = ex.Exec(context.Background(), []string{"ps"}, driver.ExecOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if out := string(res.Stdout); strings.Contains(out, "sleep 62") || strings.Contains(out, "sleep 63") {
		t.Errorf("the timed-out command's processes still run in the guest:\n%s", out)
	}

	if err := g.Stop(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st, err := g.Status(context.Background())
	if err != nil || st.State != driver.Stopped || st.Reason != "stopped by tinyfarm" {
		t.Errorf("status after stop: %+v, %v (the settled monitor records the exit)", st, err)
	}
}

// field is the number after key in a JSON text.
func field(js, key string) string {
	i := strings.Index(js, key)
	if i < 0 {
		return ""
	}
	v := js[i+len(key):]
	j := strings.IndexAny(v, ",}")
	return strings.TrimSpace(v[:j])
}
