-- lib/example.lua: the smallest recipe, showing the recipe format.
-- A recipe is a Lua module returning a table with a `version` field and
-- functions taking one options table (documented below).
local host = require("host")

local M = { version = "1.0.0" }

--- M.motd{path, text}: write a message-of-the-day file.
--  path  (string, required) file to write
--  text  (string, default "welcome to tinyfarm\n")
function M.motd(opts)
  assert(type(opts) == "table" and opts.path, "lib.example.motd: path is required")
  return host.write(opts.path, opts.text or "welcome to tinyfarm\n", { mode = "0644" })
end

return M
