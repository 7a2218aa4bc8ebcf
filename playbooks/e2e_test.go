package playbooks_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/stdlib/colinux/driver"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/farmnet"
	"github.com/tinyfarm/tinyfarm/stdlib/colinux/ns"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// tinyfarmBin builds the real command once, as a user would run it.
func tinyfarmBin(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tinyfarm-e2e-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "tinyfarm")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/tinyfarm").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// e2e skips unless real guests can run (not -short, root, the mini
// release built) and returns the real binary, the mini mirror, a work dir
// and a state dir, and the environment that points tinyfarm at the state.
func e2e(t *testing.T) (bin, mirror, work, state string, env []string) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots guests")
	}
	if os.Geteuid() != 0 {
		t.Skip("namespace guests need root")
	}
	if mirror = miniMirror(t); mirror == "" {
		t.Skip("mini Tiny Core release not built (make minicore)")
	}
	bin = tinyfarmBin(t)
	work, state = t.TempDir(), t.TempDir()
	return bin, mirror, work, state, append(os.Environ(), "TINYFARM_HOME="+state)
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestWebfarmEndToEnd is the quick start as a user runs it: webfarm.lua
// builds and boots 3 guests, installs nginx into each over SSH and
// registers a vhost per guest; `tinyfarm proxy serve` routes by Host; a
// second run changes nothing, check mode plans nothing, a guest restarted
// by hand comes back with its site, and teardown leaves nothing behind.
func TestWebfarmEndToEnd(t *testing.T) {
	bin, mirror, work, state, env := e2e(t)
	pb, _ := filepath.Abs("webfarm.lua")
	port := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	args := []string{"run", pb, "-e", "guests=3", "-e", "mem=96M", "-e", "listen=" + listen, "-e", "mirror=" + mirror}
	tf := func(args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = work, env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		destroy := exec.Command(bin, "repl")
		destroy.Dir, destroy.Env = work, env
		destroy.Stdin = strings.NewReader(`for _, g in ipairs(colinux.list()) do colinux.get(g.name):destroy() end; proxy.daemon{stop = true}`)
		links := farmLinks(state)
		if out, err := destroy.CombinedOutput(); err != nil {
			t.Errorf("teardown: %v\n%s", err, out)
		}
		assertNothingLeft(t, state, links)
	})

	t0 := time.Now()
	out, err := tf(args...)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, out)
	}
	t.Logf("first run (3 guests from scratch) took %v", time.Since(t0))
	if !strings.Contains(out, "failed=0") {
		t.Fatalf("first run:\n%s", out)
	}
	// The sites changed, so each guest's reload handler ran once, at the end.
	if strings.Count(out, "changed    handler reload nginx on web") != 3 || !strings.Contains(out, " handlers=3 ") {
		t.Errorf("first run: want 3 handler runs:\n%s", out)
	}

	// The playbook started the embedded proxy detached: one port, routing
	// by host name, still serving after the run.
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	for i := 1; i <= 3; i++ {
		host := fmt.Sprintf("web%d.farm.test", i)
		if body := getHost(t, base, host); !strings.Contains(body, "<h1>"+host+"</h1>") {
			t.Errorf("%s through the proxy: %q", host, body)
		}
	}
	if code := statusHost(t, base, "nobody.farm.test"); code != http.StatusNotFound && code != http.StatusMisdirectedRequest {
		t.Errorf("unknown host: status %d, want 404/421", code)
	}

	// Second run: all ok, nothing changed. Check mode: nothing to change.
	out, err = tf(args...)
	if err != nil || !strings.Contains(out, " changed=0 ") || !strings.Contains(out, "failed=0") {
		t.Errorf("second run not idempotent: %v\n%s", err, out)
	}
	if strings.Contains(out, "handler") {
		t.Errorf("second run ran a handler though nothing changed:\n%s", out)
	}
	out, err = tf(append([]string{"check"}, args[1:]...)...)
	if err != nil || !strings.Contains(out, " changed=0 may_change=0 ") {
		t.Errorf("check after a run plans changes: %v\n%s", err, out)
	}

	// A guest restarted by hand comes back with its site (bootlocal.sh).
	restart := exec.Command(bin, "repl")
	restart.Dir, restart.Env = work, env
	restart.Stdin = strings.NewReader(`local g = colinux.get("web2"); g:stop(); g:start(); g:wait_ready{timeout = 60}`)
	if out, err := restart.CombinedOutput(); err != nil {
		t.Fatalf("restart web2: %v\n%s", err, out)
	}
	if body := getHost(t, base, "web2.farm.test"); !strings.Contains(body, "<h1>web2.farm.test</h1>") {
		t.Errorf("web2 after restart: %q", body)
	}
	if out, _ := tf("guests"); strings.Count(out, "running") != 3 {
		t.Errorf("tinyfarm guests:\n%s", out)
	}

	// A changed page (the template's motto), on web3 only: its page is
	// re-rendered and its nginx reloaded; web1 and web2 are not touched.
	out, err = tf(append(args, "-e", "motto=grown on a tinyfarm", "--limit", "web3")...)
	if err != nil || !strings.Contains(out, "changed    handler reload nginx on web3") || !strings.Contains(out, " handlers=1 ") ||
		!strings.Contains(out, "skipped    parallel item web1") {
		t.Errorf("page change on web3: %v\n%s", err, out)
	}
	if body := getHost(t, base, "web3.farm.test"); !strings.Contains(body, "<p>grown on a tinyfarm</p>") {
		t.Errorf("web3 after the page change: %q", body)
	}
	if body := getHost(t, base, "web1.farm.test"); !strings.Contains(body, "<p>a tinyfarm guest</p>") {
		t.Errorf("web1 outside --limit changed: %q", body)
	}

	adhocCommands(t, bin, work, env)
}

// adhocCommands drives the webfarm's real guests with tinyfarm exec, ssh,
// logs, stop, start and restart, as a user would after make demo.
func adhocCommands(t *testing.T, bin, work string, env []string) {
	tfIn := func(stdin string, args ...string) (string, string, int) {
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = work, env
		cmd.Stdin = strings.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return out.String(), errb.String(), code
	}
	if out, errs, code := tfIn("", "exec", "web1", "--", "cat", "/etc/hostname"); code != 0 || out != "web1\n" {
		t.Errorf("exec web1 cat /etc/hostname: code %d out %q err %q", code, out, errs)
	}
	if _, _, code := tfIn("", "exec", "web1", "--", "exit 7"); code != 7 {
		t.Errorf("exec exit code: %d, want 7", code)
	}
	if out, errs, code := tfIn("fed through stdin\n", "exec", "web2", "--", "tr a-z A-Z"); code != 0 || out != "FED THROUGH STDIN\n" {
		t.Errorf("exec with stdin: code %d out %q err %q", code, out, errs)
	}
	out, errs, code := tfIn("", "exec", "web*", "--limit", "!web2", "--", "hostname; echo line2")
	// The guests run at once: their lines may interleave, each guest's
	// in order under its prefix.
	byGuest := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		g, text, _ := strings.Cut(l, " | ")
		byGuest[g] = append(byGuest[g], text)
	}
	if code != 0 || len(byGuest) != 2 || strings.Join(byGuest["web1"], ",") != "web1,line2" || strings.Join(byGuest["web3"], ",") != "web3,line2" {
		t.Errorf("exec on a pattern: code %d out %q err %q", code, out, errs)
	}
	if out, errs, code := tfIn("hostname\nexit 3\n", "ssh", "web3"); code != 3 || out != "web3\n" {
		t.Errorf("ssh with commands on stdin: code %d out %q err %q", code, out, errs)
	}
	if out, _, code := tfIn("", "logs", "web1", "-n", "3"); code != 0 || len(strings.Split(strings.TrimSuffix(out, "\n"), "\n")) != 3 {
		t.Errorf("logs -n 3: code %d out %q", code, out)
	}
	if out, errs, code := tfIn("", "stop", "web2"); code != 0 || out != "web2: stopped\n" {
		t.Errorf("stop: code %d out %q err %q", code, out, errs)
	}
	if out, errs, code := tfIn("", "start", "web1,web2"); code != 0 || out != "web1: already running\nweb2: started\n" {
		t.Errorf("start: code %d out %q err %q", code, out, errs)
	}
	if out, errs, code := tfIn("", "restart", "web3"); code != 0 || out != "web3: restarted\n" {
		t.Errorf("restart: code %d out %q err %q", code, out, errs)
	}
	if out, _, _ := tfIn("", "guests"); strings.Count(out, "running") != 3 {
		t.Errorf("after start/restart:\n%s", out)
	}

	// logs -f follows the console: a line the guest writes to it shows up.
	follow := exec.Command(bin, "logs", "web1", "-n", "1", "-f")
	follow.Dir, follow.Env = work, env
	var followed syncBuffer
	follow.Stdout = &followed
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
	time.Sleep(300 * time.Millisecond)
	tfIn("", "exec", "web1", "--", "echo followed-marker > /dev/console")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(followed.String(), "followed-marker"); {
		if time.Now().After(deadline) {
			t.Errorf("logs -f did not show the new console line:\n%s", followed.String())
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// ssh on a terminal: an interactive shell with a PTY (tmux is the terminal).
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Log("tmux not installed: interactive ssh not tested")
		return
	}
	sock := fmt.Sprintf("tfe2e%d", os.Getpid())
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-L", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	envArgs := []string{}
	for _, e := range env {
		if strings.HasPrefix(e, "TINYFARM_HOME=") {
			envArgs = append(envArgs, e)
		}
	}
	tmux(append(append([]string{"-f", "/dev/null", "new-session", "-d", "-s", "ssh", "-x", "120", "-y", "30", "env"}, envArgs...), "TERM=xterm", bin, "ssh", "web2")...)
	defer exec.Command("tmux", "-L", sock, "kill-server").Run()
	waitScreen := func(what string) bool {
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if strings.Contains(tmux("capture-pane", "-p", "-t", "ssh"), what) {
				return true
			}
		}
		t.Errorf("interactive ssh: screen never showed %q:\n%s", what, tmux("capture-pane", "-p", "-t", "ssh"))
		return false
	}
	if waitScreen("@web2") {
		tmux("send-keys", "-t", "ssh", "tty; echo on-$(hostname)", "Enter")
		waitScreen("on-web2")
		if s := tmux("capture-pane", "-p", "-t", "ssh"); !strings.Contains(s, "/dev/pts/") {
			t.Errorf("interactive ssh has no PTY:\n%s", s)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func getHost(t *testing.T, base, host string) string {
	t.Helper()
	var last error
	for i := 0; i < 50; i++ {
		req, _ := http.NewRequest("GET", base, nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return string(b)
			}
			last = fmt.Errorf("status %d: %s", resp.StatusCode, b)
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("GET %s Host %s: %v", base, host, last)
	return ""
}

func statusHost(t *testing.T, base, host string) int {
	req, _ := http.NewRequest("GET", base, nil)
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// farmLinks names the host interfaces this farm's guests have or had:
// each defined guest's ns veth and qemu tap, by the names the drivers
// derive from the guest's instance (its name and run directory). Taken
// before the teardown (which forgets the guests), it lets
// assertNothingLeft check this farm's interfaces only, not the tf- veths
// of other farms on the host (other tests, benches).
func farmLinks(state string) []string {
	dirs, _ := os.ReadDir(filepath.Join(state, "guests"))
	var links []string
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		inst := driver.Spec{Name: d.Name(), Dir: filepath.Join(state, "guests", d.Name(), "run")}.Instance()
		links = append(links, ns.HostVeth(inst), farmnet.TapName(inst))
	}
	return links
}

// assertNothingLeft checks teardown: no guest processes, interfaces (of
// links, from farmLinks), loop devices or cgroups of this farm remain.
func assertNothingLeft(t *testing.T, state string, links []string) {
	t.Helper()
	if len(links) == 0 {
		t.Error("assertNothingLeft: no interfaces of this farm's guests to check (farmLinks before the teardown)")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, l := range links {
			if _, err := net.InterfaceByName(l); err == nil {
				left = append(left, "link "+l)
			}
		}
		if b, _ := filepath.Glob("/sys/block/loop*/loop/backing_file"); len(b) > 0 {
			for _, f := range b {
				c, _ := os.ReadFile(f)
				if strings.HasPrefix(string(c), os.TempDir()) && strings.Contains(string(c), "webfarm") {
					left = append(left, "loop "+strings.TrimSpace(string(c)))
				}
			}
		}
		filepath.WalkDir("/sys/fs/cgroup/memory", func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() && strings.HasPrefix(d.Name(), "tinyfarm-web") {
				left = append(left, "cgroup "+p)
			}
			return nil
		})
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(state)) {
				left = append(left, "process "+filepath.Base(filepath.Dir(p)))
			}
		}
		f, _ := os.Open("/proc/self/mountinfo")
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.Contains(sc.Text(), state) {
				left = append(left, "mount "+sc.Text())
			}
		}
		f.Close()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind after teardown: %v", left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestTwoGuestsRestartPlaybook runs testdata/playbooks/two_guests_restart.lua
// (the guests issue's acceptance) with the real binary: after the
// playbook restarted both guests, each answers HTTP at its own address
// on the farm bridge with its own page.
func TestTwoGuestsRestartPlaybook(t *testing.T) {
	bin, mirror, work, state, env := e2e(t)
	pb, _ := filepath.Abs("../testdata/playbooks/two_guests_restart.lua")
	const bridge = "tfaccept0"
	t.Cleanup(func() {
		destroy := exec.Command(bin, "repl")
		destroy.Dir, destroy.Env = work, env
		destroy.Stdin = strings.NewReader(`for _, g in ipairs(colinux.list()) do colinux.get(g.name):destroy() end; colinux.network{remove = true}`)
		links := farmLinks(state)
		if out, err := destroy.CombinedOutput(); err != nil {
			t.Errorf("teardown: %v\n%s", err, out)
		}
		assertNothingLeft(t, state, links)
	})
	cmd := exec.Command(bin, "run", pb, "-e", "mirror="+mirror, "-e", "dir="+work, "-e", "bridge="+bridge, "-e", "subnet=10.77.207.0/24")
	cmd.Dir, cmd.Env = work, env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "failed=0") {
		t.Fatalf("playbook: %v\n%s", err, out)
	}
	for _, g := range []struct{ name, ip string }{{"one", "10.77.207.2"}, {"two", "10.77.207.3"}} {
		if !strings.Contains(string(out), g.name+" "+g.ip) {
			t.Errorf("playbook did not report %s at %s:\n%s", g.name, g.ip, out)
		}
		if body := getHost(t, "http://"+g.ip+"/", g.ip); !strings.Contains(body, "<h1>"+g.name+"</h1>") {
			t.Errorf("%s at %s after the restart: %q", g.name, g.ip, body)
		}
	}
}
