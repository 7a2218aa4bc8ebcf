-- template.render and template.write, run by TestLua.
local template, host = require("template"), require("host")

local function fails(t, want, fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then t:error("no error, want " .. want); return end
  if not string.find(e.msg, want, 1, true) then t:error("error " .. e.msg .. "\n  want " .. want) end
  return e
end

function TestValuesLoopsAndConditions(t)
  local out = template.render([[
server {
  server_name {{ name }}.{{ domain }};
{% for _, p in ipairs(ports) do %}
  listen {{ p }};
{% end %}
{% if tls then %}
  ssl on;
{% else %}
  # no tls
{% end %}
  {# a comment #}root {{ root or "/srv" }}; # {{ #ports }} ports, {{ string.upper(name) }}
}
]], { name = "web1", domain = "farm.test", ports = { 80, 8080 }, tls = false })
  local want = [[
server {
  server_name web1.farm.test;
  listen 80;
  listen 8080;
  # no tls
  root /srv; # 2 ports, WEB1
}
]]
  if out ~= want then t:error("got:\n" .. out .. "\nwant:\n" .. want) end
end

function TestErrorsPointAtTheTemplate(t)
  local e = fails(t, 'template page.tpl:3:10: undefined variable "nmae" (did you mean "name"?)',
    template.render, "<h1>\n  title\n  hello, {{ nmae }}\n</h1>\n", { name = "x" }, { name = "page.tpl" })
  if e and e.kind ~= "invalid" then t:error("kind " .. e.kind) end
  if e and not string.find(e.msg, "^template_test.lua:%d+: template.render: ") then t:error("no playbook position: " .. e.msg) end
  fails(t, "template inline:2:3: {{ g.ip }} is nil", template.render, "a\n  {{ g.ip }}\n", { g = {} })
  fails(t, "template inline:1:1: {{ list }} is a table, not text", template.render, "{{ list }}", { list = {} })
  fails(t, "template inline:2:1: syntax error near 'do' in {% for x in do %}", template.render, "x\n{% for x in do %}\n{% end %}")
  fails(t, "template inline:2:1: the template ends inside a block: a {% end %} is missing", template.render, "a\n{% if x then %}\nb\n", { x = true })
  fails(t, "template inline:1:3: {{ is never closed with }}", template.render, "a {{ b\n")
  fails(t, "template inline:2:5: boom", template.render, "a\nb   {% error('boom') %}\n")
  fails(t, "vars must be a table", template.render, "{{ x }}", "x")
end

function TestWriteIsIdempotentWithDiffs(t)
  local dir = t:tempdir()
  host.write(dir .. "/page.tpl", "<h1>{{ name }}</h1>\n")
  local rec = require("rec")
  rec.take()
  if not template.write(dir, "index.html", dir .. "/page.tpl", { name = "web1" }, { mode = "0640" }) then t:error("first write unchanged") end
  if host.read(dir .. "/index.html") ~= "<h1>web1</h1>\n" then t:error("content: " .. host.read(dir .. "/index.html")) end
  if template.write(dir, "index.html", dir .. "/page.tpl", { name = "web1" }, { mode = "0640" }) then t:error("second write changed") end
  rec.take()
  if not template.write(dir, "index.html", "<h1>{{ name }}</h1>\n", { name = "web2" }, { mode = "0640" }) then t:error("new content unchanged") end
  local c = rec.take()
  local last = c[#c]
  if last.status ~= "changed" or not string.find(last.diff, "-<h1>web1</h1>\n+<h1>web2</h1>", 1, true) then
    t:error("no diff: " .. last.status .. " " .. last.diff)
  end
  fails(t, "template file nope.tpl: not found", template.write, dir, "x", "nope.tpl", {})
  fails(t, 'unknown option "mdoe"', template.write, dir, "x", "{{ 1 }}", {}, { mdoe = "0644" })
end
