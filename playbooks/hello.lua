-- hello.lua: a first playbook that needs nothing but the host.
--   tinyfarm run playbooks/hello.lua -e dir=/tmp/hello
local host = require("host")
local dir = vars.dir or os.getenv("TMPDIR") or "/tmp"

task("say hello", function()
  log("tinyfarm says hello from " .. host.run("uname -n", { readonly = true }).stdout:gsub("%s+$", ""))
end)

task("write motd", function()
  host.write(dir .. "/tinyfarm-motd", "welcome to tinyfarm\n", { mode = "0644" })
end)
