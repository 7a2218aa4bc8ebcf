//go:build linux

package guestbench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
	"github.com/tinyfarm/tinyfarm/stdlib/ssh"
)

// TestWarmCommand (bench/ssh.sh) times SSH to what a guest runs: the
// dropbear of an ns guest of the mini release in the default
// configuration (user namespace, hardened, on the farm bridge). One
// command ("true") over tinyfarm's cached connection, against the OpenSSH
// client through a ControlMaster connection and a new OpenSSH process
// and connection per command, a new Go connection per command, and
// g:exec (the ns driver's exec). All in alternating batches, medians of
// 11; then a bulk copy through one command's stdin and an SFTP write.
func TestWarmCommand(t *testing.T) {
	gate(t)
	state := t.TempDir()
	base := guesttest.BuildDisk(t, guesttest.Options{SSH: true, StateDir: state, Size: "64M"})
	fm := newFarm(t, state, &ns.Runner{})
	g, _ := startReady(t, fm, "warm", guesttest.CopyDisk(t, base.Path), base.HostKey)
	ctx := context.Background()
	t.Cleanup(func() { g.Destroy(context.Background(), false) })
	c, err := g.SSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	type subject struct {
		n   int // commands per batch
		run func() error
		ds  []time.Duration
	}
	warm := &subject{n: 100, run: func() error { _, err := c.Run(ctx, "true", ssh.RunOptions{}); return err }}
	dial := &subject{n: 5, run: func() error {
		c, err := g.SSH(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Run(ctx, "true", ssh.RunOptions{})
		return err
	}}
	gexec := &subject{n: 5, run: func() error { _, err := g.Exec(ctx, []string{"true"}, driver.ExecOptions{}); return err }}
	subjects := []*subject{warm, dial, gexec}
	var master, perCommand *subject
	if sshBin, err := exec.LookPath("ssh"); err == nil {
		args := opensshArgs(t, g, state, base.HostKey)
		sock := filepath.Join(t.TempDir(), "cm")
		startMaster(t, sshBin, append([]string{"-M", "-N", "-S", sock, "-o", "ControlPersist=no"}, args...), sock)
		cmd := func(extra ...string) func() error {
			return func() error {
				if out, err := exec.Command(sshBin, append(append(extra, args...), "true")...).CombinedOutput(); err != nil {
					return fmt.Errorf("ssh: %w: %s", err, out)
				}
				return nil
			}
		}
		master = &subject{n: 5, run: cmd("-S", sock, "-o", "ControlMaster=no")}
		perCommand = &subject{n: 2, run: cmd()}
		subjects = append(subjects, master, perCommand)
	} else {
		t.Log("OpenSSH client not installed: no OpenSSH anchors")
	}
	for _, s := range subjects { // warm-up
		for i := 0; i < max(2, s.n/5); i++ {
			if err := s.run(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for b := 0; b < 11; b++ {
		for _, s := range subjects {
			t0 := time.Now()
			for i := 0; i < s.n; i++ {
				if err := s.run(); err != nil {
					t.Fatal(err)
				}
			}
			s.ds = append(s.ds, time.Since(t0)/time.Duration(s.n))
		}
	}
	msf := func(s *subject) float64 { return float64(median(s.ds).Microseconds()) / 1000 }
	m := func(s *subject) string { return fmt.Sprintf("%.2f", msf(s)) }
	times := func(a, b *subject) string { return fmt.Sprintf("%.1fx faster", msf(b)/msf(a)) }
	if master != nil {
		row("ssh: command on a warm connection to an ns guest (ms, goal <=2)", m(warm), "OpenSSH ControlMaster per command, same guest", m(master), times(warm, master))
		row("ssh: command on a warm connection to an ns guest (ms)", m(warm), "OpenSSH ssh per command, same guest", m(perCommand), times(warm, perCommand))
	} else {
		row("ssh: command on a warm connection to an ns guest (ms, goal <=2)", m(warm), "-", "-", "-")
	}
	row("ssh: new connection + command to an ns guest (ms)", m(dial), "-", "-", "-")
	row("ns guest: command through g:exec (ms)", m(gexec), "warm SSH connection", m(warm), fmt.Sprintf("%.2fx", msf(gexec)/msf(warm)))

	// Bulk copy through one command's stdin (what a tar-stream push does).
	const size = 32 << 20
	var mbs []float64
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		res, err := c.RunStream(ctx, "wc -c", io.LimitReader(zeros{}, size), ssh.RunOptions{})
		if err != nil || strings.TrimSpace(string(res.Stdout)) != strconv.Itoa(size) {
			t.Fatalf("stream: %q, %v", res.Stdout, err)
		}
		mbs = append(mbs, size/1e6/time.Since(t0).Seconds())
	}
	row("ssh: stream copy into an ns guest's command (MB/s)", fmt.Sprintf("%.1f", medianFloat(mbs)), "-", "-", "-")

	// One atomic 1 MiB SFTP write into the guest's /tmp.
	data := bytes.Repeat([]byte{'x'}, 1<<20)
	mbs = nil
	for i := 0; i < 11; i++ {
		t0 := time.Now()
		if err := c.WriteFile(ctx, "/tmp/bench.bin", data, 0o644); err != nil {
			t.Fatal(err)
		}
		mbs = append(mbs, float64(len(data))/1e6/time.Since(t0).Seconds())
	}
	row("ssh: sftp atomic 1 MiB write into an ns guest (MB/s)", fmt.Sprintf("%.1f", medianFloat(mbs)), "-", "-", "-")
}

// opensshArgs is the OpenSSH client command line (without the command)
// that logs into g with the farm key, pinning its host key.
func opensshArgs(t *testing.T, g *farm.Guest, state, hostKey string) []string {
	fk, err := ssh.EnsureFarmKey(state)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := g.SSHAddr()
	if err != nil {
		t.Fatal(err)
	}
	name := host // known_hosts names port 22 plainly, others as [host]:port
	if port != 22 {
		name = fmt.Sprintf("[%s]:%d", host, port)
	}
	known := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(known, []byte(name+" "+strings.TrimSpace(hostKey)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-F", "/dev/null", "-i", fk.Path, "-o", "UserKnownHostsFile=" + known,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "LogLevel=ERROR", "-p", strconv.Itoa(port), "root@" + host}
}

// startMaster starts an OpenSSH ControlMaster in the foreground (so this
// process owns it and ends it by PID) and waits for its socket.
func startMaster(t *testing.T, sshBin string, args []string, sock string) {
	m := exec.Command(sshBin, args...)
	var stderr bytes.Buffer
	m.Stderr = &stderr
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Process.Kill(); m.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		if i == 100 {
			t.Fatalf("ControlMaster socket %s did not appear: %s", sock, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func medianFloat(v []float64) float64 {
	ds := make([]time.Duration, len(v))
	for i, f := range v {
		ds[i] = time.Duration(f * 1e6)
	}
	return float64(median(ds)) / 1e6
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
