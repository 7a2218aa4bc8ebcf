-- The colinux binding over the fake driver (no root, no guests, each call
-- milliseconds): option decoding, the defaults the Go API picks, errors
-- and their kinds, and what each call reports (rec.take(): the recap).
local colinux = require("colinux")
local rec = require("rec")

-- statuses of the changes reported since the last call, "action=status ..."
local function recap()
  local out = {}
  for _, c in ipairs(rec.take()) do out[#out + 1] = c.action .. "=" .. c.status end
  return table.concat(out, " ")
end

-- A disk as image.build returns it. No host key: with one, wait_ready
-- and stop would reach for the guest's SSH server at its address.
-- An empty file stands for a disk: the fake driver never reads it, but a
-- guest whose disk does not exist is refused.
local function disk(t)
  local p = t:tempdir() .. "/d.img"
  assert(io.open(p, "w")):close()
  return { path = p }
end

function TestDefaults(t)
  rec.take()
  local d = disk(t)
  d.host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZ0k4PpSBzMLyc3bdw1g0qfBVvKnXnbaX3m3bHDNsUg"
  local g = colinux.guest({ name = "dflt", disk = d })
  -- The Go API's defaults: the host's driver (here the only one), 128M,
  -- the driver's network (the fake's: the farm bridge, an address).
  if g.driver ~= "fake" or g.mem ~= 128 * 1024 * 1024 or g.ip ~= "10.77.0.2" then
    t:error("defaults: driver " .. g.driver .. " mem " .. g.mem .. " ip " .. g.ip)
  end
  if g.host_key == "" then t:error("the disk table's host_key was not pinned") end
  if recap() ~= "guest=changed" then t:error("define: " .. recap()) end
  colinux.guest({ name = "dflt", disk = d })
  if recap() ~= "guest=ok" then t:error("same definition again: not ok") end
  g:destroy()
end

function TestOptionDecoding(t)
  local g = colinux.guest({ name = "opts", driver = "fake", disk = disk(t), mem = "64M", cpus = 0.5,
    bootcodes = { host = "web1", nodhcp = true, "tz=UTC" }, net = "user", forward = { [2301] = 80, [2300] = 22 },
    labels = { role = "web" } })
  if g.mem ~= 64 * 1024 * 1024 then t:error("mem = \"64M\": " .. g.mem) end
  local conf = g:conf()
  for _, want in ipairs({ '"Bootcodes": "host=web1 nodhcp tz=UTC"', '"HostPort": 2300', '"HostPort": 2301', '"Mode": "user"', '"CPUs": 0.5' }) do
    if not string.find(conf, want, 1, true) then t:error("conf lacks " .. want .. ":\n" .. conf) end
  end
  if g:addr(80) ~= "127.0.0.1:2301" then t:error("addr(80): " .. g:addr(80)) end
  local ok, e = pcall(function() colinux.guest({ name = "opts", disk = disk(t), mme = "64M" }) end)
  if ok or e.kind ~= "invalid" or not string.find(tostring(e), "mme") then t:error("misspelt option: " .. tostring(e)) end
  ok, e = pcall(function() colinux.guest({ name = "opts", disk = disk(t), forward = { [2300] = "ssh" } }) end)
  if ok or e.kind ~= "invalid" or not string.find(tostring(e), "forward") then t:error("bad forward: " .. tostring(e)) end
  ok, e = pcall(function() colinux.guest({ name = "opts", disk = 42 }) end)
  if ok or not string.find(tostring(e), "disk: want a path") then t:error("disk = 42: " .. tostring(e)) end
  g:destroy()
end

function TestErrors(t)
  local cases = {
    { { name = "Bad_Name", disk = disk(t) }, "invalid", "guest name" },
    { { name = "e1", driver = "vbox", disk = disk(t) }, "invalid", "want ns, qemu, colinux or fake" },
    { { name = "e1", disk = disk(t), mem = "1M" }, "invalid", "at least 16M" },
    { { name = "e1", disk = disk(t), accel = "kvm" }, "invalid", "the fake driver has no accelerator" },
    { { name = "e1", driver = "qemu", disk = disk(t) }, "invalid", "the qemu driver needs kernel" },
    { { name = "e1", driver = "ns", disk = disk(t), net_raw = "yes" }, "invalid", "net_raw" },
    -- a driver's own refusal, before anything runs: frugal ns guests
    { { name = "e1", driver = "ns", layout = "frugal", core = "/c.gz", disk = disk(t) }, "unsupported", "frugal guests" },
  }
  for _, c in ipairs(cases) do
    local ok, e = pcall(function() colinux.guest(c[1]) end)
    if ok or e.kind ~= c[2] or not string.find(tostring(e), c[3], 1, true) then
      t:error(c[1].name .. ": want " .. c[2] .. " error with " .. c[3] .. ", got " .. tostring(e))
    end
  end
  if colinux.get("e1") then t:error("a refused guest was defined") end
end

function TestLifecycleRecap(t)
  local g = colinux.guest({ name = "life", disk = disk(t) })
  rec.take()
  if not g:start() then t:error("start: not changed") end
  if g:start() then t:error("second start: changed") end
  if g:status().state ~= "running" or g:status().isolation ~= "none (fake driver)" then t:error("status: " .. g:status().state) end
  g:wait_ready({ timeout = 1 })
  if not string.find(g:console(1), "tinyfarm: guest ready", 1, true) then t:error("console: " .. g:console()) end
  local r = g:exec("echo hello")
  if r.stdout ~= "hello\n" or r.code ~= 0 then t:error("exec: " .. r.stdout) end
  local ok, e = pcall(function() g:exec("exit 3") end)
  if ok or not string.find(tostring(e), "exit status 3") then t:error("failing exec: " .. tostring(e)) end
  if g:exec("exit 3", { check = false }).code ~= 3 then t:error("exec check = false") end
  -- suspend and resume report ok when the guest is in that state already
  if g:suspend() ~= true or g:suspend() ~= false then t:error("suspend twice") end
  ok, e = pcall(function() g:exec("echo x") end)
  if ok or not string.find(tostring(e), "suspended") then t:error("exec on a suspended guest: " .. tostring(e)) end
  if g:resume() ~= true or g:resume() ~= false then t:error("resume twice") end
  if not g:stop() or g:stop() then t:error("stop twice") end
  g:destroy()
  local want = "start=changed start=ok exec=changed exec=changed suspend=changed suspend=ok resume=changed resume=ok stop=changed stop=ok destroy=changed"
  local got = recap()
  if got ~= want then t:error("recap:\n got " .. got .. "\nwant " .. want) end
end

function TestSuspendStopped(t)
  local g = colinux.guest({ name = "cold", disk = disk(t) })
  local ok, e = pcall(function() g:suspend() end)
  if ok or not string.find(tostring(e), "not running") then t:error("suspend of a stopped guest: " .. tostring(e)) end
  g:destroy()
end
