package engine_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
	"github.com/tinyfarm/tinyfarm/engine/luatest"
	"github.com/tinyfarm/tinyfarm/stdlib/host"
)

func TestSelect(t *testing.T) {
	limit, err := engine.ParseLimit("web*,!web3")
	if err != nil {
		t.Fatal(err)
	}
	luatest.Run(t, "testdata/select_test.lua", engine.Options{
		Select: engine.Selection{Tags: []string{"web"}, SkipTags: []string{"slow"}, Limit: limit},
	})
}

func TestHandlersLua(t *testing.T) {
	luatest.Run(t, "testdata/handlers_test.lua", engine.Options{Modules: []engine.Module{host.Module()}})
}

func TestRetryLua(t *testing.T) {
	luatest.Run(t, "testdata/retry_test.lua", engine.Options{Modules: []engine.Module{host.Module()}})
}

func TestParseLimit(t *testing.T) {
	for _, c := range []struct {
		pat  string
		in   []string
		out  []string
		fail bool
	}{
		{pat: "", in: []string{"web1", "db"}},
		{pat: "web1", in: []string{"web1"}, out: []string{"web2"}},
		{pat: "web*,!web3", in: []string{"web1", "web2"}, out: []string{"web3", "db1"}},
		{pat: "!db*", in: []string{"web1"}, out: []string{"db1"}},
		{pat: "all:&*1", in: []string{"web1", "db1"}, out: []string{"web2"}},
		{pat: "web[", fail: true},
		{pat: "web1,,!", fail: true},
	} {
		l, err := engine.ParseLimit(c.pat)
		if (err != nil) != c.fail {
			t.Errorf("ParseLimit(%q) error %v, want failure %v", c.pat, err, c.fail)
			continue
		}
		for _, n := range c.in {
			if !l.Match(n) {
				t.Errorf("limit %q excludes %s", c.pat, n)
			}
		}
		for _, n := range c.out {
			if l.Match(n) {
				t.Errorf("limit %q includes %s", c.pat, n)
			}
		}
	}
}

// runIn runs src as dir/pb.lua with the state dir dir/state.
func runIn(t *testing.T, dir, src string, opts engine.Options) (string, engine.Recap, error) {
	t.Helper()
	pb := filepath.Join(dir, "pb.lua")
	if err := os.WriteFile(pb, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	opts.Stdout = &out
	opts.StateDir = filepath.Join(dir, "state")
	opts.Modules = append(opts.Modules, host.Module())
	opts.Vars = map[string]any{"dir": dir}
	eng, err := engine.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	runErr := eng.RunFile(context.Background(), pb)
	rec := eng.Finish(runErr)
	return out.String(), rec, runErr
}

const handlerPlaybook = `
local host = require("host")
handler("restart app", function() host.write(vars.dir .. "/restarted", tostring(os.time())) end)
task("config", function()
  host.write(vars.dir .. "/app.conf", vars.conf or "v1\n")
  notify("restart app")
end)
if host.read(vars.dir .. "/fail") then task("breaks", function() error("disk full") end) end
`

func TestHandlerPersistsAfterFailure(t *testing.T) {
	dir := t.TempDir()
	restarted := filepath.Join(dir, "restarted")
	os.WriteFile(filepath.Join(dir, "fail"), nil, 0o644)

	// Run 1 changes the config, then fails: the handler must not be lost.
	out, rec, err := runIn(t, dir, handlerPlaybook, engine.Options{})
	if err == nil || rec.Handlers != 0 {
		t.Fatalf("run 1: err %v, handlers %d; want a failure and no handler run\n%s", err, rec.Handlers, out)
	}
	if _, err := os.Stat(restarted); err == nil {
		t.Fatal("handler ran after a failure without --force-handlers")
	}
	if !strings.Contains(out, "handlers pending: restart app") {
		t.Errorf("run 1 does not say the handler is pending:\n%s", out)
	}
	recs, _ := filepath.Glob(filepath.Join(dir, "state", "handlers", "pb-*.json"))
	if len(recs) != 1 {
		t.Fatalf("pending record: %v", recs)
	}

	// Run 2 changes nothing, but runs the handler run 1 left.
	os.Remove(filepath.Join(dir, "fail"))
	out, rec, err = runIn(t, dir, handlerPlaybook, engine.Options{})
	if err != nil || rec.Changed != 1 || rec.Handlers != 1 {
		t.Fatalf("run 2: err %v, recap %+v; want the carried handler to run\n%s", err, rec, out)
	}
	if _, err := os.Stat(restarted); err != nil {
		t.Fatalf("handler did not run on the next run: %v\n%s", err, out)
	}
	if !strings.Contains(out, "handler restart app: notified by an earlier run") {
		t.Errorf("run 2 does not say why the handler runs:\n%s", out)
	}
	if _, err := os.Stat(recs[0]); err == nil {
		t.Error("pending record kept after the handler ran")
	}

	// Run 3: nothing changed, nothing pending, no handler.
	_, rec, err = runIn(t, dir, handlerPlaybook, engine.Options{})
	if err != nil || rec.Handlers != 0 || rec.Changed != 0 {
		t.Fatalf("run 3: err %v, recap %+v; want all ok and no handler", err, rec)
	}
}

func TestForceHandlersRunAfterFailure(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "fail"), nil, 0o644)
	out, rec, err := runIn(t, dir, handlerPlaybook, engine.Options{ForceHandlers: true})
	if err == nil || rec.Handlers != 1 || rec.Failed != 1 {
		t.Fatalf("err %v, recap %+v; want the failure kept and the handler run\n%s", err, rec, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "restarted")); err != nil {
		t.Fatal("--force-handlers did not run the handler")
	}
	if recs, _ := filepath.Glob(filepath.Join(dir, "state", "handlers", "*.json")); len(recs) != 0 {
		t.Errorf("pending record kept: %v", recs)
	}
}

func TestCheckModeHandlerWouldRun(t *testing.T) {
	dir := t.TempDir()
	out, rec, err := runIn(t, dir, handlerPlaybook, engine.Options{Check: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "would run  handler restart app") || rec.Handlers != 1 {
		t.Errorf("check mode does not report the handler as would run (recap %+v):\n%s", rec, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "restarted")); err == nil {
		t.Error("check mode ran the handler")
	}
	if recs, _ := filepath.Glob(filepath.Join(dir, "state", "handlers", "*.json")); len(recs) != 0 {
		t.Errorf("check mode wrote a pending record: %v", recs)
	}
}

func TestListTasksRunsNothing(t *testing.T) {
	dir := t.TempDir()
	l, _ := engine.ParseLimit("web1")
	out, _, err := runIn(t, dir, `
handler("reload", function() end)
task("boot", { tags = { "boot" }, on = "web1" }, function() require("host").write(vars.dir .. "/x", "1") end)
task("site", { tags = "web", on = { "web1", "web2" } }, function() end)
task("db", { on = "db1" }, function() end)
parallel({ "web1", "web2" }, function(n) task("page " .. n, { on = n }, function() end) end)
log("not listed")
`, engine.Options{ListTasks: true, Select: engine.Selection{Limit: l, SkipTags: []string{"web"}}})
	if err != nil {
		t.Fatal(err)
	}
	want := "handler reload\nrun     boot  tags=boot  on=web1\nskip    site  tags=web  on=web1,web2  (tag web in --skip-tags)\nskip    db  on=db1  (db1 outside --limit web1)\nskip    parallel item web2  on=web2  (web2 outside --limit web1)\nrun     page web1  on=web1\n"
	if out != want {
		t.Errorf("list:\n%s\nwant:\n%s", out, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("--list-tasks ran a task")
	}
}

func TestStartAtTask(t *testing.T) {
	dir := t.TempDir()
	src := `
task("one", function() end)
task("two", function() end)
task("three", function() end)
`
	out, rec, err := runIn(t, dir, src, engine.Options{Select: engine.Selection{StartAt: "tw*"}})
	if err != nil || rec.Skipped != 1 || rec.OK != 2 {
		t.Fatalf("err %v recap %+v\n%s", err, rec, out)
	}
	if !strings.Contains(out, "skipped    one\n  before --start-at-task tw*") {
		t.Errorf("skip reason missing:\n%s", out)
	}
	_, _, err = runIn(t, dir, src, engine.Options{Select: engine.Selection{StartAt: "four"}})
	if err == nil || engine.ExitCode(err) != engine.ExitUsage || !strings.Contains(err.Error(), `--start-at-task "four": no task by that name`) {
		t.Errorf("unknown start task: %v", err)
	}
}
