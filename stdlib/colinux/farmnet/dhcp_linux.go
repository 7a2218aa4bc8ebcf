package farmnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/guestexe"
)

// roleEnv selects the role of a re-executed tinyfarm binary.
const roleEnv = "_TINYFARM_FARMNET_ROLE"

// Main runs the farm DHCP server when this process was started as one
// (by AttachTap) and then exits; otherwise it returns at once. Call it
// first thing in main() and in TestMain of test binaries that start qemu
// guests on the bridge.
func Main() {
	role := os.Getenv(roleEnv)
	if role == "" {
		return
	}
	os.Unsetenv(roleEnv)
	if role == "dhcp" && len(os.Args) == 4 {
		os.Exit(dhcpMain(os.Args[1], os.Args[2], os.Args[3]))
	}
	fmt.Fprintf(os.Stderr, "tinyfarm: unknown farmnet role %q %q\n", role, os.Args[1:])
	os.Exit(2)
}

func lockPath(leases, bridge string) string {
	return filepath.Join(leases, ".dhcp-"+bridge+".lock")
}

// AttachTap puts a qemu guest on the farm bridge: the bridge (created with
// the gateway address if missing), the guest's tap on it, and the farm's
// DHCP server for the bridge (started if it does not run). It returns the
// tap's name. Root only.
func AttachTap(ctx context.Context, s TapSpec) (string, error) {
	name := TapName(s.Guest)
	fail := func(err error) (string, error) { return "", fmt.Errorf("tap %s for guest %s: %w", name, s.Guest, err) }
	if err := s.validate(); err != nil {
		return fail(err)
	}
	if os.Geteuid() != 0 {
		return fail(driver.Unsupported("qemu", "bridge networking", "a tap on the farm bridge needs root; use net = \"user\""))
	}
	gw, kept, err := s.bridgeCIDR()
	if err != nil {
		return fail(err)
	}
	mac, err := net.ParseMAC(s.MAC)
	if err != nil {
		return fail(fmt.Errorf("mac %q: %w", s.MAC, err))
	}
	ip, _, _ := net.ParseCIDR(s.IP)
	br, err := EnsureFarmBridge(s.Bridge, gw, s.Leases)
	if err != nil {
		return fail(err)
	}
	if err := createTap(Port{Name: name, MAC: mac, IP: ip}, br); err != nil {
		return fail(err)
	}
	if kept != nil {
		if err := keepAddress(br, ip, kept); err != nil {
			DeletePort(name)
			pruneKept(s.Bridge)
			return fail(err)
		}
	}
	if err := ensureDHCP(ctx, s.Exe, s.Leases, s.Bridge, gw); err != nil {
		DeletePort(name)
		pruneKept(s.Bridge)
		return fail(err)
	}
	return name, nil
}

// DetachTap removes a guest's tap; when it was the last one on the
// bridge, it waits (up to 5s) for the DHCP server to notice and exit.
func DetachTap(ctx context.Context, guest, bridge, leases string) error {
	name := TapName(guest)
	if err := DeletePort(name); err != nil {
		return fmt.Errorf("guest %s: %w", guest, err)
	}
	if err := pruneKept(bridge); err != nil {
		return fmt.Errorf("guest %s: %w", guest, err)
	}
	if n, ok := tapsOn(bridge); ok && n > 0 {
		return nil
	}
	deadline := time.Now().Add(5 * time.Second)
	for DHCPRunning(leases, bridge) {
		if time.Now().After(deadline) {
			return fmt.Errorf("guest %s: dhcp server for %s still runs with no tap left", guest, bridge)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("guest %s: detach tap: %w", guest, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// DHCPRunning reports whether the farm DHCP server of leases and bridge
// runs (it holds the lock).
func DHCPRunning(leases, bridge string) bool {
	f, err := os.Open(lockPath(leases, bridge))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	return false
}

// DHCPPID is the PID of the running DHCP server, or 0.
func DHCPPID(leases, bridge string) int {
	if !DHCPRunning(leases, bridge) {
		return 0
	}
	b, _ := os.ReadFile(lockPath(leases, bridge))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// ensureDHCP starts the DHCP server unless one runs, and waits until it
// listens (or found another one running).
func ensureDHCP(ctx context.Context, exe, leases, bridge, gw string) error {
	if DHCPRunning(leases, bridge) {
		return nil
	}
	if exe == "" {
		var err error
		if exe, err = guestexe.Path(); err != nil {
			return fmt.Errorf("dhcp server: %w", err)
		}
	}
	if err := os.MkdirAll(leases, 0o700); err != nil {
		return fmt.Errorf("dhcp server: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(leases, ".dhcp-"+bridge+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dhcp server: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("dhcp server: %w", err)
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("dhcp server: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command(exe, leases, bridge, gw)
	cmd.Env = append(os.Environ(), roleEnv+"=dhcp")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, pw, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return fmt.Errorf("dhcp server: start %s: %w", exe, err)
	}
	go cmd.Wait() // reap it if it exits while we run; it outlives us otherwise
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(pr).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		switch {
		case s == "ready" || s == "running":
			return nil
		case s == "":
			return fmt.Errorf("dhcp server: exited before it listened (see %s)", logf.Name())
		default:
			return fmt.Errorf("dhcp server: %s", s)
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		return fmt.Errorf("dhcp server: no answer within 10s (see %s)", logf.Name())
	case <-ctx.Done():
		cmd.Process.Kill()
		return fmt.Errorf("dhcp server: %w", ctx.Err())
	}
}

// dhcpMain is the DHCP server process. It reports "ready", "running"
// (another server holds the lock) or an error as one line on stdout.
func dhcpMain(leases, bridge, gw string) int {
	logger := log.New(os.Stderr, fmt.Sprintf("dhcp %s [%d] ", bridge, os.Getpid()), log.LstdFlags)
	say := func(s string) {
		fmt.Fprintln(os.Stdout, s)
		os.Stdout.Close()
	}
	ip, ipnet, err := net.ParseCIDR(gw)
	if err != nil || ip.To4() == nil {
		say(fmt.Sprintf("error: gateway %q: not an IPv4 address with prefix", gw))
		return 1
	}
	lf, err := os.OpenFile(lockPath(leases, bridge), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		say("error: " + err.Error())
		return 1
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		say("running")
		return 0
	}
	lf.Truncate(0)
	lf.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	conn, err := server4.NewIPv4UDPConn(bridge, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		say(fmt.Sprintf("error: listen on %s:%d: %v", bridge, dhcpv4.ServerPort, err))
		return 1
	}
	defer conn.Close()
	say("ready")
	logger.Printf("serving static leases from %s as %s", leases, gw)
	r := Responder{Server: &net.IPNet{IP: ip.To4(), Mask: ipnet.Mask}}
	buf := make([]byte, 4096)
	idle := 0
	linksChanged := watchLinks()
	for {
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				logger.Printf("read: %v", err)
				return 1
			}
			if idle == 0 && !linksChanged() {
				continue // no link came or went since the last count
			}
			if taps, ok := tapsOn(bridge); !ok || taps == 0 {
				if idle++; idle >= 2 || !ok {
					logger.Printf("no guest tap on %s: exiting", bridge)
					return 0
				}
			} else {
				idle = 0
			}
			continue
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		all, err := ReadLeases(leases, ipnet)
		if err != nil {
			logger.Printf("%v", err)
			continue
		}
		resp, err := r.Reply(req, all)
		if err != nil {
			logger.Printf("reply to %s: %v", req.ClientHWAddr, err)
			continue
		}
		if resp == nil {
			logger.Printf("%s from %s: no lease, no answer", req.MessageType(), req.ClientHWAddr)
			continue
		}
		to := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		if up, ok := peer.(*net.UDPAddr); ok && up.IP != nil && !up.IP.IsUnspecified() && !req.ClientIPAddr.IsUnspecified() {
			to = up // a renewing client with an address: unicast
		}
		if _, err := conn.WriteTo(resp.ToBytes(), to); err != nil {
			logger.Printf("send %s to %s: %v", resp.MessageType(), req.ClientHWAddr, err)
			continue
		}
		logger.Printf("%s %s -> %s %s", req.MessageType(), req.ClientHWAddr, resp.MessageType(), resp.YourIPAddr)
	}
}

// watchLinks reports whether any network link was added, removed or
// changed since its last call. The server recounts its bridge's taps only
// then: listing every link each second costs O(links), and a dense host
// has hundreds of guest veths. Without a netlink subscription (or once it
// ends) it always says yes, which is the plain polling.
func watchLinks() func() bool {
	var changed, lost atomic.Bool
	changed.Store(true)
	ch := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribe(ch, nil); err != nil {
		lost.Store(true)
	} else {
		go func() {
			for range ch {
				changed.Store(true)
			}
			lost.Store(true)
		}()
	}
	return func() bool { return changed.Swap(false) || lost.Load() }
}
