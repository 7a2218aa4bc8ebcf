package engine_test

import (
	"strings"
	"testing"

	"github.com/tinyfarm/tinyfarm/engine"
)

// counter is a Go value the playbook reaches through gopher-luar.
type counter struct{ n int }

func (c *counter) Add(d int) int { c.n += d; return c.n }

// Issue 13: a caught error used to close the upvalues of every frame on the
// stack (gopher-lua #448), so after the first pcall the playbook's locals
// stopped being shared with its closures. Every way an error can be raised
// and caught in a playbook must leave them shared.
func TestCaughtErrorsKeepLocalsShared(t *testing.T) {
	out, rec, err := run(t, `
local host = require("host")
local tried, failed = 0, 0
local function try(f) tried = tried + 1; if not pcall(f) then failed = failed + 1 end end
try(function() error("x") end)                                      -- error()
try(function() error({ code = 1 }) end)                             -- a table value
try(function() host.write("/nonexistent-dir/f", "x") end)           -- a tinyfarm module
try(function() vars.counter:Add("not a number") end)                -- a gopher-luar call
try(function() task("fails", function() error("in task") end) end)  -- task()
try(function() parallel({ 1, 2 }, function(i) if i == 2 then error("item") end end) end) -- parallel()
try(function() local co = coroutine.wrap(function() error("in co") end); co() end)   -- a coroutine
try(function() assert(xpcall(function() error("h") end, function(e) return e end)) end) -- xpcall
try(function() end)
print(tried, failed)

-- Caught inside a task and inside parallel workers, with closures there.
local inner = 0
task("retries", function()
  local attempts = 0
  local function attempt() attempts = attempts + 1; if attempts < 3 then error("transient") end end
  while not pcall(attempt) do inner = inner + 1 end
  print("attempts", attempts, inner)
end)
local per = parallel({ 1, 2, 3 }, function(i)
  local caught = 0
  local function bump() caught = caught + 1 end
  for _ = 1, i do pcall(function() bump(); error("e") end) end
  return caught
end)
print("parallel", table.concat(per, ","))

-- Errors stay tinyfarm's through pcall: file:line first, msg/kind/cause.
local ok, e = pcall(host.write, "/nonexistent-dir/f", "x")
print(ok, e.kind, tostring(e) == e.msg, (e.msg:match("^pb%.lua:%d+:") ~= nil))
`, engine.Options{Vars: map[string]any{"counter": &counter{}}})
	if err != nil {
		t.Fatalf("run failed: %v\n%s", err, out)
	}
	for _, want := range []string{"9\t8\n", "attempts\t3\t2\n", "parallel\t1,2,3\n", "false\tnot_found\ttrue\ttrue\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The failed task was caught: ignored, not failed.
	if rec.Failed != 0 || rec.Ignored != 1 {
		t.Errorf("recap %+v, want failed=0 ignored=1", rec)
	}
}
