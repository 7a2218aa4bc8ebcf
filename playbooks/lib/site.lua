-- lib/site.lua: the hello-site extension (a static site for nginx, with
-- its own install script) in a Tiny Core guest.
local tcz, persist = require("tcz"), require("persist")
local nginx = require("lib.nginx")

local M = { version = "1.0.0" }

--- M.install(guest, {extension})
--  guest      a colinux guest (required)
--  extension  default "hello-site" (pulls nginx as a dependency)
function M.install(g, opts)
  assert(g, "lib.site.install: guest is required")
  opts = opts or {}
  tcz.install(g, opts.extension or "hello-site")
  persist.bootlocal(g, { "/usr/local/sbin/nginx" }, { id = "nginx" })
  nginx.ensure_running(g)
  return g
end

return M
