-- Lua-side tests of require("proxy"), run by lua_test.go through luatest:
-- once in a normal run (TestCheck* skip) and once in check mode (only
-- TestCheck* run). vars.backend is a real HTTP backend on 127.0.0.1; the
-- resolver maps guest web1 port 80 to it and guest web2 to 10.77.0.3.
local proxy = require("proxy")
local host = require("host")
local pt = require("proxytest")

local function normal(t)
  if check_mode() then t:skip("runs outside check mode") end
end

local function has(s, want, t)
  if not string.find(s or "", want, 1, true) then t:error("missing " .. want .. " in:\n" .. tostring(s)) end
end

local function find(list, key, value)
  for _, r in ipairs(list) do
    if r[key] == value then return r end
  end
end

function TestVHostIdempotentWithDiff(t)
  normal(t)
  if proxy.vhost { host = "A.Test", to = "10.0.0.5", port = 8080 } ~= true then t:error("first vhost: not changed") end
  local c = pt.last()
  if c.action ~= "vhost" or c.subject ~= "a.test" or c.status ~= "changed" then t:error("report " .. c.action .. " " .. c.subject .. " " .. c.status) end
  has(c.diff, "+vhost a.test -> 10.0.0.5:8080", t)
  if proxy.vhost { host = "a.test", to = "10.0.0.5", port = 8080 } ~= false then t:error("second vhost: changed") end
  c = pt.last()
  if c.status ~= "ok" or c.diff ~= "" then t:error("second vhost reported " .. c.status) end
  local r = find(proxy.routes().vhosts, "host", "a.test")
  if not r or r.backend ~= "10.0.0.5:8080" or r.guest then t:error("routes() lacks a.test") end
end

function TestGuestObjectOrName(t)
  normal(t)
  proxy.vhost { host = "g.test", to = pt.guest("web1"), port = 80 }
  local r = find(proxy.routes().vhosts, "host", "g.test")
  if not r then t:fatal("g.test not routed") end
  -- The resolver's "host:port" is what is stored: like a user-mode guest.
  if r.backend ~= vars.backend or not r.guest or r.to ~= "web1" or r.to_port ~= 80 then
    t:error(string.format("g.test: backend=%s guest=%s to=%s to_port=%s", r.backend, tostring(r.guest), r.to, tostring(r.to_port)))
  end
  -- The same guest by name is the same route.
  if proxy.vhost { host = "g.test", to = "web1", port = 80 } then t:error("guest by name after guest object: changed") end
end

function TestConflictAndReplace(t)
  normal(t)
  proxy.vhost { host = "c.test", to = "web2", port = 80 }
  local ok, e = pcall(proxy.vhost, { host = "c.test", to = "10.0.0.9", port = 80 })
  if ok then t:fatal("re-pointing without replace succeeded") end
  if e.kind ~= "invalid" then t:error("conflict kind " .. e.kind) end
  has(e.msg, "set replace", t)
  if not proxy.vhost { host = "c.test", to = "10.0.0.9", port = 80, replace = true } then t:error("replace: not changed") end
end

function TestErrorsAndKinds(t)
  normal(t)
  local cases = {
    { { host = "bad_host!.test", to = "10.0.0.1", port = 80 }, "invalid", "character '_' not allowed" },
    { { host = "p.test", to = "10.0.0.1", port = 0 }, "invalid", "port 0 out of range" },
    { { host = "p.test", to = "nosuch", port = 80 }, "not_found", "resolve guest nosuch" },
    { { host = "p.test", to = 42, port = 80 }, "invalid", "option to: want an address, a guest name or a guest, got number" },
    { { host = "p.test", to = "10.0.0.1", prot = 80 }, "invalid", 'unknown option "prot" (did you mean "port"?' },
    { { to = "10.0.0.1", port = 80 }, "invalid", "option host is required" },
  }
  for i, c in ipairs(cases) do
    local ok, e = pcall(proxy.vhost, c[1])
    if ok then
      t:error("case " .. i .. " succeeded")
    else
      if e.kind ~= c[2] then t:error("case " .. i .. ": kind " .. e.kind .. ", want " .. c[2] .. ": " .. e.msg) end
      has(e.msg, c[3], t)
      if not string.find(e.msg, "^proxy_test.lua:%d+:") then t:error("no position: " .. e.msg) end
    end
  end
  local ok, e = pcall(proxy.vhost)
  if ok or e.kind ~= "invalid" then t:error("vhost without options") end
  ok, e = pcall(proxy.remove, {})
  if ok or e.kind ~= "invalid" then t:error("remove{} accepted") end
end

function TestForwardAndRemove(t)
  normal(t)
  if not proxy.forward { listen = "127.0.0.1:2201", to = "web2", port = 22 } then t:error("forward: not changed") end
  has(pt.last().diff, "+forward 127.0.0.1:2201 -> 10.77.0.3:22 (guest web2)", t)
  if proxy.forward { listen = "127.0.0.1:2201", to = "web2", port = 22 } then t:error("second forward: changed") end
  local f = find(proxy.routes().forwards, "listen", "127.0.0.1:2201")
  if not f or f.backend ~= "10.77.0.3:22" then t:error("routes() lacks the forward") end
  if not proxy.remove { listen = "127.0.0.1:2201" } then t:error("remove forward: not changed") end
  has(pt.last().diff, "-forward 127.0.0.1:2201", t)
  if proxy.remove { listen = "127.0.0.1:2201" } then t:error("second remove: changed") end
  proxy.vhost { host = "gone.test", to = "10.0.0.1", port = 80 }
  if not proxy.remove { host = "gone.test" } or find(proxy.routes().vhosts, "host", "gone.test") then t:error("remove host") end
end

-- nginx -t runs through `command`; "true" accepts anything, so this tests
-- rendering and installing without an nginx binary.
function TestNginxRendersRegistry(t)
  normal(t)
  local dir = t:tempdir()
  host.write(dir .. "/nginx.conf", "events {}\nhttp { include " .. dir .. "/tinyfarm.conf; }\n")
  proxy.vhost { host = "n.test", to = "10.0.0.7", port = 8080 }
  local o = { path = dir .. "/tinyfarm.conf", conf = dir .. "/nginx.conf", command = { "true" }, listen = "8080" }
  if not proxy.nginx(o) then t:error("first nginx: not changed") end
  has(pt.last().diff, "+    server_name n.test;", t)
  local conf = host.read(dir .. "/tinyfarm.conf")
  has(conf, "server_name n.test;", t)
  has(conf, "listen 8080;", t)
  if proxy.nginx(o) then t:error("second nginx: changed") end
  local ok, e = pcall(proxy.nginx, { conf = "x" })
  if ok or e.kind ~= "invalid" then t:error("nginx without path accepted") end
end

function TestServeRealHTTP(t)
  normal(t)
  proxy.vhost { host = "site.test", to = pt.guest("web1"), port = 80 }
  local log = t:tempdir() .. "/access.log"
  local addr = proxy.serve { listen = "127.0.0.1:0", access_log = log }
  if not string.find(addr, "^127%.0%.0%.1:%d+$") or addr == "127.0.0.1:0" then t:fatal("serve returned " .. addr) end
  if pt.last().status ~= "changed" then t:error("first serve: " .. pt.last().status) end
  local code, body = pt.get(addr, "site.test")
  if code ~= 200 then t:fatal("GET site.test: " .. code .. " " .. body) end
  has(body, "hello from the backend, host=site.test xff=127.0.0.1", t)
  code = pt.get(addr, "unknown.test")
  if code ~= 404 then t:error("unknown host: " .. code) end
  -- Serving the same listen address again is a no-op.
  if proxy.serve { listen = "127.0.0.1:0" } ~= addr or pt.last().status ~= "ok" then t:error("second serve") end
  -- A route added while serving is picked up live.
  proxy.vhost { host = "late.test", to = vars.backend }
  for _ = 1, 200 do
    code, body = pt.get(addr, "late.test")
    if code == 200 then break end
    host.sleep(0.05)
  end
  if code ~= 200 then t:error("late.test never routed: " .. code) end
  local ok, e = pcall(proxy.serve, { listen = "127.0.0.1:99999" })
  if ok then t:error("bad listen accepted") end
end

function TestCheckModeChangesNothing(t)
  if not check_mode() then t:skip("runs in check mode") end
  if proxy.vhost { host = "k.test", to = "web2", port = 80 } ~= true then t:error("check vhost: not changed") end
  local c = pt.last()
  if c.status ~= "changed" then t:error("check vhost reported " .. c.status) end
  has(c.diff, "+vhost k.test -> 10.77.0.3:80 (guest web2)", t)
  if #proxy.routes().vhosts ~= 0 then t:error("check mode wrote the registry") end
  -- The same call again still would change; it depends on the first.
  proxy.vhost { host = "k.test", to = "web2", port = 80 }
  if pt.last().status ~= "may_change" then t:error("second check vhost: " .. pt.last().status) end
  proxy.forward { listen = "2201", to = "web2", port = 22 }
  has(pt.last().diff, "+forward :2201 -> 10.77.0.3:22", t)
  if #proxy.routes().forwards ~= 0 then t:error("check mode wrote a forward") end
  -- nginx renders the registry, which the steps above would change.
  local dir = t:tempdir()
  proxy.nginx { path = dir .. "/tinyfarm.conf", conf = dir .. "/nginx.conf", command = { "true" } }
  if pt.last().status ~= "may_change" then t:error("check nginx: " .. pt.last().status) end
  if host.read(dir .. "/tinyfarm.conf") ~= nil then t:error("check mode wrote the nginx file") end
  -- serve does not start anything.
  local addr = proxy.serve { listen = "127.0.0.1:0" }
  if addr ~= "127.0.0.1:0" or pt.last().status ~= "may_change" then t:error("check serve: " .. addr .. " " .. pt.last().status) end
end
