-- Lua tests of require("persist") against a host directory target.
local persist = require("persist")
local host = require("host")
local rec = require("rec")

local function count(changes, status)
  local n = 0
  for _, c in ipairs(changes) do if c.status == status then n = n + 1 end end
  return n
end

local function newroot(t)
  local d = t:tempdir()
  host.run({ "mkdir", "-p", d .. "/opt", d .. "/tce", d .. "/home/tc" })
  rec.take()
  return d
end

function TestBootlocalIdempotent(t)
  local d = newroot(t)
  if not persist.bootlocal(d, { "/usr/local/sbin/nginx" }) then t:error("first bootlocal did not change") end
  local c = rec.take()
  if #c ~= 1 or c[1].status ~= "changed" or c[1].module ~= "persist" or c[1].action ~= "bootlocal" then
    t:fatal("report: " .. tostring(c[1] and c[1].status))
  end
  if not string.find(c[1].diff, "+/usr/local/sbin/nginx", 1, true) then t:error("diff: " .. c[1].diff) end
  if c[1].subject ~= d .. "/opt/bootlocal.sh" then t:error("subject " .. c[1].subject) end
  local body = host.read(d .. "/opt/bootlocal.sh")
  if not string.find(body, "# BEGIN tinyfarm default\n/usr/local/sbin/nginx\n# END tinyfarm default\n", 1, true) then
    t:error("body: " .. body)
  end
  if persist.bootlocal(d, "/usr/local/sbin/nginx") then t:error("second bootlocal changed") end
  c = rec.take()
  if count(c, "changed") ~= 0 or count(c, "ok") ~= 1 then t:error("second run not ok") end
  -- another id coexists; an empty list removes the block
  persist.bootlocal(d, { "echo hi" }, { id = "extra" })
  persist.bootlocal(d, {}, { id = "extra" })
  if string.find(host.read(d .. "/opt/bootlocal.sh"), "extra", 1, true) then t:error("block not removed") end
end

function TestBootsync(t)
  local d = newroot(t)
  if not persist.bootsync(d, { "/opt/bootlocal.sh &" }, { id = "x" }) then t:error("no change") end
  if persist.bootsync(d, { "/opt/bootlocal.sh &" }, { id = "x" }) then t:error("not idempotent") end
  local ok, e = pcall(persist.bootsync, d, { "x" }, { id = "bad id" })
  if ok or e.kind ~= "invalid" then t:error("bad id accepted: " .. tostring(e)) end
  ok, e = pcall(persist.bootsync, d, { "x" }, { idd = "x" })
  if ok or not string.find(e.msg, 'did you mean "id"', 1, true) then t:error("strict options: " .. tostring(e)) end
  if not string.find(e.msg, "^persist_test.lua:%d+:") then t:error("no position: " .. e.msg) end
end

function TestOnboot(t)
  local d = newroot(t)
  if not persist.onboot(d, { "nginx", "dropbear.tcz" }) then t:error("no change") end
  if host.read(d .. "/tce/onboot.lst") ~= "nginx.tcz\ndropbear.tcz\n" then t:error(host.read(d .. "/tce/onboot.lst")) end
  if persist.onboot(d, "nginx") then t:error("duplicate added") end
  if not persist.onboot(d, "nginx", { remove = true }) then t:error("remove did nothing") end
  if host.read(d .. "/tce/onboot.lst") ~= "dropbear.tcz\n" then t:error(host.read(d .. "/tce/onboot.lst")) end
  persist.onboot(d, "x", { tce_dir = "mnt/sda1/tce" })
  if host.read(d .. "/mnt/sda1/tce/onboot.lst") ~= "x.tcz\n" then t:error("tce_dir ignored") end
end

function TestFiletool(t)
  local d = newroot(t)
  if not persist.filetool(d, { add = { "/etc/shadow", "usr/local/etc/nginx" }, exclude = { "Cache" } }) then t:error("no change") end
  if host.read(d .. "/opt/.filetool.lst") ~= "etc/shadow\nusr/local/etc/nginx\n" then t:error(host.read(d .. "/opt/.filetool.lst")) end
  if host.read(d .. "/opt/.xfiletool.lst") ~= "Cache\n" then t:error("xfiletool") end
  if persist.filetool(d, { add = { "etc/shadow" } }) then t:error("not idempotent") end
  local ok, e = pcall(persist.filetool, d, { add = { "../x" } })
  if ok or e.kind ~= "invalid" then t:error("escape accepted") end
end

function TestBackupRestore(t)
  local d = newroot(t)
  host.write(d .. "/home/tc/notes", "keep me\n")
  persist.filetool(d, { add = { "home" } })
  local r = persist.backup(d)
  if r.file ~= "tce/mydata.tgz" or #r.entries < 2 then t:fatal("backup: " .. tostring(r.file)) end
  local c = rec.take()
  if c[#c].action ~= "backup" or c[#c].status ~= "changed" then t:error("backup not reported") end
  host.write(d .. "/home/tc/notes", "scribbled\n")
  if not persist.restore(d, "tce/mydata.tgz") then t:error("restore changed nothing") end
  if host.read(d .. "/home/tc/notes") ~= "keep me\n" then t:error("not restored") end
  if persist.restore(d, "tce/mydata.tgz") then t:error("second restore changed") end
  local ok, e = pcall(persist.restore, d, "tce/missing.tgz")
  if ok or e.kind ~= "not_found" then t:error("missing backup: " .. tostring(e)) end
  persist.backup(d, { safe = true })
  if not host.read(d .. "/tce/mydatabk.tgz") then t:error("safe backup kept no copy") end
end

function TestBootcodes(t)
  local line = persist.bootcodes({ host = "web1", nodhcp = true, tce = "UUID=abc", quiet = false, waitusb = 5 })
  if line ~= "host=web1 nodhcp tce=UUID=abc waitusb=5" then t:error(line) end
  local m = persist.parse_bootcodes('quiet host=web1 hometown=x tce=sda1/tce "a=b c"')
  if m.host ~= "web1" or m.quiet ~= true or m.home ~= nil or m.hometown ~= "x" or m.tce ~= "sda1/tce" or m.a ~= "b c" then
    t:error("parse")
  end
  local ok, e = pcall(persist.bootcodes, { host = "two words" })
  if ok or e.kind ~= "invalid" then t:error("space accepted") end
  ok, e = pcall(persist.parse_bootcodes, 'a="b')
  if ok or e.kind ~= "invalid" then t:error("unterminated quote accepted") end
end

function TestBadTarget(t)
  local ok, e = pcall(persist.bootlocal, 42, { "x" })
  if ok or e.kind ~= "invalid" then t:error("number target accepted") end
  ok, e = pcall(persist.bootlocal, t:tempdir() .. "/nope", { "x" })
  if ok or e.kind ~= "not_found" then t:error("missing dir: " .. tostring(e)) end
end
