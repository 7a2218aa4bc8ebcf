package cluster

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"

	"github.com/tinyfarm/tinyfarm/engine"
)

// chanReporter hands every event of a run to a channel, as it happens.
type chanReporter chan engine.Event

func (c chanReporter) Event(ev engine.Event) { c <- ev }

// TestRunStreamsFarEvents: cluster.run reports each far change and log
// into the controller's event stream as it arrives, while the far run
// still goes on (the test releases the far run only once it saw its
// first change), through the real Machine client and server over pipes;
// the recap counts each far change once, in the controller's task that
// called cluster.run, or as a one-call task of its own outside any task.
func TestRunStreamsFarEvents(t *testing.T) {
	release := make(chan struct{})
	far := func(ctx context.Context, r MachineRun, emit func(json.RawMessage)) (json.RawMessage, error) {
		send := func(ev engine.Event) {
			b, _ := json.Marshal(ev)
			emit(b)
		}
		send(engine.Event{Type: "change", Task: "far task", Change: &engine.Change{Module: "host", Action: "write", Subject: "/etc/" + r.Name, Status: engine.StatusChanged}})
		send(engine.Event{Type: "log", Msg: "far waits"})
		select {
		case <-release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		send(engine.Event{Type: "change", Task: "far task", Change: &engine.Change{Module: "host", Action: "write", Subject: "/etc/after", Status: engine.StatusChanged}})
		return json.Marshal(engine.Recap{Tasks: 1, Changed: 1})
	}
	m := machinePair(t, far)
	mod := engine.ModuleFunc{ModName: "cluster", Open: func(env *engine.Env) lua.LGFunction {
		k := &conn{env: env}
		s := &hostSession{m: m}
		s.once.Do(func() {})
		k.sess.hosts = map[string]*hostSession{"h9": s}
		return k.loader()
	}}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "far.lua"), []byte("-- run by the fake far side\n"), 0o644)
	pb := filepath.Join(dir, "controller.lua")
	os.WriteFile(pb, []byte(`
local cluster = require("cluster")
task("deploy on h9", function()
  local r = cluster.run("h9", "far.lua")
  log("far recap: changed " .. r.changed .. " of " .. r.tasks)
end)
cluster.run("h9", "far.lua")
`), 0o644)
	evs := make(chanReporter, 100)
	eng, err := engine.New(engine.Options{Modules: []engine.Module{mod}, Reporter: evs, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	done := make(chan engine.Recap, 1)
	go func() {
		err := eng.RunFile(ctxT(t), pb)
		if err != nil {
			t.Error(err)
		}
		done <- eng.Finish(err)
	}()

	next := func() engine.Event {
		t.Helper()
		select {
		case ev := <-evs:
			return ev
		case <-time.After(30 * time.Second):
			t.Fatal("no event for 30s")
		}
		return engine.Event{}
	}
	// The far change and log come while the far run waits.
	var seen []string
	for len(seen) < 2 {
		switch ev := next(); ev.Type {
		case "change":
			if ev.Change.Subject != "h9:/etc/far.lua" || ev.Task != "deploy on h9" || ev.Change.Detail != "[far task]" {
				t.Fatalf("first far change: %+v in task %q", *ev.Change, ev.Task)
			}
			seen = append(seen, "change")
		case "log":
			if ev.Msg != "h9: far waits" {
				t.Fatalf("far log: %q", ev.Msg)
			}
			seen = append(seen, "log")
		case "task_end", "recap":
			t.Fatalf("%s before the far run was released: %+v", ev.Type, ev)
		}
	}
	if seen[0] != "change" {
		t.Errorf("far events out of order: %v", seen)
	}
	time.Sleep(50 * time.Millisecond) // the far run's wait, which --profile gives its next change
	close(release)
	var ends []engine.Event
	for ev := next(); ev.Type != "recap"; ev = next() {
		if ev.Type == "task_end" {
			ends = append(ends, ev)
		}
	}
	rec := <-done
	// The task with its two far changes, then the second call's two
	// changes as one-call tasks: four changes, three tasks.
	if len(ends) != 3 || ends[0].Task != "deploy on h9" || len(ends[0].Changes) != 2 ||
		ends[1].Task != "host.write h9:/etc/far.lua" || ends[2].Task != "host.write h9:/etc/after" {
		for _, e := range ends {
			t.Logf("task_end %q %s %+v", e.Task, e.Status, e.Changes)
		}
		t.Fatalf("want the task and two one-call tasks")
	}
	// Each far change's elapsed time is the controller's wait for it
	// since the one before (--profile).
	if after := ends[0].Changes[1]; after.Subject != "h9:/etc/after" || after.ElapsedMS < 50 {
		t.Errorf("the far change after the wait: %+v, want elapsed_ms >= 50", after)
	}
	if rec.Tasks != 3 || rec.Changed != 3 || rec.OK != 0 || rec.Failed != 0 {
		t.Errorf("recap: %+v, want 3 tasks, 3 changed", rec)
	}
}
