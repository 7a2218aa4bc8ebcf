//go:build linux

package ns_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

// TestUserNSGuest: in user-namespace mode the guest's root is an
// unprivileged host uid, the guest still boots Tiny Core, serves, and sees
// its disk's files as its own.
func TestUserNSGuest(t *testing.T) {
	needRoot(t)
	disk := scatterDisk(t, "mkdir -p /opt/www; echo USERNS-PAGE > /opt/www/index.html; httpd -p 80 -h /opt/www")
	s := spec(t, "nsuserns", disk, 23)
	r := &ns.Runner{UserNS: true}
	g, err := r.Start(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Stop(context.Background(), 0) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := g.Status(context.Background())
	if !strings.HasPrefix(st.Isolation, "userns") {
		t.Errorf("isolation %q", st.Isolation)
	}
	// Seen from the host, the guest's init runs as the guest's base uid.
	b, err := os.ReadFile("/proc/" + strconv.Itoa(st.PID) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	// The uid the status reports, unprivileged (above the ranges of
	// /etc/subuid), is the one the guest's init runs as on the host.
	var base int
	if _, err := fmt.Sscanf(st.Isolation[strings.LastIndex(st.Isolation, "host uid "):], "host uid %d", &base); err != nil || base < 64*65536 {
		t.Fatalf("isolation %q: want the guest root's unprivileged host uid", st.Isolation)
	}
	want := strconv.Itoa(base)
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "Uid:") && !strings.Contains(l, want) {
			t.Errorf("guest init on the host: %s, want uid %s", l, want)
		}
	}
	res, err := g.(driver.Execer).Exec(context.Background(), []string{"sh", "-c", "id -u; stat -c %u /etc/passwd; touch /root/x && stat -c %u /root/x; cat /proc/self/uid_map"}, driver.ExecOptions{})
	if err != nil || res.Code != 0 {
		t.Fatalf("exec: %v %+v %s", err, res, res.Stderr)
	}
	f := strings.Fields(string(res.Stdout))
	if len(f) < 4 || f[0] != "0" || f[1] != "0" || f[2] != "0" || f[4] != want {
		t.Errorf("inside: %q (want root 0, files owned by 0, uid_map to %s)", res.Stdout, want)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://10.77.250.23/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}
