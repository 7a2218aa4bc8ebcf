-- A namespace guest in the default mode (user namespace, farm bridge), as
-- a playbook drives it: a read-only share, suspend and resume (twice:
-- the second is ok, not changed), exec refused while suspended, exec with
-- a timeout, a redefinition while it runs, destroy keeping the disk.
local colinux = require("colinux")

function TestLifecycle(t)
  colinux.network({ bridge = vars.bridge, subnet = vars.subnet })
  local g = colinux.guest({ name = "life", driver = "ns", disk = { path = vars.disk }, mem = "64M" })
  g:share({ host = vars.share, guest = "/mnt/ro", ro = true })
  local ok, e = pcall(function() g:share({ host = vars.share, guest = "/mnt/../etc" }) end)
  if ok or e.kind ~= "invalid" or not string.find(tostring(e), "system directory") then
    t:error("share over /mnt/../etc: " .. tostring(e))
  end
  if not g:start() then t:error("start: not changed") end
  g:wait_ready({ timeout = 30 })
  local st = g:status()
  if not string.find(st.isolation, "userns", 1, true) then t:error("isolation: " .. st.isolation) end
  local r = g:exec("cat /mnt/ro/hello.txt; ls -ln /mnt/ro | awk 'NR>1 {print $3, $9}'")
  if r.stdout ~= "from the host\n0 hello.txt\n1001 tc.txt\n" then t:error("share in the guest: " .. r.stdout) end

  if g:suspend() ~= true then t:error("suspend: not changed") end
  if g:suspend() ~= false then t:error("second suspend: changed") end
  if g:status().state ~= "suspended" then t:error("state after suspend: " .. g:status().state) end
  ok, e = pcall(function() g:exec("true") end)
  if ok or not string.find(tostring(e), "suspended") then t:error("exec on a suspended guest: " .. tostring(e)) end
  if g:resume() ~= true then t:error("resume: not changed") end
  if g:resume() ~= false then t:error("second resume: changed") end
  if g:exec("echo up").stdout ~= "up\n" then t:error("exec after resume") end

  ok, e = pcall(function() g:exec("sleep 5", { timeout = "300ms" }) end)
  if ok or e.kind ~= "timeout" then t:error("exec past its timeout: " .. tostring(e)) end
  if g:exec("echo still").stdout ~= "still\n" then t:error("exec after a timed-out one") end

  -- Redefined while it runs: mem is applied live, a bootcode is "restart
  -- needed" (in the status too), another disk is refused until it stops.
  g = colinux.guest({ name = "life", driver = "ns", disk = { path = vars.disk }, mem = "96M", bootcodes = "tz=UTC" })
  if g.mem ~= 96 * 1024 * 1024 or table.concat(g:status().restart_needed, ",") ~= "bootcodes" then
    t:error("restart_needed after a bootcode change: " .. table.concat(g:status().restart_needed, ","))
  end
  ok, e = pcall(function() colinux.guest({ name = "life", driver = "ns", disk = { path = vars.disk .. ".other" }, mem = "96M" }) end)
  if ok or e.kind ~= "invalid" or not string.find(tostring(e), "stop it first", 1, true) then
    t:error("a new disk for the running guest: " .. tostring(e))
  end

  g:destroy()
  local f = io.open(vars.disk, "r")
  if not f then t:error("destroy{} removed the disk " .. vars.disk) else f:close() end
end
