package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyfarm/tinyfarm/engine"

	"github.com/tinyfarm/tinyfarm/stdlib/cluster"
)

// TestMachineCommand: `tinyfarm machine` as a controller sees it on the
// far side of SSH: the hello, a listing, a playbook sent in the request
// whose events stream back before its recap (vars and check mode given),
// a failing playbook's error with its kind and file:line, and nothing left
// of the sent playbooks in the state dir.
func TestMachineCommand(t *testing.T) {
	home := t.TempDir()
	t.Setenv("TINYFARM_HOME", home)
	req := func(id int, method string, params any) string {
		b, _ := json.Marshal(params)
		line, _ := json.Marshal(cluster.MachineRequest{ID: int64(id), Method: method, Params: b})
		return string(line) + "\n"
	}
	in := req(1, cluster.MethodList, struct{}{}) +
		req(2, cluster.MethodRun, cluster.MachineRun{Name: "/ctl/site.lua", Source: `task("greet", function() log("hello " .. vars.who) end)`, Vars: map[string]any{"who": "h1"}, Check: true}) +
		req(3, cluster.MethodRun, cluster.MachineRun{Name: "bad.lua", Source: "local x = nil\nx.y = 1\n"})
	var out, errb strings.Builder
	if code := Main(context.Background(), []string{"machine"}, strings.NewReader(in), &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var hello *cluster.MachineHello
	events := map[int64][]string{}
	results := map[int64]cluster.MachineReply{}
	sc := bufio.NewScanner(strings.NewReader(out.String()))
	for sc.Scan() {
		var r cluster.MachineReply
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("%q: %v", sc.Text(), err)
		}
		switch {
		case r.Hello != nil:
			hello = r.Hello
		case r.Event != nil:
			if _, done := results[r.ID]; done {
				t.Errorf("event of request %d after its result", r.ID)
			}
			var ev engine.Event
			if err := json.Unmarshal(r.Event, &ev); err != nil {
				t.Errorf("event %s: %v", r.Event, err)
			}
			events[r.ID] = append(events[r.ID], ev.Type+" "+ev.Task+ev.Msg)
		default:
			results[r.ID] = r
		}
	}
	if hello == nil || hello.Protocol != cluster.MachineProtocol || !strings.HasPrefix(out.String(), `{"hello":`) {
		t.Fatalf("no hello first:\n%s", out.String())
	}
	if r := results[1]; r.Error != nil || string(r.Result) != "[]" {
		t.Errorf("list: %s %+v", r.Result, r.Error)
	}
	var run cluster.MachineRunResult
	var rec engine.Recap
	if r := results[2]; r.Error != nil || json.Unmarshal(r.Result, &run) != nil || json.Unmarshal(run.Recap, &rec) != nil || rec.Tasks != 1 || !rec.Check {
		t.Errorf("run: %s %+v", r.Result, r.Error)
	}
	if got := strings.Join(events[2], "|"); !strings.Contains(got, "task_start greet|log hello h1|task_end greet") {
		t.Errorf("run events: %s", got)
	}
	if e := results[3].Error; e == nil || !strings.Contains(e.Message, "bad.lua:2:") || e.Kind() != "error" {
		t.Errorf("failing run: %+v", e)
	}
	if left, _ := os.ReadDir(filepath.Join(home, "machine")); len(left) != 0 {
		t.Errorf("sent playbooks left in the state dir: %v", left)
	}
}

// TestMachineRunEndsWithController: `tinyfarm machine` runs a real
// playbook for a controller that sent keepalives; the controller is
// killed (its input ends, its output breaks) while the playbook waits:
// the command returns, and the playbook never reaches its next step even
// once what it waited for comes.
func TestMachineRunEndsWithController(t *testing.T) {
	home := t.TempDir()
	t.Setenv("TINYFARM_HOME", home)
	dir := t.TempDir()
	t.Cleanup(func() { os.WriteFile(filepath.Join(dir, "go"), nil, 0o644) })
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan int, 1)
	var errb strings.Builder
	go func() {
		code := Main(context.Background(), []string{"machine"}, inR, outW, &errb)
		outW.Close()
		done <- code
	}()
	reqs := []cluster.MachineRequest{
		{ID: 1, Method: cluster.MethodKeepalive, Params: json.RawMessage(`{"interval":50000000,"count":3}`)},
		{ID: 2, Method: cluster.MethodRun, Params: mustJSON(t, cluster.MachineRun{Name: "wait.lua", Vars: map[string]any{"dir": dir}, Source: `
local host = require("host")
host.write(vars.dir .. "/far-1", "one\n")
while not host.read(vars.dir .. "/go") do host.sleep(0.05) end
host.write(vars.dir .. "/far-2", "two\n")`})},
	}
	go func() { // the pipes hold nothing: the hello must be read meanwhile
		for _, r := range reqs {
			line, _ := json.Marshal(r)
			inW.Write(append(line, '\n'))
		}
	}()
	first := "host.write " + filepath.Join(dir, "far-1")
	seen := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			var r cluster.MachineReply
			var ev engine.Event
			if json.Unmarshal(sc.Bytes(), &r) == nil && r.ID == 2 && json.Unmarshal(r.Event, &ev) == nil && ev.Type == "task_end" && ev.Task == first {
				seen <- true
				return
			}
		}
		seen <- false
	}()
	select {
	case ok := <-seen:
		if !ok {
			t.Fatalf("no %q from the far run: %s", first, errb.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no %q from the far run in 30s", first)
	}
	inW.Close()
	outR.CloseWithError(errors.New("controller killed"))
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("tinyfarm machine still runs the playbook 10s after its controller was killed")
	}
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	time.Sleep(300 * time.Millisecond)
	if _, err := os.Stat(filepath.Join(dir, "far-2")); err == nil {
		t.Error("the far playbook reached its next step after its controller was killed")
	}
	if left, _ := os.ReadDir(filepath.Join(home, "machine")); len(left) != 0 {
		t.Errorf("the run left %v in the state dir", left)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
