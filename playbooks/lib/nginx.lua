-- lib/nginx.lua: nginx in a Tiny Core guest, serving a page, started now
-- and at every boot (bootlocal.sh). Works on any running guest reachable
-- over SSH; idempotent: a second run reports everything ok.
local tcz, persist = require("tcz"), require("persist")

local M = { version = "1.0.0" }

--- M.install(guest, {page, template, vars, root, extension})
--  guest      a colinux guest (required)
--  page       index.html content (string); default: a page naming the guest
--  template   index.html from a template instead (text or file, see
--             require("template")), rendered with vars
--  vars       the template's variables (table)
--  root       document root; default "/usr/local/share/nginx/html"
--  extension  the .tcz to install; default "nginx"
function M.install(g, opts)
  assert(g, "lib.nginx.install: guest is required")
  opts = opts or {}
  local root = opts.root or "/usr/local/share/nginx/html"
  tcz.install(g, opts.extension or "nginx")
  persist.bootlocal(g, { "/usr/local/sbin/nginx" }, { id = "nginx" })
  if opts.template then
    g:template(root .. "/index.html", opts.template, opts.vars or {}, { mode = "0644" })
  else
    local page = opts.page or ("<h1>" .. g.name .. "</h1>\n<p>served by nginx in a tinyfarm guest</p>\n")
    g:write(root .. "/index.html", page, { mode = "0644" })
  end
  M.ensure_running(g)
  return g
end

--- M.reload(guest): nginx re-reads its configuration (a handler's job
--  after the page or the configuration changed).
function M.reload(g)
  g:exec("/usr/local/sbin/nginx -s reload")
end

--- M.ensure_running(guest): start nginx unless it runs (changed only then).
function M.ensure_running(g)
  if g:exec("pidof nginx >/dev/null", { check = false, readonly = true }).code ~= 0 then
    g:exec("/usr/local/sbin/nginx")
  end
end

return M
