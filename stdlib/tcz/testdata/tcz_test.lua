-- Lua tests of require("tcz") against the mini Tiny Core mirror (vars.mirror).
local tcz = require("tcz")
local host = require("host")
local rec = require("rec")

local function mirror(t)
  return tcz.mirror({ url = vars.mirror, kernel = vars.kernel, cache = t:tempdir() .. "/cache" })
end

local function contains(list, x)
  for _, v in ipairs(list) do if v == x then return true end end
  return false
end

function TestMirrorDefaultsAndStrictOptions(t)
  local m = tcz.mirror({}) -- an empty table resets the defaults
  if tcz.mirror().url ~= m.url then t:error("mirror() does not return the current mirror") end
  if m.url ~= "http://repo.tinycorelinux.net" or m.version ~= "15.x" or m.arch ~= "x86_64" then t:error("defaults " .. m.url) end
  if not string.find(m.cache, "/tcz$") then t:error("cache not under the state dir: " .. m.cache) end
  local ok, e = pcall(tcz.mirror, { ulr = "x" })
  if ok or not string.find(e.msg, 'did you mean "url"', 1, true) then t:error(tostring(e)) end
  ok, e = pcall(tcz.mirror, { url = "gopher://x" })
  if ok or e.kind ~= "invalid" then t:error("bad url accepted: " .. tostring(e)) end
  m = mirror(t)
  if m.url ~= vars.mirror then t:error("mirror not set") end
end

function TestDepsInfoSearch(t)
  mirror(t)
  local d = tcz.deps("nginx")
  if d[#d] ~= "nginx" or not contains(d, "pcre2") or not contains(d, "openssl") then t:error("deps " .. table.concat(d, " ")) end
  local both = tcz.deps({ "nginx", "dropbear" })
  if both[#both] ~= "dropbear" then t:error("multi deps " .. table.concat(both, " ")) end
  local info = tcz.info("nginx.tcz")
  if info.Title ~= "nginx.tcz" then t:error("info title " .. tostring(info.Title)) end
  local s = tcz.search("ngin")
  if not contains(s, "nginx") then t:error("search " .. table.concat(s, " ")) end
  if #tcz.search("no-such-thing-xyz") ~= 0 then t:error("search found nonsense") end
  local ok, e = pcall(tcz.info, "no-such-ext")
  if ok or e.kind ~= "not_found" then t:error("missing info: " .. tostring(e)) end
  ok, e = pcall(tcz.deps, "../evil")
  if ok or e.kind ~= "invalid" then t:error("bad name: " .. tostring(e)) end
end

function TestFetchIdempotent(t)
  local m = mirror(t)
  rec.take()
  local r = tcz.fetch("dropbear")
  if not r.changed or not contains(r.downloaded, "libtomcrypt") then t:error("first fetch") end
  if not host.read(m.cache .. "/optional/dropbear.tcz.md5.txt") then t:error("not cached") end
  r = tcz.fetch("dropbear")
  if r.changed then t:error("second fetch changed") end
  local c = rec.take()
  if c[1].status ~= "changed" or c[2].status ~= "ok" then t:error("reports " .. c[1].status .. " " .. c[2].status) end
end

function TestInstallRemoveInstalled(t)
  mirror(t)
  local root = t:tempdir()
  rec.take()
  local r = tcz.install(root, "nginx", { onboot = true })
  if not r.changed or r.files < 10 or not contains(r.installed, "pcre2") then t:fatal("install " .. tostring(r.files)) end
  local c = rec.take()
  if #c ~= 1 or c[1].status ~= "changed" or c[1].action ~= "install" then t:fatal("install report") end
  if not string.find(c[1].diff, "+nginx.tcz", 1, true) then t:error("no onboot diff: " .. c[1].diff) end
  if not host.read(root .. "/usr/local/etc/nginx/nginx.conf") then t:error("nginx.conf missing") end
  if host.read(root .. "/tce/onboot.lst") ~= "nginx.tcz\n" then t:error("onboot.lst") end
  local inst = tcz.installed(root)
  if not contains(inst, "nginx") or not contains(inst, "zlib") then t:error("installed " .. table.concat(inst, " ")) end
  -- idempotence: all ok, zero changed
  r = tcz.install(root, "nginx", { onboot = true })
  c = rec.take()
  if r.changed or c[1].status ~= "ok" then t:error("second install changed") end
  local ok, e = pcall(tcz.install, root, "nginx", { onbot = true })
  if ok or not string.find(e.msg, 'did you mean "onboot"', 1, true) then t:error(tostring(e)) end
  ok, e = pcall(tcz.install, root, "no-such-ext")
  if ok or e.kind ~= "not_found" then t:error("missing ext: " .. tostring(e)) end
  ok, e = pcall(tcz.install, root, "ngnix")
  if ok or e.kind ~= "not_found" or not string.find(e.msg, 'did you mean "nginx" for "ngnix"?', 1, true) then t:error("typo: " .. tostring(e)) end
  -- remove
  r = tcz.remove(root, "nginx")
  if not r.changed or #r.removed == 0 then t:error("remove") end
  if host.read(root .. "/usr/local/etc/nginx/nginx.conf") then t:error("nginx.conf left") end
  if host.read(root .. "/tce/onboot.lst") ~= "" then t:error("onboot.lst not cleaned") end
  if contains(tcz.installed(root), "nginx") then t:error("still installed") end
  r = tcz.remove(root, "nginx")
  if r.changed then t:error("second remove changed") end
end

function TestPack(t)
  local src = t:tempdir()
  host.run({ "mkdir", "-p", src .. "/usr/local/bin" })
  host.write(src .. "/usr/local/bin/hello", "#!/bin/sh\necho hi\n", { mode = "0755" })
  local out = t:tempdir()
  local r = tcz.pack({ dir = src, name = "hello", deps = { "zlib" }, out = out, epoch = 1700000000, all_root = true })
  if not r.changed or #r.files ~= 5 or r.size == 0 then t:fatal("pack") end
  if host.read(out .. "/hello.tcz.dep") ~= "zlib.tcz\n" then t:error("dep") end
  if host.read(out .. "/hello.tcz.list") ~= "usr/local/bin/hello\n" then t:error("list") end
  r = tcz.pack({ dir = src, name = "hello", deps = { "zlib" }, out = out, epoch = 1700000000, all_root = true })
  if r.changed then t:error("reproducible pack changed") end
  local ok, e = pcall(tcz.pack, { dir = src })
  if ok or not string.find(e.msg, "option name is required", 1, true) then t:error(tostring(e)) end
end
