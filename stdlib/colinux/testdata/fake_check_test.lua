-- Check mode over the fake driver: nothing is defined, started, stopped
-- or run; the recap says what would change. vars.running names a guest
-- that runs (started by the Go test).
local colinux = require("colinux")
local rec = require("rec")

local function recap()
  local out = {}
  for _, c in ipairs(rec.take()) do out[#out + 1] = c.action .. "=" .. c.status end
  return table.concat(out, " ")
end

function TestCheckNewGuest(t)
  rec.take()
  local g = colinux.guest({ name = "planned", disk = { path = t:tempdir() .. "/d.img" } })
  if colinux.get("planned") then t:error("check mode defined the guest") end
  g:start()
  if not g:exec("echo hi").skipped then t:error("check mode ran a command") end
  g:wait_ready()
  -- A guest this run would define: what follows depends on it.
  local want = "guest=changed start=may_change exec=may_change"
  if recap() ~= want then t:error("recap:\n got " .. recap() .. "\nwant " .. want) end
end

function TestCheckRunningGuest(t)
  rec.take()
  local g = colinux.get(vars.running)
  if g:start() then t:error("start of a running guest: would change") end
  if g:resume() then t:error("resume of a running guest: would change") end
  if not g:suspend() then t:error("suspend: would not change") end
  if g:exec("echo hi", { readonly = true }).stdout ~= "hi\n" then t:error("a readonly exec does run in check mode") end
  if not g:exec("echo hi").skipped then t:error("check mode ran a command") end
  if not g:stop() then t:error("stop: would not change") end -- may_change: after the suspend it would do
  local want = "start=ok resume=ok suspend=changed exec=ok exec=may_change stop=may_change"
  local got = recap()
  if got ~= want then t:error("recap:\n got " .. got .. "\nwant " .. want) end
end
