//go:build unix

package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/internal/crashtest"
)

const churnPlaybook = `
local proxy = require("proxy")
for i = 1, tonumber(vars.n) do
  proxy.vhost{ host = "c" .. i .. ".test", to = "127.0.0.1", port = 1000 + i }
end
`

// TestCrashRouteJournal kills `tinyfarm run` at random moments of a
// playbook that adds routes one by one to a table large enough to go to
// the journal (and to be compacted during the run), while a server follows
// the registry. Every route the run reported is in the table read back,
// the routes there are the first ones added (no torn record applied), the
// server never serves a table missing an earlier route than one it has,
// and the rerun converges, with the server serving the whole table.
func TestCrashRouteJournal(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the real binary")
	}
	const seeds, n = 1000, 400
	work, state := t.TempDir(), t.TempDir()
	dir := filepath.Join(state, "proxy")
	path := filepath.Join(dir, RoutesFile)
	pb := filepath.Join(work, "churn.lua")
	if err := os.WriteFile(pb, []byte(churnPlaybook), 0o644); err != nil {
		t.Fatal(err)
	}
	run := crashtest.Cmd{Args: []string{"run", pb, "-e", "n=" + strconv.Itoa(n)}, Env: []string{"TINYFARM_HOME=" + state}, Dir: work}
	base := baseFile{Epoch: 1}
	for i := 0; i < seeds; i++ {
		base.VHosts = append(base.VHosts, VHost{Host: fmt.Sprintf("seed%d.test", i), To: "127.0.0.1:9", Addr: "127.0.0.1", Port: 9})
	}
	base.sort()
	seed, _ := json.Marshal(base)
	if int64(len(seed)) < journalMinBase {
		t.Fatalf("seed table %d bytes: too small to journal", len(seed))
	}

	// The server follows the registry through every trial; a watcher
	// checks each snapshot it serves.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, seed, 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(Options{RoutesFile: path, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); srv.Serve(ctx, ln) }()
	var torn sync.Map // a description of each torn snapshot seen
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if desc := tornSnapshot(srv.routes.Load(), seeds, n); desc != "" {
				torn.Store(desc, true)
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	ackRE := regexp.MustCompile(`(?m)^changed +proxy\.vhost c(\d+)\.test$`)
	crashtest.RunOp(t, crashtest.Op{
		Name:   "proxy.vhost into a journaled table",
		Trials: 6, // ~1 s each
		Prepare: func(t *testing.T, trial int) crashtest.Cmd {
			os.Remove(journalPath(path))
			if err := writeFileAtomic(path, seed, 0o644); err != nil {
				t.Fatal(err)
			}
			return run
		},
		Check: func(t *testing.T, r crashtest.Result) {
			tab, err := LoadTable(path)
			if err != nil {
				t.Fatalf("%v: read back: %v", r, err)
			}
			have := 0
			for have < n && hasRoute(tab, have+1) {
				have++
			}
			if got := len(tab.VHosts) - seeds; got != have {
				t.Errorf("%v: %d routes added, but only c1..c%d in a row: a change was lost or applied out of order", r, got, have)
			}
			for _, m := range ackRE.FindAllStringSubmatch(r.Out, -1) {
				if i, _ := strconv.Atoi(m[1]); i > have {
					t.Errorf("%v: c%d.test was reported changed but is not in the table (c1..c%d are)", r, i, have)
				}
			}
			if out, err := crashtest.Run(t, run); err != nil {
				t.Fatalf("%v: rerun: %v\n%s", r, err, out)
			}
			tab, err = LoadTable(path)
			if err != nil || len(tab.VHosts) != seeds+n {
				t.Fatalf("%v: after the rerun: %d routes (%v), want %d", r, len(tab.VHosts), err, seeds+n)
			}
			deadline := time.Now().Add(10 * time.Second)
			for tornSnapshot(srv.routes.Load(), seeds, n) != "" || srv.routes.Load().lookup(fmt.Sprintf("c%d.test", n)) == nil {
				if time.Now().After(deadline) {
					t.Fatalf("%v: the server does not serve the whole table 10 s after the rerun", r)
				}
				time.Sleep(10 * time.Millisecond)
			}
			torn.Range(func(k, _ any) bool {
				t.Errorf("%v: the server served a torn table: %s", r, k)
				return true
			})
		},
	})
}

func hasRoute(t Table, i int) bool {
	k, ok := t.vhostIndex(fmt.Sprintf("c%d.test", i))
	return ok && t.VHosts[k].Port == 1000+i
}

// tornSnapshot describes what is wrong with sn ("" if nothing): a seed
// missing, or a route c(i) served without c(i-1), or with a wrong backend.
func tornSnapshot(sn *snapshot, seeds, n int) string {
	if len(sn.exact) == 0 {
		return "" // before the first load
	}
	for _, i := range []int{0, seeds / 2, seeds - 1} {
		if sn.lookup(fmt.Sprintf("seed%d.test", i)) == nil {
			return fmt.Sprintf("seed%d.test missing", i)
		}
	}
	gap := 0
	for i := 1; i <= n; i++ {
		b := sn.lookup(fmt.Sprintf("c%d.test", i))
		switch {
		case b == nil:
			if gap == 0 {
				gap = i
			}
		case gap != 0:
			return fmt.Sprintf("c%d.test served without c%d.test", i, gap)
		case b.addr != "127.0.0.1:"+strconv.Itoa(1000+i):
			return fmt.Sprintf("c%d.test to %s", i, b.addr)
		}
	}
	return ""
}
