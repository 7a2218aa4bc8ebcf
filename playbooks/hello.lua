-- hello.lua: a first playbook that needs nothing but the host.
-- tinyfarm run playbooks/hello.lua -e dir=/tmp/hello
local host = require("host")
local example = require("lib.example")
local dir = vars.dir or os.getenv("TMPDIR") or "/tmp"

task("say hello", function()
  log("tinyfarm says hello from " .. host.run("uname -n", { readonly = true }).stdout:gsub("%s+$", ""))
end)

task("write motd", function()
  example.motd{ path = dir .. "/tinyfarm-motd" }
end)
