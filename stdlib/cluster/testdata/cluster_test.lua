-- Run by lua_test.go against a real embedded etcd member: host "a" (this
-- state dir's host, up, 1 GiB, ns) and "b" (up, 2 GiB, ns and qemu).
local cluster = require("cluster")

function TestHosts(t)
  local hosts = cluster.hosts()
  if #hosts ~= 2 then t:fatal("hosts: " .. #hosts) end
  local a, b = hosts[1], hosts[2]
  if a.name ~= "a" or a.state ~= "up" or a.mem ~= 1024 * 1024 * 1024 then t:error("a: " .. a.name .. " " .. a.state .. " " .. a.mem) end
  if b.drivers[2] ~= "qemu" or b.free ~= 2 * 1024 * 1024 * 1024 - 512 * 1024 * 1024 then t:error("b: " .. tostring(b.drivers[2]) .. " " .. b.free) end
end

function TestPlaceAndClaim(t)
  if check_mode() then t:skip("changes the cluster") end
  local h = cluster.place{ mem = "128M" }                    -- spread: b has more free
  if h.name ~= "b" then t:error("spread placed on " .. h.name) end
  h = cluster.place{ mem = "128M", strategy = "pack" }
  if h.name ~= "a" then t:error("pack placed on " .. h.name) end
  h = cluster.place{ mem = "128M", driver = "qemu" }
  if h.name ~= "b" then t:error("qemu placed on " .. h.name) end
  local g = cluster.claim{ name = "web7", host = h, mem = "128M" }
  if g.host ~= "b" or not g.ip:match("^10%.80%.%d+%.2/24$") or g.uid_base ~= 65536 * 64 or g.subnet ~= g.ip:gsub("%.2/24$", ".0/24") then
    t:error("claim: " .. g.host .. " " .. g.ip .. " " .. g.uid_base)
  end
  local again = cluster.claim{ name = "web7", host = "b" }
  if again.ip ~= g.ip then t:error("claimed again: " .. again.ip) end
  local ok, err = pcall(cluster.claim, { name = "web7", host = "a" })
  if ok or err.kind ~= "taken" or not tostring(err):find("guest web7 already runs on host b") then
    t:error("claim on another host: " .. tostring(err))
  end
  local gs = cluster.guests()
  if #gs ~= 1 or gs[1].state ~= "ok" then t:error("guests: " .. #gs) end
end

function TestPlaceRefusesWithNumbers(t)
  local ok, err = pcall(cluster.place, { mem = "4G" })
  if ok or err.kind ~= "no_room" then t:fatal("placed 4G: " .. tostring(err)) end
  local msg = tostring(err)
  for _, want in ipairs{ "no host has 4096 MiB free", "a has 1024 MiB free of 1024 MiB", "b has 1536 MiB free of 2048 MiB", "cluster_test.lua:" } do
    if not msg:find(want, 1, true) then t:error("missing " .. want .. " in: " .. msg) end
  end
  ok, err = pcall(cluster.place, { mem = "1M", strategy = "random" })
  if ok or err.kind ~= "invalid" then t:error("strategy random: " .. tostring(err)) end
end

function TestRoute(t)
  if check_mode() then t:skip("changes the cluster") end
  cluster.route{ vhost = "Web7.Example.com", host = "b", addr = "10.80.0.2:80", guest = "web7" }
  cluster.route{ vhost = "web7.example.com", host = "b", addr = "10.80.0.2:80", guest = "web7" }  -- ok: the same
  local ok, err = pcall(cluster.route, { vhost = "x.test", host = "b", addr = "nonsense" })
  if ok or err.kind ~= "invalid" or not tostring(err):find("want ip:port") then t:error("bad addr: " .. tostring(err)) end
end

function TestRelease(t)
  if check_mode() then t:skip("changes the cluster") end
  local g = cluster.claim{ name = "tmp1", host = "a", mem = "64M" }
  cluster.route{ vhost = "tmp1.test", host = "a", addr = g.ip:match("^[^/]+") .. ":80", guest = "tmp1" }
  cluster.release("tmp1")
  cluster.release("tmp1")   -- ok: gone
  for _, x in ipairs(cluster.guests()) do
    if x.name == "tmp1" then t:error("tmp1 still claimed") end
  end
  local again = cluster.claim{ name = "tmp2", host = "a", mem = "64M" }
  if again.ip ~= g.ip then t:error("tmp1's IP " .. g.ip .. " not free again: tmp2 got " .. again.ip) end
  cluster.release("tmp2")
end

-- Run in check mode only (lua_test.go): a claim shows the address it would
-- get and claims nothing.
function TestCheckClaim(t)
  if not check_mode() then t:skip("check mode only") end
  local g = cluster.claim{ name = "would1", host = "a", mem = "64M" }
  if not g.ip:match("^10%.80%.%d+%.%d+/24$") or g.subnet == "" then t:error("preview: " .. tostring(g.ip)) end
  for _, x in ipairs(cluster.guests()) do
    if x.name == "would1" then t:error("check mode claimed would1") end
  end
end
