package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farm"
	"github.com/tinyfarm/tinyfarm/stdlib/proxy"
)

// Reboots: `tinyfarm boot` brings the farm back (network, autostart
// guests, the proxy daemon), `tinyfarm shutdown` takes it down cleanly,
// and `tinyfarm service install` makes systemd run both.

func newBootCmds(ctx context.Context, stdout, stderr io.Writer) []*cobra.Command {
	var timeout time.Duration
	boot := &cobra.Command{
		Use:   "boot",
		Short: "Start the farm after a host reboot: network, autostart guests, proxy daemon",
		Long: `boot re-creates the farm bridge and its guards, starts the guests defined
with autostart = true (higher autostart_priority first; each group ready,
then its autostart_delay, before the next) and the proxy daemon on the
address it last listened on. What runs already is left alone: a second
boot changes nothing. The systemd unit of "tinyfarm service install" runs it.`,
		Example: "  tinyfarm boot\n  tinyfarm boot --timeout 2m",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runBoot(ctx, timeout, stdout, stderr)
		},
	}
	boot.Flags().DurationVar(&timeout, "timeout", 90*time.Second, "how long each started guest may take to be ready")

	var grace time.Duration
	shutdown := &cobra.Command{
		Use:   "shutdown",
		Short: "Stop every guest cleanly (killed after --grace) and the proxy daemon",
		Long: `shutdown stops every running guest at once, each with a clean shutdown
killed after --grace, then the proxy daemon. The daemon's address is kept,
so the next "tinyfarm boot" starts it again. The systemd unit's ExecStop.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fm := newFarm()
			defer fm.Close()
			rep, err := fm.Shutdown(ctx, grace)
			for _, n := range rep.Stopped {
				fmt.Fprintf(stdout, "stopped    guest %s\n", n)
			}
			if perr := proxy.StopDaemon(ctx, proxyDir()); perr != nil {
				err = errors.Join(err, perr)
			}
			if err != nil {
				fmt.Fprintf(stderr, "tinyfarm: shutdown: %v\n", err)
				return exitError{engine.ExitFailed}
			}
			return nil
		},
	}
	shutdown.Flags().DurationVar(&grace, "grace", 20*time.Second, "how long a guest's clean shutdown may take before it is killed")
	return []*cobra.Command{boot, shutdown, newServiceCmd(stdout, stderr), newNetworkCmd(stdout, stderr)}
}

func newNetworkCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "network",
		Short: "Show the farm network, or take it off the host (network remove)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			n := newFarm().Network()
			fmt.Fprintf(stdout, "bridge %s  subnet %s\n", n.Bridge, n.Subnet)
			return nil
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "remove",
		Short: "Remove the farm bridge, its guard chains and port filters (refused while guests run on it)",
		Long: `remove is colinux.network{remove = true}: the farm's bridge, its iptables and
ip6tables chains and its nftables port filters leave the host. The farm keeps
its bridge name and subnet (network.json); the next guest started re-creates
the bridge.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := newFarm().RemoveNetwork(farm.ChangeOptions{})
			if err != nil {
				fmt.Fprintf(stderr, "tinyfarm: network remove: %v\n", err)
				return exitError{engine.ExitFailed}
			}
			fmt.Fprintf(stdout, "%s %s %s\n", pick(res.Changed, "removed network", "not on this host: network"), res.Network.Bridge, res.Network.Subnet)
			return nil
		},
	})
	return cmd
}

func runBoot(ctx context.Context, timeout time.Duration, stdout, stderr io.Writer) error {
	fm := newFarm()
	defer fm.Close()
	rep, err := fm.Boot(ctx, farm.BootOptions{ReadyTimeout: timeout})
	if rep.Network != "" {
		fmt.Fprintf(stdout, "changed    network %s (bridge and guards restored)\n", rep.Network)
	}
	for _, n := range rep.Started {
		fmt.Fprintf(stdout, "changed    guest %s started\n", n)
	}
	for _, n := range rep.Running {
		fmt.Fprintf(stdout, "ok         guest %s running\n", n)
	}
	for _, n := range rep.Failed {
		fmt.Fprintf(stdout, "failed     guest %s\n", n)
	}
	changed := len(rep.Started)
	if rep.Network != "" {
		changed++
	}
	if c, ok, perr := proxy.LastDaemon(proxyDir()); perr != nil {
		err = errors.Join(err, perr)
	} else if ok {
		if pid, addr, running := proxy.RunningDaemon(proxyDir()); running {
			fmt.Fprintf(stdout, "ok         proxy daemon on %s (pid %d)\n", addr, pid)
		} else {
			c.Env = []string{"TINYFARM_HOME=" + absStateDir()}
			st, perr := proxy.EnsureDaemon(ctx, c)
			if perr != nil {
				err = errors.Join(err, perr)
				fmt.Fprintf(stdout, "failed     proxy daemon on %s\n", c.Listen)
			} else {
				changed++
				fmt.Fprintf(stdout, "changed    proxy daemon started on %s (pid %d)\n", st.Addr, st.PID)
			}
		}
	}
	fmt.Fprintf(stdout, "BOOT  changed=%d ok=%d failed=%d\n", changed, len(rep.Running), len(rep.Failed))
	if err != nil {
		fmt.Fprintf(stderr, "tinyfarm: boot: %v\n", err)
		return exitError{engine.ExitFailed}
	}
	return nil
}

func absStateDir() string {
	d, err := filepath.Abs(StateDir())
	if err != nil {
		return StateDir()
	}
	return d
}

// The systemd unit.

const unitName = "tinyfarm.service"

// unitFile renders the unit for the binary exe and the state dir home.
// Delegate=yes hands the unit's cgroup subtree to tinyfarm, so guests'
// cgroups (v2) nest inside it; ExecStop stops every guest within
// grace, and TimeoutStopSec leaves room for it before systemd kills what
// is left.
func unitFile(exe, home string, grace time.Duration) string {
	return fmt.Sprintf(`# Written by "tinyfarm service install"; "tinyfarm service uninstall" removes it.
[Unit]
Description=tinyfarm: the farm's autostart guests and proxy daemon
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes
Delegate=yes
Environment=TINYFARM_HOME=%s
ExecStart=%s boot
ExecStop=%s shutdown --grace %s
TimeoutStartSec=15min
TimeoutStopSec=%d

[Install]
WantedBy=multi-user.target
`, home, exe, exe, grace, int((grace + 30*time.Second).Seconds()))
}

// systemdRunning reports whether systemd is the init of the host under
// root (the test sd_booted(3) makes).
func systemdRunning(root string) bool {
	st, err := os.Stat(filepath.Join(root, "run/systemd/system"))
	return err == nil && st.IsDir()
}

func newServiceCmd(stdout, stderr io.Writer) *cobra.Command {
	var root string
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Install or remove the systemd unit that runs tinyfarm boot at startup",
	}
	install := &cobra.Command{
		Use:   "install",
		Short: "Write and enable " + unitName + " (without systemd: print the rc.local line)",
		Long: `install writes /etc/systemd/system/` + unitName + ` and enables it: at startup,
after the network is online, it runs "tinyfarm boot"; on stop, "tinyfarm
shutdown" stops every guest cleanly within --grace. The unit delegates
its cgroup to tinyfarm (Delegate=yes), so the guests' cgroups live in it.
Without systemd it prints the line to add to /etc/rc.local instead.`,
		Example: "  tinyfarm service install\n  tinyfarm service install --grace 30s",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err == nil {
				exe, err = filepath.EvalSymlinks(exe)
			}
			if err != nil {
				fmt.Fprintf(stderr, "tinyfarm: service install: own binary: %v\n", err)
				return exitError{engine.ExitFailed}
			}
			home := absStateDir()
			if !systemdRunning(root) {
				fmt.Fprintf(stdout, "no systemd here (no %s): add this line to /etc/rc.local (before exit 0):\n", filepath.Join(root, "run/systemd/system"))
				fmt.Fprintf(stdout, "TINYFARM_HOME=%s %s boot >>/var/log/tinyfarm-boot.log 2>&1\n", home, exe)
				return nil
			}
			changed, err := serviceInstall(root, unitFile(exe, home, grace))
			if err != nil {
				fmt.Fprintf(stderr, "tinyfarm: service install: %v\n", err)
				return exitError{engine.ExitFailed}
			}
			fmt.Fprintf(stdout, "%s %s (enabled: starts at boot)\n", pick(changed, "installed", "up to date:"), filepath.Join(root, "etc/systemd/system", unitName))
			return nil
		},
	}
	install.Flags().DurationVar(&grace, "grace", 20*time.Second, "how long each guest's clean shutdown may take when the unit stops")
	uninstall := &cobra.Command{
		Use:   "uninstall",
		Short: "Disable and remove " + unitName + " (running guests keep running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			changed, err := serviceUninstall(root)
			if err != nil {
				fmt.Fprintf(stderr, "tinyfarm: service uninstall: %v\n", err)
				return exitError{engine.ExitFailed}
			}
			fmt.Fprintf(stdout, "%s %s\n", pick(changed, "removed", "not installed:"), filepath.Join(root, "etc/systemd/system", unitName))
			return nil
		},
	}
	for _, c := range []*cobra.Command{install, uninstall} {
		c.Flags().StringVar(&root, "root", "/", "the root directory to act on (tests, images)")
	}
	cmd.AddCommand(install, uninstall)
	return cmd
}

func unitPaths(root string) (unit, wants string) {
	dir := filepath.Join(root, "etc/systemd/system")
	return filepath.Join(dir, unitName), filepath.Join(dir, "multi-user.target.wants", unitName)
}

// serviceInstall writes the unit and enables it the way `systemctl
// enable` does for WantedBy=multi-user.target (a link in the target's
// .wants directory), then has a running systemd reload its units.
func serviceInstall(root, content string) (changed bool, err error) {
	unit, wants := unitPaths(root)
	old, _ := os.ReadFile(unit)
	if string(old) != content {
		if err := os.MkdirAll(filepath.Dir(unit), 0o755); err != nil {
			return false, err
		}
		// Atomic: systemd never reads half a unit.
		tmp := unit + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			return false, err
		}
		if err := os.Rename(tmp, unit); err != nil {
			os.Remove(tmp)
			return false, err
		}
		changed = true
	}
	target := filepath.Join("..", unitName)
	if cur, err := os.Readlink(wants); err != nil || cur != target {
		if err := os.MkdirAll(filepath.Dir(wants), 0o755); err != nil {
			return changed, err
		}
		os.Remove(wants)
		if err := os.Symlink(target, wants); err != nil {
			return changed, fmt.Errorf("enable: %w", err)
		}
		changed = true
	}
	if changed {
		return true, daemonReload(root)
	}
	return false, nil
}

// serviceUninstall disables and removes the unit. It does not stop it:
// the guests keep running until the host shuts down.
func serviceUninstall(root string) (changed bool, err error) {
	unit, wants := unitPaths(root)
	for _, p := range []string{wants, unit} {
		if err := os.Remove(p); err == nil {
			changed = true
		} else if !errors.Is(err, fs.ErrNotExist) {
			return changed, err
		}
	}
	if changed {
		return true, daemonReload(root)
	}
	return false, nil
}

// daemonReload asks a running systemd to re-read its units; only for the
// host's own root.
func daemonReload(root string) error {
	if r, _ := filepath.Abs(root); r != "/" || !systemdRunning(root) {
		return nil
	}
	if out, err := exec.Command("systemctl", "daemon-reload").CombinedOutput(); err != nil {
		return fmt.Errorf("systemctl daemon-reload: %s: %w", strings.TrimSpace(string(out)), err)
	}
	return nil
}
