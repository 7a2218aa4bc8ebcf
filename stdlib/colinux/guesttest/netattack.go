//go:build linux

package guesttest

import (
	"bytes"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// NetAttack builds the static attack helper (./netattack) for copying
// into guests and returns its path.
func NetAttack(tb testing.TB) string {
	tb.Helper()
	out := filepath.Join(tb.TempDir(), "netattack")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/tinyfarm/tinyfarm/stdlib/colinux/guesttest/netattack")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("build netattack: %v\n%s", err, b)
	}
	return out
}

// Sniffer records the frames that reach a host interface (what the host
// receives from the farm bridge, after the bridge's filters) that carry
// an attack marker.
type Sniffer struct {
	mu     sync.Mutex
	frames [][]byte
}

// Sniff captures on ifname (an AF_PACKET socket of the test process)
// until the test ends. Root only.
func Sniff(tb testing.TB, ifname string) *Sniffer {
	tb.Helper()
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		tb.Fatal(err)
	}
	proto := uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(proto))
	if err != nil {
		tb.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: proto}); err != nil {
		unix.Close(fd)
		tb.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	s := &Sniffer{}
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 65536)
		for {
			select {
			case <-done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n <= 0 {
				continue
			}
			if bytes.Contains(buf[:n], []byte("TFATK")) {
				s.mu.Lock()
				s.frames = append(s.frames, append([]byte(nil), buf[:n]...))
				s.mu.Unlock()
			}
		}
	}()
	tb.Cleanup(func() { close(done); <-stopped; unix.Close(fd) })
	return s
}

// Seen reports whether a frame with marker reached the interface (it
// waits a moment for frames in flight).
func (s *Sniffer) Seen(marker string) bool {
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frames {
		if bytes.Contains(f, []byte(marker)) {
			return true
		}
	}
	return false
}

// NeighMAC is the host's neighbour entry (its MAC) for ip on dev, or "".
func NeighMAC(ip, dev string) string {
	out, _ := exec.Command("ip", "neigh", "show", ip, "dev", dev).Output()
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "lladdr" {
			return f[i+1]
		}
	}
	return ""
}

// FDBPort is the bridge port the bridge sends frames for mac to, or "".
func FDBPort(bridge, mac string) string {
	out, _ := exec.Command("bridge", "fdb", "show", "br", bridge).Output()
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && strings.EqualFold(f[0], mac) && f[1] == "dev" {
			return f[2]
		}
	}
	return ""
}

// HostIPv6 is what the host has of IPv6 on dev: its addresses and routes.
func HostIPv6(dev string) string {
	a, _ := exec.Command("ip", "-6", "-o", "addr", "show", "dev", dev).CombinedOutput()
	r, _ := exec.Command("ip", "-6", "route", "show", "dev", dev).CombinedOutput()
	return strings.TrimSpace(string(a) + string(r))
}

// LinkLocal is the EUI-64 IPv6 link-local address of mac (the one Linux
// gives an interface by default).
func LinkLocal(mac net.HardwareAddr) net.IP {
	return net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
}
